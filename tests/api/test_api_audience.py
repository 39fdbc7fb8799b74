"""The admin API accepts only tokens whose audience is UAA alone (RFC 9068 §4, RFC 8707 §1, RFC 9700 §2.3).

Attacker: a resource server (https://api.example.com) that was handed an access token whose ``aud``
lists it and UAA both. It holds a bearer token that UAA's own check (``aud`` contains the issuer) would
accept, and replays it against /api/v1/ with the admin scopes the token carries. RFC 9068 §4: the
resource server "MUST validate that the aud claim contains a resource indicator value corresponding to
an identifier the resource server expects for itself"; RFC 9700 §2.3: privileges and audience restricted
to the minimum, so that a token leaked by (or stolen from) one resource server is no key to another.
"""

from __future__ import annotations

from http import HTTPStatus

from django.conf import settings
from django.test import Client as HttpClient

from tests.api.conftest import call
from tests.oauth_client import form_post
from tests.uaa.endpoints import credentials, unverified_claims

CLIENTS = "/api/v1/clients"
OTHER = "https://api.example.com"


def _assert_invalid_token(response) -> None:
    """RFC 6750 §3.1: 401, ``invalid_token``, and a challenge naming it."""
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    assert response.json()["error"] == "invalid_token"
    challenge = response.get("WWW-Authenticate", "")
    assert challenge.startswith('Bearer realm="uaa"') and 'error="invalid_token"' in challenge


def _token(registered, *resources: str) -> str:
    how = credentials(registered)
    body = [("grant_type", "client_credentials"), ("scope", "uaa.clients.read")]
    body += [*how["body"].items(), *(("resource", resource) for resource in resources)]
    response = form_post(HttpClient(), "/oauth/token", body, auth=how["auth"])
    assert response.status_code == HTTPStatus.OK, response.content
    return str(response.json()["access_token"])


def test_a_token_for_uaa_and_another_resource_server_by_default_audience_is_refused(admin_client):
    registered = admin_client(
        "uaa.clients.read",
        allowed_resources=[settings.UAA_ISSUER, OTHER],
        default_audience=[settings.UAA_ISSUER, OTHER],
    )
    token = _token(registered)
    assert set(unverified_claims(token)["aud"]) == {settings.UAA_ISSUER, OTHER}
    _assert_invalid_token(call("GET", CLIENTS, token))  # what the other resource server would replay


def test_a_token_requested_for_uaa_and_another_resource_is_refused(admin_client):
    """RFC 8707 §2: ``resource`` "MAY be used multiple times"; the token is then for all of them."""
    registered = admin_client("uaa.clients.read", allowed_resources=[settings.UAA_ISSUER, OTHER])
    token = _token(registered, settings.UAA_ISSUER, OTHER)
    assert set(unverified_claims(token)["aud"]) == {settings.UAA_ISSUER, OTHER}
    _assert_invalid_token(call("GET", CLIENTS, token))


def test_a_token_for_a_path_under_the_issuer_is_refused(admin_client):
    """Not the issuer itself: django-oauth-toolkit's prefix comparison would take it for the API."""
    api = settings.UAA_ISSUER + "/api/v1"
    registered = admin_client("uaa.clients.read", allowed_resources=[api], default_audience=[api])
    _assert_invalid_token(call("GET", CLIENTS, _token(registered)))


def test_the_same_client_gets_an_admin_token_by_naming_uaa_alone(admin_client):
    """docs/api.md: ``resource=<issuer>`` (or a default audience of the issuer alone) is the way."""
    registered = admin_client(
        "uaa.clients.read",
        allowed_resources=[settings.UAA_ISSUER, OTHER],
        default_audience=[settings.UAA_ISSUER, OTHER],
    )
    token = _token(registered, settings.UAA_ISSUER)
    assert unverified_claims(token)["aud"] == settings.UAA_ISSUER
    assert call("GET", CLIENTS, token).status_code == HTTPStatus.OK


def test_a_token_of_a_client_with_no_default_audience_is_for_uaa_and_accepted(admin_token):
    token = admin_token("uaa.clients.read")
    assert unverified_claims(token)["aud"] == settings.UAA_ISSUER
    assert call("GET", CLIENTS, token).status_code == HTTPStatus.OK
