"""RFC 7523 §2.2/§3 and OIDC Core §9 private_key_jwt: a client authenticates with a JWT it signed.

The assertion is kept with the grant's audit record, so the client's own signature proves the request
(docs/audit-ledger.md). Replayed, expired, mis-addressed or unregistered-key assertions are
invalid_client, and each rejection is recorded as a failed attempt.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client as HttpClient
from jwcrypto import jwk, jws, jwt

from tests.conftest import REDIRECT_URI, RegisteredClient
from tests.oauth_client import AuthorizationRequest, authorize, basic_auth, form_post
from tests.uaa.client_assertions import (
    ISSUER,
    TOKEN_ENDPOINT,
    assertion,
    assertion_request,
    new_key,
    public_set,
)
from tokens.models import LedgerRecord
from uaa.oauth.models import Client
from uaa.oauth.rfc7523 import ASSERTION_TYPE
from uaa.oauth.services import register_client


def token_request(signed: str, **extra: str) -> Any:
    return assertion_request(signed, **extra)


def records(event: str) -> list[dict[str, Any]]:
    return [
        json.loads(b)
        for b in LedgerRecord.objects.filter(event=event).order_by("id").values_list("body", flat=True)
    ]


@pytest.fixture
def signing_key() -> jwk.JWK:
    return new_key("ES256")


@pytest.fixture
def jwt_client(db, signing_key) -> RegisteredClient:
    issued = register_client(
        name="Signed service",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        default_audience=["https://api.example.com"],
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks=public_set(signing_key),
    )
    return RegisteredClient(client=issued.client, secret=issued.client_secret)


def failure_reasons() -> dict[str, int]:
    """Every recorded reason for a failed client authentication, summaries flushed (docs/audit-ledger.md)."""
    from django.utils import timezone

    from uaa.oauth.audit import flush_client_authentication_failures

    flush_client_authentication_failures(now=timezone.now(), force=True)
    reasons: dict[str, int] = {}
    for failed in records("client_authentication.failed"):
        counted = failed["detail"].get("reasons") or {failed["detail"]["reason"]: 1}
        for reason, count in counted.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return reasons


def assert_invalid_client(response: Any, reason: str) -> None:
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    assert response.json()["error"] == "invalid_client"
    assert response["Cache-Control"] == "no-store"
    assert reason in failure_reasons()


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_a_signed_assertion_authenticates_the_client(db, alg):
    """RFC 7523 §2.2: client_assertion_type jwt-bearer and a client_assertion signed with a registered key."""
    key = new_key(alg)
    issued = register_client(
        name="svc",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks=public_set(key),
    )
    response = token_request(assertion(issued.client.client_id, key, alg=alg))
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["token_type"] == "Bearer"


def test_the_assertion_is_kept_with_the_grant_and_proves_it_offline(jwt_client, signing_key):
    """The client's own signature, in the ledger: verifiable with its registered public key alone."""
    signed = assertion(jwt_client.client_id, signing_key)  # aud: the issuer identifier
    response = token_request(signed)
    assert response.status_code == HTTPStatus.OK
    (issued,) = records("token.issued")
    assert issued["evidence"] == {"client_assertion": signed}
    assert issued["client_id"] == jwt_client.client_id

    public = jwk.JWKSet.from_json(json.dumps(jwt_client.client.jwks))
    kept = jws.JWS()
    kept.deserialize(issued["evidence"]["client_assertion"])
    kept.verify(public.get_key(signing_key["kid"]))
    claims = json.loads(kept.payload)
    assert claims["iss"] == claims["sub"] == jwt_client.client_id


def test_a_replayed_assertion_is_invalid_client_and_recorded(jwt_client, signing_key):
    """RFC 7523 §3 item 7: the jti is single use."""
    signed = assertion(jwt_client.client_id, signing_key)
    assert token_request(signed).status_code == HTTPStatus.OK
    assert_invalid_client(token_request(signed), "the assertion was used before (jti replayed)")
    failed = records("client_authentication.failed")[-1]
    assert failed["client_id"] == jwt_client.client_id
    assert failed["detail"] == {
        "method": "private_key_jwt",
        "reason": "the assertion was used before (jti replayed)",
    }
    assert failed["hashes"] == {"client_assertion": hashlib.sha256(signed.encode()).hexdigest()}
    assert signed not in json.dumps(failed)  # a rejected assertion is kept by digest only


def test_an_expired_assertion_is_invalid_client(jwt_client, signing_key):
    """RFC 7523 §3 item 4: exp, with a small allowance for clock skew."""
    signed = assertion(jwt_client.client_id, signing_key, exp=int(time.time()) - 120)
    assert_invalid_client(token_request(signed), "the assertion has expired")


