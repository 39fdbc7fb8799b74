"""The admin API applies the one redirect URI rule (uaa/oauth/rfc8252.py check_redirect_uri; the other ways
in: tests/uaa/test_rfc8252_redirect_uri_registration.py). The red team's attack: ``http://[::1].evil.example/cb``
passed as a loopback URI (urlsplit reads the host as ``::1``), a plain-text redirect to a host on the network
(RFC 9700 §2.1); and a native app's private-use scheme (RFC 8252 §7.1) was refused although the operator had
allowed it in UAA_REDIRECT_URI_SCHEMES.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest

from tests.api.conftest import ALL_ADMIN, call, client_credentials_token
from uaa.oauth.models import Client

NATIVE_URI = "com.example.app:/oauth2redirect"
ATTACKS = [
    "http://evil.example/cb",
    "http://[::1].evil.example/cb",
    "http://[::1]evil.example/cb",
    "http://127.0.0.1@evil.example/cb",
    "http://[::1]@evil.example/cb",
    "http://[::1]:8080.evil.example/cb",
]


@pytest.fixture
def allow_native_scheme(settings):
    schemes = ["https", "http", "com.example.app"]
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": schemes}


@pytest.mark.parametrize("uri", ATTACKS)
@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
def test_the_admin_api_refuses(admin_client, uri, field):
    token = client_credentials_token(admin_client(), ALL_ADMIN)
    body = {"name": "Desktop app", "client_type": "public", "grant_type": "authorization_code"}
    response = call(
        "POST", "/api/v1/clients", token, {**body, "redirect_uris": ["http://[::1]/cb"], field: [uri]}
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert field in response.json()["fields"]
    assert not Client.objects.filter(name="Desktop app").exists()


def test_the_admin_api_registers_a_native_apps_private_use_scheme(admin_client, allow_native_scheme):
    token = client_credentials_token(admin_client(), ALL_ADMIN)
    body = {"name": "Phone app", "client_type": "public", "grant_type": "authorization_code"}
    response = call("POST", "/api/v1/clients", token, {**body, "redirect_uris": [NATIVE_URI]})
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert response.json()["redirect_uris"] == [NATIVE_URI]


def test_the_admin_api_refuses_a_private_use_scheme_for_a_confidential_client(
    admin_client, allow_native_scheme
):
    token = client_credentials_token(admin_client(), ALL_ADMIN)
    body = {"name": "Web app", "client_type": "confidential", "grant_type": "authorization_code"}
    response = call("POST", "/api/v1/clients", token, {**body, "redirect_uris": [NATIVE_URI]})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert "redirect_uris" in response.json()["fields"]


def test_the_admin_api_refuses_the_attack_on_a_change(admin_client, client_factory):
    token = client_credentials_token(admin_client(), ALL_ADMIN)
    registered = client_factory(name="Web app")
    response = call(
        "PATCH",
        f"/api/v1/clients/{registered.client_id}",
        token,
        {"redirect_uris": ["http://[::1].evil.example/cb"]},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    registered.client.refresh_from_db()
    assert registered.client.redirect_uris == "https://rp.example.com/callback"
