"""RFC 7009 token revocation."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.oauth_client import basic_auth, form_post
from tests.uaa.endpoints import introspect, refresh, revoke, token_request, userinfo


@pytest.fixture
def tokens(code_flow, confidential_client):
    return code_flow(confidential_client)["tokens"]


def _assert_revocation_ok(response):
    assert response.status_code == HTTPStatus.OK, response.content
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoking_an_access_token_invalidates_it_at_once(confidential_client, tokens, hint):
    """RFC 7009 §2.1-§2.2: the token is invalid at once; a wrong hint only widens the search."""
    extra = {"token_type_hint": hint} if hint else {}
    _assert_revocation_ok(revoke(confidential_client, tokens["access_token"], **extra))
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    assert introspect(confidential_client, tokens["access_token"]).json() == {"active": False}


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
def test_revoking_a_refresh_token_also_revokes_its_access_token(confidential_client, tokens, hint):
    """RFC 7009 §2.1: if the token is a refresh token, the server SHOULD also invalidate its access tokens."""
    extra = {"token_type_hint": hint} if hint else {}
    _assert_revocation_ok(revoke(confidential_client, tokens["refresh_token"], **extra))
    assert refresh(confidential_client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    assert introspect(confidential_client, tokens["refresh_token"]).json() == {"active": False}


def test_revoking_an_access_token_also_revokes_its_refresh_token(confidential_client, tokens):
    """RFC 7009 §2.1: the server MAY revoke the refresh token of the same grant; UAA does."""
    _assert_revocation_ok(revoke(confidential_client, tokens["access_token"]))
    assert refresh(confidential_client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_a_refreshed_grant_revokes_the_current_tokens(confidential_client, tokens):
    """RFC 7009 §2.1: revoking the refresh token in use ends the grant, whatever came before."""
    current = refresh(confidential_client, tokens["refresh_token"]).json()
    _assert_revocation_ok(revoke(confidential_client, current["refresh_token"]))
    assert userinfo(current["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    assert refresh(confidential_client, current["refresh_token"]).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("token", ["unknown-token", "a.b.c", "x" * 3000])
def test_unknown_token_is_answered_200(confidential_client, token):
    """RFC 7009 §2.2: invalid tokens do not cause an error response; the server responds with 200."""
    _assert_revocation_ok(revoke(confidential_client, token))


def test_revoking_twice_is_answered_200(confidential_client, tokens):
    """RFC 7009 §2.2: an already invalid token is answered like any other."""
    _assert_revocation_ok(revoke(confidential_client, tokens["refresh_token"]))
    _assert_revocation_ok(revoke(confidential_client, tokens["refresh_token"]))


def test_unsupported_token_type_hint_is_ignored(confidential_client, tokens):
    """RFC 7009 §2.1: the server MAY ignore the hint and searches all its token types."""
    _assert_revocation_ok(revoke(confidential_client, tokens["access_token"], token_type_hint="id_token"))
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.UNAUTHORIZED


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_another_clients_token_is_not_revoked(client_factory, confidential_client, tokens, which):
    """RFC 7009 §2.1: the server verifies whether the token was issued to the client making the request."""
    other = client_factory(name="Other RP")
    _assert_revocation_ok(revoke(other, tokens[which]))
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK
    assert introspect(confidential_client, tokens[which]).json()["active"] is True


def test_service_client_cannot_revoke_a_users_token(service_client, tokens):
    """RFC 7009 §2.1: only the client the token was issued to may revoke it."""
    _assert_revocation_ok(revoke(service_client, tokens["access_token"]))
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK


def test_revocation_requires_client_authentication(confidential_client, tokens):
    """RFC 7009 §2.1: the client also includes its authentication credentials (RFC 6749 §2.3)."""
    response = form_post(
        HttpClient(),
        "/oauth/revoke",
        {"token": tokens["access_token"], "client_id": confidential_client.client_id},
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK


def test_revocation_without_any_client_is_invalid_client(tokens):
    """RFC 7009 §2.2.1 and RFC 6749 §5.2: invalid_client when no client is identified."""
    response = form_post(HttpClient(), "/oauth/revoke", {"token": tokens["access_token"]})
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK


def test_revocation_with_a_wrong_secret_is_invalid_client(confidential_client, tokens):
    """RFC 7009 §2.2.1 and RFC 6749 §5.2: failed Basic authentication is 401 invalid_client."""
    response = form_post(
        HttpClient(),
        "/oauth/revoke",
        {"token": tokens["access_token"]},
        auth=basic_auth(confidential_client.client_id, "wrong"),
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK


def test_public_client_revokes_its_own_tokens_with_its_client_id(
    code_flow, public_client, confidential_client
):
    """RFC 7009 §5: public clients identify themselves with client_id and may revoke their tokens."""
    public_tokens = code_flow(public_client)["tokens"]
    _assert_revocation_ok(revoke(public_client, public_tokens["refresh_token"]))
    assert userinfo(public_tokens["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    assert refresh(public_client, public_tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_client_credentials_token_is_revoked_by_its_client(service_client):
    """RFC 7009 §2.1: access tokens without a refresh token are revocable too."""
    access_token = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    assert introspect(service_client, access_token).json()["active"] is True
    _assert_revocation_ok(revoke(service_client, access_token))
    assert introspect(service_client, access_token).json() == {"active": False}


def test_missing_token_is_invalid_request(confidential_client):
    """RFC 7009 §2.1: token is REQUIRED; RFC 6749 §5.2 invalid_request."""
    response = form_post(HttpClient(), "/oauth/revoke", {}, auth=confidential_client.basic)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"


def test_revocation_endpoint_refuses_get(confidential_client, tokens):
    """RFC 7009 §2.1: the client requests revocation with an HTTP POST request."""
    response = HttpClient().get(
        "/oauth/revoke", {"token": tokens["access_token"]}, HTTP_AUTHORIZATION=confidential_client.basic
    )
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK
