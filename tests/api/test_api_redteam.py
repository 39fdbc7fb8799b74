"""Breaks of the admin API found by a red team (production gunicorn on PostgreSQL), each performed here.

1. High — scope self-escalation. Attacker: a client holding only ``uaa.clients.write`` (an automation that
   registers apps). It PATCHed its own ``allowed_scopes`` (or registered a new client) with every admin
   scope, then took a token with ``uaa.keys.write`` and rotated keys. Must: admin scopes are given to a
   client by a person (Django admin, ``manage.py create_client``), never by another client through the API.
2. The same attacker made an authorization-code client ``trusted``: no consent page for any user, staff
   included. Must: trust is an admin's decision, not settable through the API.
3. ``{"jwks": {"a": 1e999}}`` (a number that overflows to infinity) was a 500 (jsonb refused it).
4. ``since=...+20:00`` (an offset PostgreSQL refuses) was a 500 at /api/v1/audit/records.
5. A POST to an unknown path under /api/v1/ was Django's HTML CSRF 403, not the API's JSON 404.
6. A symmetric key (``kty: oct``) was accepted as a client's public key and shown to readers.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.conf import settings
from django.test import Client as HttpClient

from tests.api.conftest import call, client_credentials_token
from tests.uaa.endpoints import token_request
from uaa.oauth.models import Client

CLIENTS = "/api/v1/clients"
ADMIN = list(settings.UAA_ADMIN_SCOPES)  # every admin scope UAA offers


@pytest.fixture
def writer(admin_client):
    registered = admin_client("uaa.clients.write")
    return registered, client_credentials_token(registered, "uaa.clients.write")


def test_a_client_cannot_give_itself_admin_scopes(writer):
    registered, token = writer
    response = call("PATCH", f"{CLIENTS}/{registered.client_id}", token, {"allowed_scopes": ADMIN})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert "allowed_scopes" in response.json()["fields"]
    assert Client.objects.get(pk=registered.client.pk).allowed_scopes.split() == ["uaa.clients.write"]
    refused = token_request(registered, {"grant_type": "client_credentials", "scope": "uaa.keys.write"})
    assert refused.status_code == HTTPStatus.BAD_REQUEST
    assert refused.json()["error"] == "invalid_scope"


def test_a_client_cannot_register_another_with_admin_scopes(writer):
    _, token = writer
    body = {
        "name": "evil",
        "client_type": "confidential",
        "grant_type": "client_credentials",
        "allowed_scopes": ["uaa.keys.write"],
    }
    response = call("POST", CLIENTS, token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert not Client.objects.filter(name="evil").exists()


def test_admin_scopes_a_client_already_has_may_stay_or_go(admin_client):
    """What stays allowed: a change that keeps (or drops) the admin scopes an admin gave the client."""
    target = admin_client("uaa.users.read uaa.audit.read")
    caller = admin_client("uaa.clients.write")
    token = client_credentials_token(caller, "uaa.clients.write")
    path = f"{CLIENTS}/{target.client_id}"
    kept = call("PATCH", path, token, {"allowed_scopes": ["uaa.users.read", "uaa.audit.read"], "name": "x"})
    assert kept.status_code == HTTPStatus.OK, kept.content
    dropped = call("PATCH", path, token, {"allowed_scopes": ["uaa.audit.read"]})
    assert dropped.status_code == HTTPStatus.OK, dropped.content
    again = call("PATCH", path, token, {"allowed_scopes": ["uaa.audit.read", "uaa.users.read"]})
    assert again.status_code == HTTPStatus.BAD_REQUEST  # once dropped, only an admin gives it back


def test_a_client_cannot_make_a_client_trusted(writer, client_factory):
    _, token = writer
    web = client_factory()
    response = call("PATCH", f"{CLIENTS}/{web.client_id}", token, {"trusted": True})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert Client.objects.get(pk=web.client.pk).trusted is False
    body = {
        "name": "trusted app",
        "client_type": "confidential",
        "grant_type": "authorization_code",
        "redirect_uris": ["https://app.example.com/cb"],
        "trusted": True,
    }
    assert call("POST", CLIENTS, token, body).status_code == HTTPStatus.BAD_REQUEST
    untrusted = call("PATCH", f"{CLIENTS}/{web.client_id}", token, {"trusted": False})
    assert untrusted.status_code == HTTPStatus.OK  # taking trust away stays allowed


@pytest.mark.parametrize("number", ["1e999", "-1e400", "1e309"])
def test_a_number_that_overflows_is_400_not_500(writer, client_factory, number):
    _, token = writer
    web = client_factory()
    body = '{"jwks": {"a": ' + number + "}}"
    response = call("PATCH", f"{CLIENTS}/{web.client_id}", token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content


@pytest.mark.parametrize(
    "since", ["2026-12-03T00:00:00+20:00", "0001-01-01T00:00:00-23:59", "9999-12-31T23:59:59-23:59"]
)
def test_an_offset_the_database_cannot_take_is_400_not_500(admin_token, since):
    token = admin_token("uaa.audit.read")
    response = call("GET", "/api/v1/audit/records?" + f"since={since.replace('+', '%2B')}", token)
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.BAD_REQUEST), response.content
    until = call("GET", "/api/v1/audit/records?" + f"until={since.replace('+', '%2B')}", token)
    assert until.status_code in (HTTPStatus.OK, HTTPStatus.BAD_REQUEST), until.content


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "PUT"])
def test_any_method_on_an_unknown_api_path_is_the_json_404(writer, method):
    _, token = writer
    browser_like = HttpClient(enforce_csrf_checks=True)  # as a real client is: Django checks CSRF
    response = getattr(browser_like, method.lower())(
        "/api/v1/nonexistent", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == HTTPStatus.NOT_FOUND, response.content[:200]
    assert response["Content-Type"] == "application/json"


def test_a_symmetric_key_is_no_public_key(writer, client_factory):
    _, token = writer
    web = client_factory()
    body = {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}}
    response = call("PATCH", f"{CLIENTS}/{web.client_id}", token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert Client.objects.get(pk=web.client.pk).jwks in (None, {}, "")
