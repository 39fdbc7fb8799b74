"""Hostile values in well-formed requests: numbers out of range, deep nesting, lone surrogates, NUL in a
cookie, over-long parameters, an unparseable URI (red team, issue 8 item 6 continued).

Attacker: anyone on the network, with no account and no client credentials (the client assertion is
checked before anyone is authenticated; the session cookie and the authorization request need no
sign-in). What they must not achieve: a 500 ``server_error`` with an ERROR traceback in the log for a
request that is simply malformed (RFC 6749 §5.2: the client's error is ``invalid_request`` or
``invalid_client``; RFC 9110 §15.5: a 4xx), which turns every bad request into an alert and a log flood.
Several of these fail only on PostgreSQL (it refuses NUL in text and values longer than a varchar), so
CI runs this file on both databases.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache
from django.test import Client as HttpClient
from jwcrypto import jwk, jwt

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, form_post
from tests.uaa.client_assertions import ISSUER, assertion_request, http_server, new_key
from uaa.oauth.models import Client
from uaa.oauth.rfc7523 import ASSERTION_TYPE
from uaa.oauth.services import register_client

CLIENT_AUTH_ENDPOINTS = ["/oauth/token", "/oauth/introspect", "/oauth/revoke"]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()[:200]}" for r in caplog.records if r.levelno >= logging.ERROR]


def assert_client_error(
    response: Any, caplog: pytest.LogCaptureFixture, *, status: int | None = None
) -> None:
    """A 4xx with the RFC 6749 §5.2 JSON body (``no-store``), and no ERROR record."""
    assert HTTPStatus.BAD_REQUEST <= response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, response.content
    if status is not None:
        assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    assert isinstance(response.json()["error"], str)
    assert not errors_logged(caplog), errors_logged(caplog)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def signed_assertion(claims: dict[str, Any], key: jwk.JWK | None = None) -> str:
    """A compact JWS over ``claims`` exactly as given (json.dumps, so any number or escape survives)."""
    key = key or new_key("ES256")
    token = jwt.JWT(header={"alg": "ES256", "kid": key["kid"]}, claims=json.dumps(claims))
    token.make_signed_token(key)
    return token.serialize()


def raw_assertion(header: bytes, payload: bytes) -> str:
    """A compact JWS whose parts are the given bytes and a dummy signature (never verified: refused first)."""
    return f"{b64url(header)}.{b64url(payload)}.{b64url(b'x' * 64)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": "svc", "sub": "svc", "aud": ISSUER, "exp": now + 60, "iat": now, "jti": uuid.uuid4().hex}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def post_assertion(url: str, signed: str) -> Any:
    data = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, "token": "t"}
    if url == "/oauth/token":
        data["grant_type"] = "client_credentials"
    return form_post(HttpClient(), url, data)


# --- 1. NumericDates out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("url", CLIENT_AUTH_ENDPOINTS)
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [99999999999999999999, -(2**63), 2**63, 10**400])
def test_a_numeric_date_out_of_range_is_invalid_client(db, caplog, url, claim, value):
    """RFC 7519 §2: a NumericDate is a number of seconds; one no calendar can hold (the red team's
    99999999999999999999 and -2**63 raised OverflowError/OSError in datetime.fromtimestamp) is an
    assertion that authenticates nobody: 401 invalid_client (RFC 7523 §3.2), not a 500."""
    overrides: dict[str, Any] = {claim: value}
    if claim != "exp":
        overrides["exp"] = int(time.time()) + 60
    response = post_assertion(url, signed_assertion(claims(**overrides)))
    assert_client_error(response, caplog, status=HTTPStatus.UNAUTHORIZED)
    assert response.json()["error"] == "invalid_client"


# --- 2. deep nesting and size before anything is parsed -----------------------------------------------


@pytest.mark.parametrize("url", CLIENT_AUTH_ENDPOINTS)
@pytest.mark.parametrize("where", ["payload", "header"])
def test_a_deeply_nested_assertion_is_invalid_client(db, caplog, url, where):
    """RFC 7523 §3: an assertion that is not a JWT with a JSON object for claims is invalid_client. 3000
    nested arrays raised RecursionError in json.loads, before the throttle even ran (it reads the claimed
    client_id first)."""
    nested = b"[" * 3000 + b"]" * 3000
    header, payload = b'{"alg":"ES256"}', json.dumps(claims()).encode()
    signed = raw_assertion(nested, payload) if where == "header" else raw_assertion(header, nested)
    response = post_assertion(url, signed)
    assert_client_error(response, caplog, status=HTTPStatus.UNAUTHORIZED)


def test_an_oversized_assertion_is_not_parsed_to_find_its_client(db, caplog, monkeypatch):
    """The claimed client_id (for the throttle and the record) is read only from an assertion within
    MAX_ASSERTION_BYTES: a bigger one is refused as it is, never decoded."""
    from uaa.oauth import rfc7523

    parsed: list[str] = []
    real = rfc7523._unverified
    monkeypatch.setattr(rfc7523, "_unverified", lambda value: parsed.append(value) or real(value))
    big = raw_assertion(b'{"alg":"ES256"}', json.dumps(claims(pad="p" * 20_000)).encode())
    assert len(big) > rfc7523.MAX_ASSERTION_BYTES
    response = post_assertion("/oauth/token", big)
    assert_client_error(response, caplog, status=HTTPStatus.UNAUTHORIZED)
    assert parsed == []


# --- 3. lone surrogates -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", CLIENT_AUTH_ENDPOINTS)
@pytest.mark.parametrize("claim", ["iss", "jti", "kid"])
def test_a_lone_surrogate_in_the_assertion_is_invalid_client(db, caplog, url, claim):
    """RFC 8259 §8.2: "\\ud800" is valid JSON escaping but no Unicode text; it cannot be a client_id (the
    database driver refused to encode it: UnicodeEncodeError, a 500) nor a jti to remember."""
    lone = "\ud800"
    if claim == "iss":
        payload = claims(iss=lone, sub=lone)
        header = {"alg": "ES256"}
    elif claim == "jti":
        payload, header = claims(jti=lone), {"alg": "ES256"}
    else:
        payload, header = claims(), {"alg": "ES256", "kid": lone}
    signed = raw_assertion(json.dumps(header).encode(), json.dumps(payload).encode())
    response = post_assertion(url, signed)
    assert_client_error(response, caplog, status=HTTPStatus.UNAUTHORIZED)


def test_a_registered_client_with_a_surrogate_jti_is_refused_not_a_500(db, caplog):
    """The jti is hashed and stored once the signature is verified (RFC 7523 §3 item 7): a client's own
    validly signed assertion with an unencodable jti is refused like any malformed assertion."""
    key = new_key("ES256")
    client = register_client(
        name="svc",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks={"keys": [key.export_public(as_dict=True)]},
    ).client
    signed = signed_assertion(claims(iss=client.client_id, sub=client.client_id, jti="\udfff"), key)
    assert_client_error(assertion_request(signed), caplog, status=HTTPStatus.UNAUTHORIZED)


# --- 4. a JWS the library refuses to describe ---------------------------------------------------------


CRIT_HEADERS = [
    {"alg": "RS256", "kid": "x", "crit": ["exp"]},
    {"alg": "RS256", "kid": "x", "crit": []},
    {"alg": "RS256", "kid": "x", "crit": "b64"},
    {"alg": "RS256", "kid": "x", "b64": False, "crit": ["b64"]},
    {"alg": "RS256", "kid": "\ud800", "typ": "at+jwt"},  # a kid no database can look up
    {"alg": "RS256", "kid": "a\x00b", "typ": "at+jwt"},
]


@pytest.mark.parametrize("header", CRIT_HEADERS)
def test_a_bearer_token_with_an_unreadable_header_is_invalid_token_at_userinfo(db, caplog, header):
    """RFC 7515 §4.1.11: a crit header naming what the recipient does not understand makes the JWS invalid;
    at userinfo that is RFC 6750 §3.1 invalid_token (jwcrypto raised InvalidJWSObject reading the header:
    a 500). So is a kid that is no text (a lone surrogate: UnicodeEncodeError in the key lookup)."""
    token = raw_assertion(json.dumps(header).encode(), b'{"sub":"x"}')
    response = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not errors_logged(caplog)


@pytest.mark.parametrize("header", CRIT_HEADERS)
def test_introspecting_a_token_with_an_unreadable_header_is_inactive(service_client, caplog, header):
    """RFC 7662 §2.2: a token the server cannot make sense of is {"active": false}, not a 500."""
    token = raw_assertion(json.dumps(header).encode(), b'{"sub":"x"}')
    response = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=service_client.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json() == {"active": False}
    assert not errors_logged(caplog)


# --- 5. a resource that is no URI ---------------------------------------------------------------------


UNPARSEABLE_RESOURCES = ["http://[::1", "https://[v1.x]/", "http://[::1]:99999/", "https://a:b:c/"]


@pytest.mark.parametrize("resource", UNPARSEABLE_RESOURCES)
def test_an_unparseable_resource_at_authorize_is_refused_signed_out(
    client, confidential_client, caplog, resource
):
    """RFC 8707 §2: the resource "MUST be an absolute URI"; one urllib cannot even split ("Invalid IPv6
    URL": a ValueError, a 500 before sign-in) is invalid_target, redirected to the client."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    client.raise_request_exception = False
    response = client.get(request.url(resource=resource))
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    assert response["Location"].startswith(REDIRECT_URI)
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["invalid_target"]
    assert not errors_logged(caplog)


@pytest.mark.parametrize("resource", UNPARSEABLE_RESOURCES)
def test_an_unparseable_resource_at_authorize_is_refused_signed_in(
    browser, confidential_client, caplog, resource
):
    """The same for a signed-in user (the consent page is never shown for it)."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    browser.raise_request_exception = False
    response = browser.get(request.url(resource=resource))
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["invalid_target"]
    assert not errors_logged(caplog)


@pytest.mark.parametrize("resource", UNPARSEABLE_RESOURCES)
def test_an_unparseable_resource_at_the_token_endpoint_is_invalid_target(service_client, caplog, resource):
    """RFC 8707 §2.2: invalid_target at the token endpoint, in the §5.2 JSON shape."""
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "client_credentials", "resource": resource},
        auth=service_client.basic,
    )
    assert_client_error(response, caplog, status=HTTPStatus.BAD_REQUEST)
    assert response.json()["error"] == "invalid_target"


# --- 6. NUL in the session cookie ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/accounts/login",
        "/accounts/security",
        "/oauth/authorize",
    ],
)
@pytest.mark.parametrize("value", ["\x00" * 8, "abcdefgh\x00", "ÿ" * 32, "a" * 41, "%00" * 8])
def test_a_session_cookie_that_cannot_be_a_session_key_is_no_session(db, caplog, path, value):
    """A session key is what Django made it (32 of [a-z0-9]); anything else names no session, so the request
    goes on signed out. PostgreSQL refuses NUL in text: every page that read the session was a 500
    (DataError), /healthz, the JWKS and discovery included."""
    http = HttpClient()
    http.raise_request_exception = False
    http.cookies["uaa_session"] = value
    response = http.get(path)
    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, response.content[:300]
    assert not errors_logged(caplog)


def test_a_signed_in_session_still_works(browser):
    """The check refuses only what Django could never have issued."""
    assert browser.get("/accounts/security").status_code == HTTPStatus.OK


# --- 7. over-long authorization parameters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "length"),
    [("nonce", 256), ("state", 2049), ("state", 20_000), ("code_challenge", 129), ("client_id", 101)],
)
def test_over_long_authorization_parameters_are_refused_before_anything_is_stored(
    browser, confidential_client, caplog, name, length
):
    """RFC 6749 §4.1.2.1 invalid_request, before anything is stored: the nonce is kept in a varchar(255)
    (PostgreSQL raised DataError: a 500 after consent), and a 20 KB state came back in a Location header
    bigger than the proxy's buffer (nginx: 502). The limits are in docs/endpoints.md."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    browser.raise_request_exception = False
    response = browser.get(request.url(**{name: "n" * length}))
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content[:300]
    assert "Location" not in response
    assert b"n" * 300 not in response.content
    assert not errors_logged(caplog)


def test_authorization_parameters_at_their_limit_still_work(browser, confidential_client):
    """A 255-character nonce and a 2048-character state are accepted and come back unchanged."""
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI, nonce="n" * 255, state="s" * 2048
    )
    confidential_client.client.trusted = True
    confidential_client.client.save()
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    assert parse_qs(urlsplit(response["Location"]).query)["state"] == ["s" * 2048]


