"""verify_jwt pins the algorithm to the stored key's and checks ``typ``; private keys leave memory
when they stop signing (issue 8, item 13).

Attacker: on the network or a registered client. They hold UAA's public keys (the JWKS), tokens
issued to them (an ID token, an access token) and can send any token they like. They must not get a
token accepted under an algorithm other than the one the key was made for (RFC 8725 §3.1, §2.1), with
``alg: none``, or as a token of another type (RFC 8725 §3.11, RFC 9068 §4: ``typ`` is ``at+jwt``).
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django.utils import timezone
from jwcrypto import jwk, jws, jwt

from tests.oauth_client import form_post
from tests.tokens.forgery import forge_token
from tokens import keys
from tokens.keys import cached_private_key_ids, create_signing_key
from tokens.models import SigningKey
from tokens.rotation import request_rotation, revoke_signing_key, rotate_signing_keys
from tokens.signing import active_signing_key, sign_jwt, verify_jwt

CLAIMS = {"iss": "http://testserver", "sub": "1", "aud": "https://api.example.com", "jti": "j1"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture
def active(db) -> dict[str, SigningKey]:
    now = timezone.now()
    return {
        algorithm: create_signing_key(algorithm=algorithm, now=now, state=SigningKey.State.ACTIVE)
        for algorithm in ("RS256", "ES256", "EdDSA")
    }


def private_of(key: SigningKey) -> jwk.JWK:
    """The test's own view of a genuine private key (an attacker never has it)."""
    from cryptography.hazmat.primitives import serialization

    return jwk.JWK.from_pyca(serialization.load_der_private_key(keys.unwrap_private_key(key), password=None))


def test_a_genuine_access_token_verifies(active):
    token = sign_jwt(claims=CLAIMS, algorithm="ES256", typ="at+jwt")
    assert verify_jwt(token, typ="at+jwt") == CLAIMS


@pytest.mark.parametrize("material", ["pem", "jwk-json", "modulus"])
def test_hs256_with_the_public_key_as_the_secret_is_refused(active, material):
    """RFC 8725 §2.1, §3.1: the classic confusion — an HMAC keyed with the published RSA public key."""
    rsa_key = active["RS256"]
    public = jwk.JWK(**rsa_key.public_jwk)
    secret = {
        "pem": public.export_to_pem(),
        "jwk-json": json.dumps(rsa_key.public_jwk).encode(),
        "modulus": base64.urlsafe_b64decode(rsa_key.public_jwk["n"] + "=="),
    }[material]
    token = forge_token(jwk.JWK(kty="oct", k=b64(secret)), kid=rsa_key.kid, alg="HS256")
    assert verify_jwt(token, typ="at+jwt") is None


def test_alg_none_is_refused(active):
    """RFC 8725 §3.1 / RFC 7518 §3.6: an unsecured JWS is never accepted."""
    header = {"alg": "none", "kid": active["RS256"].kid, "typ": "at+jwt"}
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(CLAIMS).encode())}."
    assert verify_jwt(token, typ="at+jwt") is None


def test_an_rs256_header_on_an_es256_kid_is_refused(active):
    """RFC 8725 §3.1: the key decides the algorithm, not the token's header."""
    header = {"alg": "RS256", "kid": active["ES256"].kid, "typ": "at+jwt"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(CLAIMS).encode())}"
    token = f"{signing_input}.{b64(b'x' * 256)}"
    assert verify_jwt(token, typ="at+jwt") is None


@pytest.mark.parametrize("alg", ["PS256", "RS384", "RS512"])
def test_another_rsa_algorithm_under_an_rs256_kid_is_refused(active, alg):
    """RFC 7517 §4.4 / RFC 8725 §3.1: a key made for RS256 verifies RS256 only — even a signature the
    genuine private key made under another algorithm is not accepted."""
    rsa_key = active["RS256"]
    token = forge_token(private_of(rsa_key), kid=rsa_key.kid, alg=alg)
    assert verify_jwt(token, typ="at+jwt") is None


def test_the_fully_specified_ed25519_name_under_an_eddsa_kid_is_refused(active):
    """RFC 8725 §3.1: one algorithm name per key; "Ed25519" (RFC 9864) is not the registered "EdDSA"."""
    key = active["EdDSA"]
    token = forge_token(private_of(key), kid=key.kid, alg="Ed25519")
    assert verify_jwt(token, typ="at+jwt") is None


