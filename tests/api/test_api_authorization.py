"""Who may call the admin API (RFC 6750 §2.1, §3; RFC 9068 §4; RFC 6749 §3.3).

Attackers: a client holding only uaa.clients.read that tries to write; an ordinary client (or a user
through an authorization-code client) that asks this server for an admin scope; a user's own access token;
anyone with a forged, expired, other-issuer, alg=none, or HS256-with-our-public-key token; a client whose
admin scope was taken away, or that was deleted, replaying the token it still holds.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import jwt
import pytest
from freezegun import freeze_time

from tests.api.conftest import call, client_credentials_token
from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize
from tests.uaa.endpoints import jwks, token_request, unverified_claims
from uaa.oauth.models import Client
from uaa.oauth.services import update_client

CLIENTS = "/api/v1/clients"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _challenge(response) -> str:
    return response.get("WWW-Authenticate", "")


def assert_invalid_token(response) -> None:
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in _challenge(response)
    assert _challenge(response).startswith("Bearer ")


# --- scopes ---------------------------------------------------------------------------------------
def test_a_read_only_token_cannot_register_change_delete_or_rotate(admin_token, confidential_client):
    """RFC 6750 §3.1: insufficient_scope (403), the challenge naming the scope the request needs."""
    token = admin_token("uaa.clients.read")
    path = f"{CLIENTS}/{confidential_client.client_id}"
    attempts = [
        call(
            "POST", CLIENTS, token, {"name": "x", "client_type": "public", "grant_type": "authorization_code"}
        ),
        call("PATCH", path, token, {"name": "renamed"}),
        call("DELETE", path, token),
        call("POST", f"{path}/rotate-secret", token),
    ]
    for response in attempts:
        assert response.status_code == HTTPStatus.FORBIDDEN, response.content
        assert response.json()["error"] == "insufficient_scope"
        assert response.json()["scope"] == "uaa.clients.write"
        assert 'error="insufficient_scope"' in _challenge(response)
        assert 'scope="uaa.clients.write"' in _challenge(response)
    confidential_client.client.refresh_from_db()
    assert confidential_client.client.name == "Relying Party"
    assert Client.objects.filter(name="x").count() == 0


def test_a_write_token_does_not_read(admin_token, confidential_client):
    response = call("GET", CLIENTS, admin_token("uaa.clients.write"))
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["scope"] == "uaa.clients.read"


def test_a_client_not_registered_for_an_admin_scope_cannot_get_it(service_client):
    """RFC 6749 §5.2 invalid_scope: admin scopes are never an ordinary client's by default."""
    response = token_request(
        service_client, {"grant_type": "client_credentials", "scope": "uaa.clients.write"}
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["error"] == "invalid_scope"


def test_an_authorization_code_client_registered_for_an_admin_scope_never_gets_it_for_a_user(
    client_factory, browser
):
    """A user's token never carries an admin scope, whatever the client was registered for (the Django
    admin does not stop an operator registering it): the authorization request asking for it is
    invalid_scope (RFC 6749 §4.1.2.1, redirected to the client)."""
    registered = client_factory(allowed_scopes=["uaa.clients.write"])
    request = AuthorizationRequest(
        client_id=registered.client_id, redirect_uri=REDIRECT_URI, scope="openid uaa.clients.write"
    )
    params = authorize(browser, request)
    assert params.get("error") == "invalid_scope", params
    assert "code" not in params


def test_a_users_access_token_is_forbidden(confidential_client, code_flow):
    """A user's authorization-code token, signed by this server for this server, has no admin scope."""
    token = code_flow(confidential_client, scope="openid")["tokens"]["access_token"]
    response = call("GET", CLIENTS, token)
    assert response.status_code == HTTPStatus.FORBIDDEN, response.content
    assert response.json()["error"] == "insufficient_scope"


def test_a_client_whose_admin_scope_was_taken_away_holds_it_no_longer(admin_client):
    registered = admin_client("uaa.clients.read")
    token = client_credentials_token(registered, "uaa.clients.read")
    assert call("GET", CLIENTS, token).status_code == HTTPStatus.OK
    update_client(client=registered.client, changes={"allowed_scopes": ""}, actor="test")
    assert call("GET", CLIENTS, token).status_code == HTTPStatus.FORBIDDEN


def test_a_deleted_clients_token_is_invalid(admin_client):
    registered = admin_client("uaa.clients.read")
    token = client_credentials_token(registered, "uaa.clients.read")
    registered.client.delete()
    assert_invalid_token(call("GET", CLIENTS, token))


# --- tokens that are not valid --------------------------------------------------------------------
def test_no_token_is_401_with_a_bare_challenge():
    """RFC 6750 §3.1: a request without authentication gets the challenge and no error code in it."""
    response = call("GET", CLIENTS)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert _challenge(response) == 'Bearer realm="uaa"'


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer \u00e9t\u00e9", "Bearer " + "a" * 9000]
)
def test_a_malformed_authorization_header_is_invalid_token(db, header):
    assert_invalid_token(HttpClientGet(CLIENTS, header))