def test_an_assertion_valid_for_too_long_is_invalid_client(jwt_client, signing_key):
    signed = assertion(jwt_client.client_id, signing_key, exp=int(time.time()) + 24 * 3600)
    assert_invalid_client(token_request(signed), "exp is too far in the future")


@pytest.mark.parametrize(
    "aud",
    [
        "https://elsewhere.example/oauth/token",
        ["https://a.example"],
        None,
        ISSUER + "/",
        [ISSUER, "https://attacker.example"],  # the issuer, but not as the sole value
        [],
        7,
    ],
)
def test_an_assertion_for_another_audience_is_invalid_client(jwt_client, signing_key, aud):
    """RFC 7523 §3 item 3: aud must identify this authorization server; draft-ietf-oauth-rfc7523bis §4:
    the issuer identifier as its sole value."""
    signed = assertion(jwt_client.client_id, signing_key, aud=aud)
    assert_invalid_client(token_request(signed), "aud is not the issuer identifier")


def test_the_issuer_as_a_one_element_array_is_accepted(jwt_client, signing_key):
    """RFC 7519 §4.1.3: aud may be an array; with the issuer as its sole value it names only us."""
    response = token_request(assertion(jwt_client.client_id, signing_key, aud=[ISSUER]))
    assert response.status_code == HTTPStatus.OK, response.content


@pytest.mark.parametrize(
    ("url", "aud"),
    [
        ("/oauth/token", TOKEN_ENDPOINT),
        ("/oauth/revoke", f"{ISSUER}/oauth/revoke"),
        ("/oauth/introspect", f"{ISSUER}/oauth/introspect"),
        ("/oauth/revoke", TOKEN_ENDPOINT),
    ],
)
def test_an_assertion_addressed_to_an_endpoint_url_is_refused_by_default(jwt_client, signing_key, url, aud):
    """The 2025 audience-injection advisory (draft-ietf-oauth-rfc7523bis §4, OpenID Foundation): an
    assertion whose aud is an endpoint URL can have been made for another authorization server that
    advertised our URL as its own endpoint; only the issuer identifier, which a client checks in the
    discovery document, is accepted. The attacker is that other authorization server, replaying."""
    data = {"token": "x"} if url != "/oauth/token" else {}
    response = assertion_request(assertion(jwt_client.client_id, signing_key, aud=aud), url, **data)
    assert_invalid_client(response, "aud is not the issuer identifier")


@pytest.mark.parametrize(
    ("url", "aud"),
    [
        ("/oauth/token", TOKEN_ENDPOINT),
        ("/oauth/revoke", f"{ISSUER}/oauth/revoke"),
        ("/oauth/revoke", TOKEN_ENDPOINT),
        ("/oauth/introspect", f"{ISSUER}/oauth/introspect"),
    ],
)
def test_endpoint_urls_are_accepted_when_the_setting_allows_them(settings, jwt_client, signing_key, url, aud):
    """OIDC Core §9 (aud SHOULD be the token endpoint URL): for clients not yet updated, an operator may
    turn on UAA_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUD; the token endpoint URL and the URL called count."""
    settings.UAA_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUD = True
    data = {"token": "x"} if url != "/oauth/token" else {}
    response = assertion_request(assertion(jwt_client.client_id, signing_key, aud=aud), url, **data)
    assert response.status_code == HTTPStatus.OK, response.content
    other = assertion(jwt_client.client_id, signing_key, aud=f"{ISSUER}/oauth/userinfo")
    assert_invalid_client(assertion_request(other, url, **data), "aud is not the issuer identifier")


def test_an_assertion_signed_with_an_unregistered_key_is_invalid_client(jwt_client):
    """RFC 7523 §3 item 9: the signature must verify with a key the client registered."""
    stranger = new_key("ES256")
    assert_invalid_client(
        token_request(assertion(jwt_client.client_id, stranger)), "not signed by a key the client registered"
    )


def test_a_symmetric_or_unsigned_assertion_is_refused(jwt_client, signing_key):
    """Only asymmetric algorithms: an HMAC keyed with the public key, or alg none, proves nothing."""
    secret = jwk.JWK(kty="oct", k=signing_key.export_public(as_dict=True)["x"])
    token = jwt.JWT(
        header={"alg": "HS256"}, claims={"iss": jwt_client.client_id, "sub": jwt_client.client_id}
    )
    token.make_signed_token(secret)
    assert_invalid_client(token_request(token.serialize()), "algorithm 'HS256' is not accepted")