def test_a_json_serialized_jws_is_refused(active):
    """RFC 7519 §7.2: a JWT is in the compact serialization; the JSON one (several headers) is not."""
    key = active["ES256"]
    signed = jws.JWS(json.dumps(CLAIMS))
    signed.add_signature(private_of(key), protected={"alg": "ES256", "kid": key.kid, "typ": "at+jwt"})
    assert verify_jwt(signed.serialize(), typ="at+jwt") is None


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "id_token+jwt", "at+jwt+x"])
def test_an_access_token_must_say_at_jwt(active, typ):
    """RFC 9068 §4: resource servers MUST verify that the typ header value is "at+jwt"."""
    key = active["ES256"]
    header = {"alg": "ES256", "kid": key.kid, **({"typ": typ} if typ else {})}
    token = jwt.JWT(header=header, claims=json.dumps(CLAIMS))
    token.make_signed_token(private_of(key))
    assert verify_jwt(token.serialize(), typ="at+jwt") is None


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "Application/AT+JWT"])
def test_the_media_type_forms_of_at_jwt_are_accepted(active, typ):
    """RFC 7515 §4.1.9: "application/" may be omitted, and media types compare case-insensitively."""
    key = active["ES256"]
    token = jwt.JWT(header={"alg": "ES256", "kid": key.kid, "typ": typ}, claims=json.dumps(CLAIMS))
    token.make_signed_token(private_of(key))
    assert verify_jwt(token.serialize(), typ="at+jwt") == CLAIMS


def test_an_access_token_is_not_an_id_token(active):
    """RFC 8725 §3.11: one kind of JWT must not be accepted where another is expected."""
    token = sign_jwt(claims=CLAIMS, algorithm="RS256", typ="at+jwt")
    assert verify_jwt(token, typ="JWT") is None


def test_an_id_token_at_userinfo_is_refused(code_flow, confidential_client):
    """RFC 9068 §4 / OIDC Core §5.3.1: userinfo takes an access token, never the ID token."""
    tokens = code_flow(confidential_client)["tokens"]
    response = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['id_token']}")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert verify_jwt(tokens["id_token"], typ="at+jwt") is None
    assert verify_jwt(tokens["id_token"], typ="JWT") is not None


def test_an_id_token_at_introspection_is_inactive(code_flow, confidential_client):
    """RFC 7662 §2.2: the ID token is not an access token of this server."""
    tokens = code_flow(confidential_client)["tokens"]
    response = form_post(
        HttpClient(), "/oauth/introspect", {"token": tokens["id_token"]}, auth=confidential_client.basic
    )
    assert response.json() == {"active": False}


# --- private keys in process memory ---------------------------------------------------------------


def test_a_revoked_key_leaves_process_memory(active):
    """Issue 8 item 13: a revoked key's private half is not kept by the process that revoked it."""
    old = active["RS256"]
    active_signing_key("RS256")
    assert old.kid in cached_private_key_ids()
    revoke_signing_key(kid=old.kid, now=timezone.now(), reason="test")
    assert old.kid not in cached_private_key_ids()
    assert active_signing_key("RS256").kid != old.kid


def test_a_key_revoked_by_another_process_is_never_served_from_the_cache(active):
    """Another node revoked the key (no signal reaches this process): the next signing reads the state,
    drops the revoked key and signs with the new one."""
    old = active["ES256"]
    active_signing_key("ES256")
    incoming = create_signing_key(algorithm="ES256", now=timezone.now())
    SigningKey.objects.filter(pk=old.pk).update(state=SigningKey.State.REVOKED)
    SigningKey.objects.filter(pk=incoming.pk).update(state=SigningKey.State.ACTIVE)
    assert active_signing_key("ES256").kid == incoming.kid
    assert old.kid not in cached_private_key_ids()


def test_retired_and_expired_keys_leave_process_memory(active, settings):
    """A retired key no longer signs, so its private half goes too; the JWKS request of a process
    that never signs with that algorithm again drops it as well."""
    old = active["EdDSA"]
    active_signing_key("EdDSA")
    now = timezone.now()
    SigningKey.objects.filter(pk=old.pk).update(activated_at=now - timedelta(days=60))
    request_rotation(algorithm="EdDSA", now=now)
    rotate_signing_keys(now=now + timedelta(seconds=settings.UAA_KEY_PREPUBLISH_SECONDS + 1))
    assert SigningKey.objects.get(pk=old.pk).state == SigningKey.State.RETIRED
    assert old.kid not in cached_private_key_ids()


def test_a_jwks_request_drops_private_keys_that_stopped_signing(client, active):
    old = active["RS256"]
    active_signing_key("RS256")
    SigningKey.objects.filter(pk=old.pk).update(state=SigningKey.State.EXPIRED)
    client.get("/.well-known/jwks.json")
    assert old.kid not in cached_private_key_ids()
