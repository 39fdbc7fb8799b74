"""RFC 6750 §2 at userinfo (OIDC Core §5.3.1): the header by GET or POST, a POST form body, not the URL."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.oauth_client import FORM, form_post

USERINFO = "/oauth/userinfo"


@pytest.fixture
def tokens(code_flow, confidential_client):
    return code_flow(confidential_client)["tokens"]


def test_a_token_in_a_post_form_body_opens_userinfo(tokens, user):
    """RFC 6750 §2.2: the access token in a form-encoded body with the access_token parameter; OIDC Core
    §5.3.1: the UserInfo Endpoint MUST support POST. Refused (401) before issue 11."""
    response = form_post(HttpClient(), USERINFO, {"access_token": tokens["access_token"]})
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["sub"] == str(user.pk)
    assert response.json()["email"] == user.email
    assert response["Cache-Control"] == "no-store"


def test_a_post_with_the_bearer_header_and_an_empty_body_opens_userinfo(tokens, user):
    """OIDC Core §5.3.1: the UserInfo Endpoint MUST support the use of the HTTP GET and HTTP POST methods."""
    response = HttpClient().post(
        USERINFO, "", content_type=FORM, HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["sub"] == str(user.pk)


def test_a_header_and_a_body_token_is_invalid_request(tokens):
    """RFC 6750 §2: clients MUST NOT use more than one method to transmit the token in each request;
    §3.1: "uses more than one method for including an access token" is invalid_request (400)."""
    bearer = f"Bearer {tokens['access_token']}"
    response = form_post(HttpClient(), USERINFO, {"access_token": tokens["access_token"]}, auth=bearer)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["error"] == "invalid_request"
    assert b"email" not in response.content


def test_a_token_in_the_query_string_is_invalid_request(tokens):
    """RFC 6750 §2.3 and §5.3, RFC 9700 §4.3.2: a token in the URL is refused, even on a POST."""
    for http_method in ("get", "post"):
        response = getattr(HttpClient(), http_method)(f"{USERINFO}?access_token={tokens['access_token']}")
        assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
        assert response.json()["error"] == "invalid_request"
        assert b"email" not in response.content


def test_a_query_token_beside_a_body_token_is_refused(tokens):
    """RFC 6750 §2: one method only; the URL one is never accepted."""
    url = f"{USERINFO}?access_token={tokens['access_token']}"
    response = form_post(HttpClient(), url, {"access_token": tokens["access_token"]})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"email" not in response.content


def test_a_body_token_in_a_json_body_is_refused(tokens):
    """RFC 6750 §2.2: the entity-body MUST be application/x-www-form-urlencoded."""
    response = HttpClient().post(
        USERINFO, {"access_token": tokens["access_token"]}, content_type="application/json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"email" not in response.content


def test_a_body_token_in_a_multipart_body_is_refused(tokens):
    """RFC 6750 §2.2: the entity-body is single-part."""
    response = HttpClient().post(USERINFO, {"access_token": tokens["access_token"]})  # multipart/form-data
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"email" not in response.content


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "ä" * 10])
def test_a_bad_body_token_is_401_invalid_token(db, garbage):
    """RFC 6750 §3.1: invalid_token for a malformed token, with the Bearer challenge; never a 500."""
    response = form_post(HttpClient(), USERINFO, {"access_token": garbage})
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    assert response.json()["error"] == "invalid_token"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_refresh_token_in_the_body_does_not_open_userinfo(tokens):
    """RFC 6749 §1.5: refresh tokens are never sent to resource servers, by any method."""
    response = form_post(HttpClient(), USERINFO, {"access_token": tokens["refresh_token"]})
    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_a_repeated_body_token_is_invalid_request(tokens):
    """RFC 6749 §3.1 on the JSON endpoints: a parameter MUST NOT be repeated."""
    body = f"access_token={tokens['access_token']}&access_token={tokens['access_token']}"
    response = HttpClient().post(USERINFO, body, content_type=FORM)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"email" not in response.content