def test_an_over_long_nonce_in_the_consent_form_is_refused(browser, confidential_client, caplog):
    """The consent POST carries the same parameters; an edited, over-long copy is refused the same way."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    browser.raise_request_exception = False
    form = browser.get(request.url()).context["form"]
    data = {field: form.initial.get(field) or "" for field in form.fields}
    data.update(allow="Authorize", nonce="n" * 300)
    response = browser.post("/oauth/authorize", data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert not errors_logged(caplog)


# --- 8. a jwks_uri serving deep nesting -----------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"keys": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"keys": [{"kty": "EC", "x": ' + b'{"a":' * 900 + b"1" + b"}" * 900 + b"}]}",
    ],
)
def test_a_jwks_uri_serving_deep_nesting_is_refused_and_remembered(db, settings, caplog, document):
    """A client's jwks_uri is the client's to control (and its operator may be the attacker): a document
    nested deeper than any JWK Set (RFC 7517 §5) is a failed fetch — invalid_client, negative-cached, and
    counted by the throttle — not a RecursionError on every request."""
    settings.UAA_JWKS_URI_ALLOW_LOOPBACK = True
    cache.clear()
    key = new_key("ES256")

    def handle(request: Any, served: Any) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(document)))
        request.end_headers()
        request.wfile.write(document)

    with http_server(handle) as (port, served):
        client = register_client(
            name="svc",
            client_type=Client.CLIENT_CONFIDENTIAL,
            grant_type=Client.GRANT_CLIENT_CREDENTIALS,
            token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
            jwks_uri=f"http://127.0.0.1:{port}/jwks.json",
        ).client
        for _ in range(3):
            signed = signed_assertion(claims(iss=client.client_id, sub=client.client_id), key)
            response = assertion_request(signed)
            assert_client_error(response, caplog, status=HTTPStatus.UNAUTHORIZED)
        assert served.requests == ["/jwks.json"]  # fetched once, the failure remembered
    from accounts.models import ThrottleCounter

    assert ThrottleCounter.objects.filter(key__startswith="client:", failures__gte=3).exists()
    cache.clear()


# --- 9. consent, admin and logging -------------------------------------------------------------------


@pytest.mark.parametrize("edited", ["no-such-client", "\x00", "x" * 300, ""])
def test_a_consent_answer_with_an_edited_client_id_gets_the_error_page(
    browser, confidential_client, caplog, edited
):
    """OIDC Core §3.1.2.4: the answer belongs to the request the page was shown for; an edited client_id
    (Client.DoesNotExist: a 500) is refused, never redirected anywhere."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    browser.raise_request_exception = False
    form = browser.get(request.url()).context["form"]
    data = {field: form.initial.get(field) or "" for field in form.fields}
    data.update(allow="Authorize", client_id=edited)
    response = browser.post("/oauth/authorize", data)
    assert HTTPStatus.BAD_REQUEST <= response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR or (
        response.status_code == HTTPStatus.FOUND and response["Location"].startswith(REDIRECT_URI)
    ), response.content[:300]
    assert not errors_logged(caplog)