def _json_serialized(client_id: str, key: jwk.JWK, *, general: bool) -> str:
    """A JWS JSON Serialization (RFC 7515 §7.2) of valid claims, signed with the client's own key, with an
    unprotected ``header`` the signature does not cover."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": ISSUER, "exp": now + 60, "jti": uuid.uuid4().hex}
    token = jws.JWS(json.dumps(claims))
    token.add_signature(
        key, alg="ES256", protected={"alg": "ES256", "kid": key["kid"]}, header={"note": UNSIGNED_WORDS}
    )
    flattened = json.loads(token.serialize(compact=False))
    if not general:
        return json.dumps(flattened)
    payload = flattened.pop("payload")
    return json.dumps({"payload": payload, "signatures": [flattened]})


UNSIGNED_WORDS = "the client agreed to pay 1,000,000 EUR"


@pytest.mark.parametrize("general", [False, True])
def test_a_jws_json_serialization_is_not_a_client_assertion(jwt_client, signing_key, general):
    """Red team W1. RFC 7523 §2.2: client_assertion "MUST contain a single JWT"; RFC 7519 §1: "JWTs are
    always represented using the JWS Compact Serialization or the JWE Compact Serialization". A JSON
    serialization carries an unprotected header, which went into the undeletable ledger as the client's
    evidence although the client never signed it."""
    serialized = _json_serialized(jwt_client.client_id, signing_key, general=general)
    assert_invalid_client(token_request(serialized), "not a JWT in compact serialization")
    assert records("token.issued") == []
    bodies = LedgerRecord.objects.values_list("body", flat=True)
    assert not any(UNSIGNED_WORDS in body for body in bodies)


def test_iss_and_sub_must_both_be_the_client(jwt_client, signing_key):
    """RFC 7523 §3 items 1-2 and OIDC Core §9: iss = sub = client_id."""
    signed = assertion(jwt_client.client_id, signing_key, sub="someone-else")
    assert_invalid_client(token_request(signed), "iss and sub must both be the client_id")
    other = assertion(jwt_client.client_id, signing_key)
    assert_invalid_client(
        token_request(other, client_id="another-client"), "client_id does not match the assertion"
    )


def test_a_missing_jti_or_wrong_assertion_type_is_invalid_client(jwt_client, signing_key):
    assert_invalid_client(
        token_request(assertion(jwt_client.client_id, signing_key, jti=None)), "jti is missing"
    )
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "client_credentials", "client_assertion_type": "urn:x", "client_assertion": "a.b.c"},
    )
    assert_invalid_client(response, "client_assertion_type is not jwt-bearer")


def test_a_private_key_jwt_client_cannot_use_its_secret(jwt_client):
    """OIDC Dynamic Client Registration §2: the registered token_endpoint_auth_method is the one used."""
    secret = Client.objects.get(pk=jwt_client.client.pk)
    assert jwt_client.secret
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "client_credentials"},
        auth=basic_auth(secret.client_id, jwt_client.secret),
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"


def test_a_secret_client_cannot_authenticate_with_an_assertion(service_client):
    key = new_key()
    assert_invalid_client(
        token_request(assertion(service_client.client_id, key)),
        "no client registered for private_key_jwt has this client_id",
    )


def test_revocation_accepts_private_key_jwt_and_records_the_assertion(jwt_client, signing_key):
    """RFC 7009 §2.1 with RFC 7523 client authentication (aud: the issuer identifier)."""
    access_token = token_request(assertion(jwt_client.client_id, signing_key)).json()["access_token"]
    signed = assertion(jwt_client.client_id, signing_key)
    response = form_post(
        HttpClient(),
        "/oauth/revoke",
        {"token": access_token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed},
    )
    assert response.status_code == HTTPStatus.OK
    (revoked,) = records("token.revoked")
    assert revoked["evidence"] == {"client_assertion": signed}


@pytest.fixture
def jwks_server(signing_key) -> Iterator[str]:
    document = json.dumps(public_set(signing_key)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def test_keys_can_be_registered_by_jwks_uri(db, settings, signing_key, jwks_server):
    """OIDC Dynamic Client Registration §2 jwks_uri: fetched, cached, and used like an inline set."""
    settings.UAA_JWKS_URI_ALLOW_LOOPBACK = True  # the test server listens on 127.0.0.1
    issued = register_client(
        name="svc",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks_uri=jwks_server,
    )
    response = token_request(assertion(issued.client.client_id, signing_key))
    assert response.status_code == HTTPStatus.OK, response.content


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"jwks": {}, "jwks_uri": ""}, "jwks"),
        ({"jwks_uri": "http://keys.example.com/jwks"}, "jwks"),
        ({"jwks": {"keys": [new_key().export_private(as_dict=True)]}}, "jwks"),
        ({"jwks": {}, "jwks_uri": "http://keys.example.com/jwks"}, "jwks_uri"),
        (
            {
                "client_type": Client.CLIENT_PUBLIC,
                "authorization_grant_type": Client.GRANT_AUTHORIZATION_CODE,
                "redirect_uris": "https://rp.example.com/cb",
            },
            "token_endpoint_auth_method",
        ),
    ],
)
def test_registration_needs_public_keys_of_a_confidential_client(jwt_client, changes, field):
    client = jwt_client.client
    for name, value in changes.items():
        setattr(client, name, value)
    with pytest.raises(ValidationError) as error:
        client.clean()
    assert field in error.value.message_dict


def test_discovery_lists_private_key_jwt_and_its_algorithms(db):
    """RFC 8414 §2 token_endpoint_auth_methods_supported and ..._auth_signing_alg_values_supported."""
    metadata = HttpClient().get("/.well-known/openid-configuration").json()
    for endpoint in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        assert "private_key_jwt" in metadata[f"{endpoint}_auth_methods_supported"]
        assert metadata[f"{endpoint}_auth_signing_alg_values_supported"] == [
            "RS256",
            "PS256",
            "ES256",
            "EdDSA",
        ]


def test_the_code_exchange_accepts_private_key_jwt(db, browser, signing_key):
    """OIDC Core §9 at the token endpoint of the code flow: no client_id or secret, only the assertion."""
    issued = register_client(
        name="RP",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_AUTHORIZATION_CODE,
        redirect_uris=[REDIRECT_URI],
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks=public_set(signing_key),
    )
    request = AuthorizationRequest(client_id=issued.client.client_id, redirect_uri=REDIRECT_URI)
    code = authorize(browser, request)["code"]
    signed = assertion(issued.client.client_id, signing_key)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": request.verifier,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }
    response = form_post(HttpClient(), "/oauth/token", data)
    assert response.status_code == HTTPStatus.OK, response.content
    assert "id_token" in response.json()
    (issued_record,) = records("token.issued")
    assert issued_record["grant_type"] == "authorization_code"
    assert issued_record["evidence"] == {"client_assertion": signed}


def test_introspection_accepts_private_key_jwt(jwt_client, signing_key):
    """RFC 7662 §2.1 with RFC 7523 client authentication (aud: the issuer identifier)."""
    access_token = token_request(assertion(jwt_client.client_id, signing_key)).json()["access_token"]
    signed = assertion(jwt_client.client_id, signing_key)
    response = form_post(
        HttpClient(),
        "/oauth/introspect",
        {"token": access_token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed},
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["active"] is True


def test_an_admin_registers_a_private_key_jwt_client_with_its_jwk_set(db, signing_key):
    """The client form takes the method and the keys; a private key pasted by mistake is refused."""
    from tests.factories import UserFactory

    http = HttpClient()
    http.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {
        "name": "Signed",
        "client_type": Client.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": Client.GRANT_CLIENT_CREDENTIALS,
        "algorithm": Client.RS256,
        "token_endpoint_auth_method": Client.PRIVATE_KEY_JWT,
        "jwks": json.dumps({"keys": [signing_key.export_private(as_dict=True)]}),
        "_save": "Save",
    }
    refused = http.post("/admin/oauth/client/add/", form)
    assert refused.status_code == HTTPStatus.OK and not Client.objects.filter(name="Signed").exists()
    assert "no private key" in refused.content.decode()
    form["jwks"] = json.dumps(public_set(signing_key))
    assert http.post("/admin/oauth/client/add/", form).status_code == HTTPStatus.OK  # the credentials page
    client = Client.objects.get(name="Signed")
    assert token_request(assertion(client.client_id, signing_key)).status_code == HTTPStatus.OK


def test_an_assertion_made_with_pyjwt_as_in_the_docs_is_accepted(db):
    """Interop: the snippet of docs/integrating-a-client.md, with PyJWT and a PEM key, not jwcrypto."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = jwk.JWK.from_pem(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    kid = public.thumbprint()
    issued = register_client(
        name="svc",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks={"keys": [{**public.export_public(as_dict=True), "kid": kid}]},
    )
    now = int(time.time())
    client_id = issued.client.client_id
    claims = {"iss": client_id, "sub": client_id, "aud": ISSUER, "iat": now, "exp": now + 60}
    signed = pyjwt.encode({**claims, "jti": uuid.uuid4().hex}, pem, algorithm="ES256", headers={"kid": kid})
    assert token_request(signed).status_code == HTTPStatus.OK
