"""RFC 9110 §11.1 (RFC 7235 §2.1): "It uses a case-insensitive token as a means to identify the
authentication scheme". A client sending ``basic`` or ``BEARER`` is as right as one sending ``Basic``.

The red team (W3) saw ``Authorization: basic …`` refused at the token endpoint: django-oauth-toolkit
compares the scheme with ``"Basic"`` exactly.
"""

from __future__ import annotations

import base64
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.oauth_client import form_post

SCHEMES = ["basic", "BASIC", "bAsIc"]


def basic(scheme: str, client_id: str, secret: str) -> str:
    return f"{scheme} " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_token_endpoint_accepts_basic_in_any_case(service_client, scheme):
    """RFC 6749 §2.3.1 with RFC 9110 §11.1: the scheme name is case-insensitive."""
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "client_credentials"},
        auth=basic(scheme, service_client.client_id, service_client.secret),
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_introspection_accepts_basic_in_any_case(service_client, scheme):
    """RFC 7662 §2.1: the caller authenticates as at the token endpoint."""
    response = form_post(
        HttpClient(),
        "/oauth/introspect",
        {"token": "not-a-token"},
        auth=basic(scheme, service_client.client_id, service_client.secret),
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json() == {"active": False}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_revocation_accepts_basic_in_any_case(service_client, scheme):
    """RFC 7009 §2.1: the client authenticates as at the token endpoint (an unknown token: 200, §2.2)."""
    response = form_post(
        HttpClient(),
        "/oauth/revoke",
        {"token": "not-a-token"},
        auth=basic(scheme, service_client.client_id, service_client.secret),
    )
    assert response.status_code == HTTPStatus.OK, response.content


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wrong_secret_is_still_refused_in_any_case(service_client, scheme):
    """Case-insensitive scheme, not a weaker check: a wrong secret is 401 invalid_client whatever the case."""
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "client_credentials"},
        auth=basic(scheme, service_client.client_id, "wrong"),
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_basic_in_any_case_with_a_secret_in_the_body_is_two_methods(service_client, scheme):
    """RFC 6749 §2.3: one method per request, however the scheme is spelled."""
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "client_credentials", "client_secret": service_client.secret},
        auth=basic(scheme, service_client.client_id, service_client.secret),
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_accepts_bearer_in_any_case(code_flow, confidential_client, user, scheme, method):
    """RFC 6750 §2.1 with RFC 9110 §11.1: ``bearer`` names the same scheme as ``Bearer``."""
    access_token = code_flow(confidential_client)["tokens"]["access_token"]
    header = f"{scheme} {access_token}"
    if method == "POST":
        response = form_post(HttpClient(), "/oauth/userinfo", {}, auth=header)
    else:
        response = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=header)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["sub"] == str(user.pk)