@pytest.fixture
def admin_browser(db):
    from tests.factories import UserFactory

    admin = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    http.force_login(admin)
    http.raise_request_exception = False
    return http


@pytest.mark.parametrize(
    ("changelist", "action"),
    [
        ("/admin/accounts/user/", "delete_selected"),
        ("/admin/oauth/client/", "delete_selected"),
        ("/admin/tokens/signingkey/", "delete_selected"),
    ],
)
@pytest.mark.parametrize("selected", ["\x00", "not-a-uuid", "1' OR '1'='1", "9" * 40, "-1.5"])
def test_an_admin_action_on_a_malformed_selection_is_a_400(
    admin_browser, caplog, changelist, action, selected
):
    """An admin's bulk action names objects by primary key; a value that cannot be one (NUL, a non-UUID for
    the user model, a number out of range) is the request's fault: a 400, not a ValidationError or
    DataError 500."""
    response = admin_browser.post(
        changelist, {"action": action, "_selected_action": [selected], "index": "0"}
    )
    assert HTTPStatus.BAD_REQUEST <= response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR or (
        response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND)
    ), response.content[:300]
    assert not errors_logged(caplog)


def test_a_disallowed_to_field_is_a_warning_not_an_error(admin_browser, caplog):
    """Django refuses ``_to_field`` naming a field that is not a relation target (SuspiciousOperation,
    logged on django.security.DisallowedModelAdminToField at ERROR): it is the client's fault."""
    response = admin_browser.get("/admin/accounts/user/?_to_field=password")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert not errors_logged(caplog)
