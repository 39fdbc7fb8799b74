"""The grant types the token endpoint offers, owned by its oauthlib server (uaa/oauth/server.py).

RFC 6749 §5.2: ``unsupported_grant_type`` for a grant type the server does not support, ``invalid_request``
for a missing parameter; either before any client is authenticated (RFC 9700 §2.4: no password is read).
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.conf import settings
from django.test import Client as HttpClient

from tests.oauth_client import basic_auth, form_post
from tests.uaa.endpoints import token_request
from uaa.oauth.server import Server
from uaa.oauth.validators import UAAOAuth2Validator

UNSUPPORTED = {"error": "unsupported_grant_type", "error_description": "The grant type is not supported."}
REQUIRED = {"error": "invalid_request", "error_description": "The grant_type parameter is required."}


def test_the_server_routes_only_the_grant_types_uaa_offers():
    server = Server(UAAOAuth2Validator())
    assert set(server.grant_types) == set(settings.OAUTH2_PROVIDER["OAUTH2_GRANT_TYPES_SUPPORTED"])


@pytest.mark.parametrize(
    "grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code", "x"]
)
def test_a_grant_type_uaa_does_not_offer_is_unsupported_and_nothing_of_the_request_comes_back(
    service_client, grant_type
):
    """RFC 6749 §5.2; the device grant without its device_code too (django-oauth-toolkit looks it up)."""
    response = token_request(service_client, {"grant_type": grant_type, "state": "s-1"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == UNSUPPORTED
    assert response["Cache-Control"] == "no-store"


def test_a_grant_type_uaa_does_not_offer_is_refused_before_the_client_is_authenticated(service_client):
    """RFC 9700 §2.4: the password grant answers the same whoever asks; no client is checked for it."""
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "password", "username": "a@example.com", "password": "x"},
        auth=basic_auth(service_client.client_id, "not the secret"),
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == UNSUPPORTED


@pytest.mark.parametrize("data", [{"scope": "openid"}, {"grant_type": ""}])
def test_a_missing_grant_type_is_invalid_request(service_client, data):
    """RFC 6749 §4.4.2: grant_type is REQUIRED."""
    response = token_request(service_client, data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == REQUIRED


def test_a_grant_type_in_the_query_string_is_not_one(service_client):
    """RFC 6749 §3.2: the token request's parameters are in the form body."""
    response = HttpClient().post(
        "/oauth/token?grant_type=client_credentials",
        "scope=openid",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=service_client.basic,
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == REQUIRED
