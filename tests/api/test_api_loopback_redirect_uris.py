"""Loopback redirect URIs at the admin API: what it registers is what RFC 8252 §7.3 and §8.3 describe.

The red team's mismatch: the API took ``http://localhost/...`` and any ``127.0.0.0/8`` or IPv6 spelling of
a loopback address as a "loopback" redirect URI (docs/api.md said so), while the authorization endpoint,
docs/endpoints.md and docs/integrating-a-client.md give the loopback treatment (any port, native apps
only) to the literals ``127.0.0.1`` and ``[::1]`` alone. A native app registered with
``http://localhost:8080/cb`` then failed at its next ephemeral port, and ``localhost`` is a name that
the resolver or a hosts file may send elsewhere (§8.3: "NOT RECOMMENDED"); ``http`` to any other host is
plain text on the network (RFC 9700 §2.1, §4.1.3). RFC 8252 §7.3: "http://127.0.0.1:{port}/{path} for
IPv4, and http://[::1]:{port}/{path} for IPv6".
"""

from __future__ import annotations

from http import HTTPStatus

import pytest

from tests.api.conftest import ALL_ADMIN, call, client_credentials_token
from tests.oauth_client import AuthorizationRequest, authorize

CLIENTS = "/api/v1/clients"
NATIVE = {"name": "Desktop app", "client_type": "public", "grant_type": "authorization_code"}


@pytest.fixture
def token(admin_client):
    return client_credentials_token(admin_client(), ALL_ADMIN)


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost/cb",  # §8.3: NOT RECOMMENDED; not the loopback interface by construction
        "http://localhost:8080/cb",
        "http://LOCALHOST:8080/cb",
        "http://app.localhost/cb",
        "http://127.0.0.2/cb",  # loopback, but not the §7.3 literal: exact port matching, a surprise
        "http://127.1/cb",
        "http://[0:0:0:0:0:0:0:1]/cb",  # ::1 spelt out: not the literal the matching compares
        "http://[::ffff:127.0.0.1]/cb",
        "http://example.com/cb",
    ],
)
@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
def test_http_on_anything_but_the_loopback_ip_literals_is_refused(token, uri, field):
    body = {**NATIVE, "redirect_uris": ["http://127.0.0.1/cb"], field: [uri]}
    response = call("POST", CLIENTS, token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert field in response.json()["fields"]


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/cb",
        "http://127.0.0.1:8080/cb",
        "http://[::1]/cb",
        "http://[::1]:8080/cb",
        "https://localhost:8443/cb",  # https is never plain text; the host is the registrant's choice
    ],
)
def test_the_rfc8252_loopback_literals_are_accepted(token, uri):
    response = call("POST", CLIENTS, token, {**NATIVE, "redirect_uris": [uri]})
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert response.json()["redirect_uris"] == [uri]


@pytest.mark.parametrize("port", ["", ":49152", ":61000"])
def test_a_native_app_registered_through_the_api_gets_its_code_at_any_loopback_port(token, browser, port):
    """§7.3: "The authorization server MUST allow any port to be specified at the time of the request"."""
    registered = call("POST", CLIENTS, token, {**NATIVE, "redirect_uris": ["http://127.0.0.1/cb"]}).json()
    request = AuthorizationRequest(
        client_id=registered["client_id"], redirect_uri=f"http://127.0.0.1{port}/cb"
    )
    assert authorize(browser, request)["code"]