def HttpClientGet(path, header):
    from django.test import Client as HttpClient

    return HttpClient().get(path, HTTP_AUTHORIZATION=header)


def test_an_expired_token_is_invalid(admin_token):
    token = admin_token("uaa.clients.read")
    with freeze_time(datetime.now(UTC) + timedelta(hours=1)):
        assert_invalid_token(call("GET", CLIENTS, token))


def test_a_token_in_the_query_string_is_not_taken(admin_token):
    """RFC 6750 §2.3 / RFC 9700 §4.3.2: never from the URI."""
    token = admin_token("uaa.clients.read")
    response = call("GET", f"{CLIENTS}?access_token={token}")
    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_a_token_of_another_issuer_signed_with_its_own_key_is_invalid(admin_token):
    from cryptography.hazmat.primitives.asymmetric import rsa

    real = unverified_claims(admin_token("uaa.clients.read"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {**real, "iss": "https://evil.example"},
        key,
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": "evil"},
    )
    assert_invalid_token(call("GET", CLIENTS, forged))


def test_a_token_with_alg_none_is_invalid(admin_token):
    """RFC 8725 §3.1: an unsecured JWT is never accepted."""
    real = admin_token("uaa.clients.read")
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    payload = real.split(".")[1]
    for alg in ("none", "None"):
        forged = f"{_b64(json.dumps({**header, 'alg': alg}).encode())}.{payload}."
        assert_invalid_token(call("GET", CLIENTS, forged))


def test_an_hs256_token_keyed_with_our_public_key_is_invalid(admin_token):
    """RFC 8725 §2.1: the algorithm is the key's, never the header's (the public-key-as-HMAC attack)."""
    import hashlib
    import hmac

    real = admin_token("uaa.clients.read")
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    published = next(key for key in jwks()["keys"] if key["kid"] == header["kid"])
    secret = json.dumps(published).encode()
    signing_input = f"{_b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{real.split('.')[1]}"
    signature = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    assert_invalid_token(call("GET", CLIENTS, f"{signing_input}.{signature}"))


def test_a_tampered_token_is_invalid(admin_token):
    real = admin_token("uaa.clients.read")
    header, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "uaa.clients.read uaa.clients.write"
    assert_invalid_token(call("GET", CLIENTS, f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"))


def test_a_revoked_token_is_invalid(admin_client):
    from tests.uaa.endpoints import revoke

    registered = admin_client("uaa.clients.read")
    token = client_credentials_token(registered, "uaa.clients.read")
    assert revoke(registered, token).status_code == HTTPStatus.OK
    assert_invalid_token(call("GET", CLIENTS, token))


def test_a_token_for_another_audience_is_invalid(admin_client):
    """RFC 9068 §4: a token for a resource server is not a token for UAA."""
    registered = admin_client(
        "uaa.clients.read",
        allowed_resources=["https://api.example.com"],
        default_audience=["https://api.example.com"],
    )
    token = client_credentials_token(registered, "uaa.clients.read")
    assert unverified_claims(token)["aud"] == "https://api.example.com"
    assert_invalid_token(call("GET", CLIENTS, token))


def test_the_documented_way_to_an_admin_token_works(db):
    """docs/api.md: create_client for client credentials with admin scopes, then the token request."""
    import io

    from django.core.management import call_command

    from tests.conftest import RegisteredClient

    out = io.StringIO()
    call_command(
        "create_client",
        "--name=automation",
        "--grant=client_credentials",
        "--scope=uaa.clients.read",
        "--scope=uaa.clients.write",
        "--json",
        stdout=out,
    )
    issued = json.loads(out.getvalue())
    registered = RegisteredClient(
        client=Client.objects.get(client_id=issued["client_id"]), secret=issued["client_secret"]
    )
    token = client_credentials_token(registered, "uaa.clients.read uaa.clients.write")
    response = call("GET", CLIENTS, token)
    assert response.status_code == HTTPStatus.OK
    assert response.json()["results"][0]["client_id"] == registered.client_id


def test_a_signed_in_superusers_session_is_not_a_credential(db, confidential_client):
    """No session authentication: a page an admin has open cannot be made to call the API with their
    cookie (cross-site request forgery needs no token then)."""
    from tests.staff import staff_browser

    http, _admin = staff_browser(superuser=True)
    for method, path in (("get", CLIENTS), ("delete", f"{CLIENTS}/{confidential_client.client_id}")):
        response = getattr(http, method)(path)
        assert response.status_code == HTTPStatus.UNAUTHORIZED, (method, response.content)
    assert Client.objects.filter(pk=confidential_client.client.pk).exists()
