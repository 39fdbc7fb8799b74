"""Access tokens are ES256 by default, ID tokens RS256 (issue 12 item 3); and whichever JOSE library signs and
verifies (tokens/signing.py), the RFC 8725 guarantees hold.

Attacker: on the network or a registered client. They hold UAA's public keys (the JWKS) and tokens issued to
them, can make tokens with keys of their own, and can send anything as a token. They must not get a token
accepted that a key UAA publishes right now did not sign, with that key's own algorithm: not by ``alg:
none``, not by an HMAC keyed with a public key (RFC 8725 §2.1, §3.1), not by a signature of one of UAA's
keys under another key's ``kid``, not by a key UAA never published or has revoked, not by a header
extension UAA does not implement (``crit``, RFC 7515 §4.1.11; ``b64``, RFC 7797), not in another
serialization (RFC 7519 §7.2); and no token, however malformed, may raise instead of being refused.

Every forged token here is made with ``cryptography`` alone, beside a genuine one made the same way that
verifies (:func:`test_the_forging_helpers_make_tokens_that_verify`): a refusal below is the attack's, not
a broken helper's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from http import HTTPStatus
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from django.test import Client as HttpClient
from django.utils import timezone
from jwcrypto import jwk as jc_jwk

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post, verify_with_jwks
from tests.tokens.forgery import forge_token, inject_signing_key
from tokens import keys
from tokens.keys import create_signing_key
from tokens.models import SigningKey
from tokens.rotation import revoke_signing_key
from tokens.signing import sign_jwt, verification_key, verify_jwt

CLAIMS = {"iss": "http://testserver", "sub": "1", "aud": "https://api.example.com", "jti": "j1", "exp": 2**31}
ALGORITHMS = ("RS256", "ES256", "EdDSA")
JWKS = "/.well-known/jwks.json"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode(value: object) -> str:
    return b64(json.dumps(value).encode())


Private = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def raw_signature(private: Private, signing_input: bytes) -> bytes:
    """The JWS signature of ``signing_input`` by ``private`` (RFC 7518 §3.3, §3.4; RFC 8037)."""
    if isinstance(private, rsa.RSAPrivateKey):
        return private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return private.sign(signing_input)


def compact(header: dict[str, Any], private: Private | None, payload: bytes | None = None) -> str:
    """A compact JWS of ``payload`` (the claims by default) with ``header``, signed by ``private``."""
    signing_input = f"{encode(header)}.{b64(payload if payload is not None else json.dumps(CLAIMS).encode())}"
    signature = raw_signature(private, signing_input.encode()) if private is not None else b""
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def active(db) -> dict[str, SigningKey]:
    now = timezone.now()
    return {
        algorithm: create_signing_key(algorithm=algorithm, now=now, state=SigningKey.State.ACTIVE)
        for algorithm in ALGORITHMS
    }


def private_of(key: SigningKey) -> Private:
    """The test's own view of a genuine private key (an attacker never has it)."""
    private = serialization.load_der_private_key(keys.unwrap_private_key(key), password=None)
    assert isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
    return private


def header_of(key: SigningKey, **extra: Any) -> dict[str, Any]:
    return {"alg": key.algorithm, "kid": key.kid, "typ": "at+jwt", **extra}


def genuine(key: SigningKey, **extra: Any) -> str:
    return compact(header_of(key, **extra), private_of(key))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_forging_helpers_make_tokens_that_verify(active, algorithm):
    """The control for every refusal below: the same helpers, with nothing wrong, make a token that verifies
    (and RS256, ES256, EdDSA signatures as RFC 7518 §3.3, §3.4 and RFC 8037 §3.1 define them)."""
    assert verify_jwt(genuine(active[algorithm]), typ="at+jwt") == CLAIMS


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_uaa_signs_what_every_library_verifies(active, algorithm):
    """Interoperability: UAA's tokens verify with PyJWT and with jwcrypto, against the published JWKS, by the
    key the kid names and that key's own algorithm; UAA's own verification reads them too."""
    token = sign_jwt(claims=CLAIMS, algorithm=algorithm, typ="at+jwt")
    jwks = HttpClient().get(JWKS).json()
    header, claims = verify_with_jwks(token, jwks)  # jwcrypto
    member = next(member for member in jwks["keys"] if member["kid"] == header["kid"])
    assert header == {"alg": algorithm, "kid": active[algorithm].kid, "typ": "at+jwt"} and claims == CLAIMS
    assert member["alg"] == algorithm
    assert (
        pyjwt.decode(token, pyjwt.PyJWK(member).key, algorithms=[algorithm], audience=CLAIMS["aud"]) == CLAIMS
    )
    assert verify_jwt(token, typ="at+jwt") == CLAIMS


# --- the algorithm comes from the stored key, never from the header ----------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("none", ["none", "None", "NONE", "", None])
def test_alg_none_is_refused(active, algorithm, none):
    """RFC 8725 §3.1, RFC 7518 §3.6: an unsecured JWS is never accepted, under any spelling, nor without an
    alg; not with an empty signature, nor with the genuine key's signature over the same input."""
    key = active[algorithm]
    header = header_of(key, alg=none) if none is not None else {"kid": key.kid, "typ": "at+jwt"}
    unsigned = compact(header, None)
    assert verify_jwt(unsigned, typ="at+jwt") is None
    assert verify_jwt(compact(header, private_of(key)), typ="at+jwt") is None
    assert verification_key(unsigned, typ="at+jwt") is None


def public_materials(key: SigningKey) -> dict[str, bytes]:
    """Everything of ``key``'s public half that a confused verifier might take as an HMAC secret."""
    public = private_of(key).public_key()
    formats = {
        "spki-pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "spki-der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(key.public_jwk).encode(),
        "jwk-json-compact": json.dumps(key.public_jwk, separators=(",", ":")).encode(),
        "kid": key.kid.encode(),
    }
    if isinstance(public, rsa.RSAPublicKey):
        formats["pkcs1-pem"] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        )
        formats["modulus"] = base64.urlsafe_b64decode(key.public_jwk["n"] + "==")
    else:
        formats["point"] = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return formats


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
@pytest.mark.parametrize("hs", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_the_public_key_is_refused(active, algorithm, hs):
    """RFC 8725 §2.1, §3.1: the classic confusion, an HMAC whose secret is the published public key in any
    encoding, under the key's kid."""
    key = active[algorithm]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hs]
    for name, secret in public_materials(key).items():
        signing_input = f"{encode(header_of(key, alg=hs))}.{encode(CLAIMS)}"
        mac = hmac.new(secret, signing_input.encode(), digest).digest()
        assert verify_jwt(f"{signing_input}.{b64(mac)}", typ="at+jwt") is None, name


@pytest.mark.parametrize(
    ("signer", "named"),
    [("ES256", "RS256"), ("RS256", "ES256"), ("EdDSA", "ES256"), ("ES256", "EdDSA"), ("RS256", "EdDSA")],
)
def test_a_signature_by_one_key_under_another_keys_kid_is_refused(active, signer, named):
    """RFC 8725 §3.1: a genuine signature by UAA's ``signer`` key, in a header naming the ``named`` key's
    kid: with the signer's alg (the key's algorithm is not the header's), and with the named key's alg (the
    signature is not that key's)."""
    private, kid = private_of(active[signer]), active[named].kid
    for alg in (signer, named):
        token = compact({"alg": alg, "kid": kid, "typ": "at+jwt"}, private)
        assert verify_jwt(token, typ="at+jwt") is None, alg


def signature_under(private: Private, signing_input: bytes, alg: str) -> bytes | None:
    """What the genuine ``private`` key signs under another algorithm's name: a signature that verifies
    mathematically under ``alg`` with that key, where the key type allows one at all."""
    hash_of = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
    if isinstance(private, rsa.RSAPrivateKey) and alg[:2] in {"RS", "PS"}:
        digest = hash_of[alg[2:]]
        pad = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            else padding.PSS(padding.MGF1(digest), digest.digest_size)
        )
        return private.sign(signing_input, pad, digest)
    if isinstance(private, ec.EllipticCurvePrivateKey) and alg in {"ES384", "ES512"}:
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hash_of[alg[2:]])))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if isinstance(private, ed25519.Ed25519PrivateKey) and alg == "Ed25519":
        return private.sign(signing_input)  # RFC 9864's fully specified name: the very same signature
    return None


@pytest.mark.parametrize("alg", ["PS256", "RS384", "RS512", "ES384", "ES512", "Ed25519"])
def test_the_genuine_key_under_another_algorithm_name_is_refused(active, alg):
    """RFC 7517 §4.4, RFC 8725 §3.1: each key verifies under its own algorithm's name alone, even a signature
    its genuine private key made under another algorithm the key type allows (PS256 and RS384 on the RSA
    key, ES384 on the P-256 key, the "Ed25519" name on the EdDSA key)."""
    signed = 0
    for key in active.values():
        signing_input = f"{encode(header_of(key, alg=alg))}.{encode(CLAIMS)}"
        signature = signature_under(private_of(key), signing_input.encode(), alg)
        if signature is not None:
            signed += 1
            assert verify_jwt(f"{signing_input}.{b64(signature)}", typ="at+jwt") is None, key.algorithm
    assert signed == 1  # one of the three keys could make it


def test_a_der_encoded_es256_signature_is_refused(active):
    """RFC 7518 §3.4: an ES256 signature is R || S, 64 octets; the DER form some libraries make is not one."""
    key = active["ES256"]
    signing_input = f"{encode(header_of(key))}.{encode(CLAIMS)}"
    der = private_of(key).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    assert verify_jwt(f"{signing_input}.{b64(der)}", typ="at+jwt") is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_changed_payload_or_header_is_refused(active, algorithm):
    key = active[algorithm]
    head, _, signature = genuine(key).split(".")
    forged_payload = encode({**CLAIMS, "sub": "admin"})
    assert verify_jwt(f"{head}.{forged_payload}.{signature}", typ="at+jwt") is None
    other_head = encode({**header_of(key), "x": 1})
    assert verify_jwt(f"{other_head}.{encode(CLAIMS)}.{signature}", typ="at+jwt") is None


# --- the key must be one UAA publishes right now -----------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_key_uaa_never_published_is_refused(active, algorithm):
    """An attacker's own key: under its own thumbprint, under UAA's kid, and with the key itself embedded in
    the header (RFC 7515 §4.1.3 ``jwk``, §4.1.2 ``jku``, §4.1.5 ``x5u``), which UAA never reads."""
    genuine_key = active[algorithm]
    own = {
        "RS256": lambda: rsa.generate_private_key(65537, 2048),
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    }
    attacker: Private = own.get(algorithm, ed25519.Ed25519PrivateKey.generate)()
    embedded = jc_jwk.JWK.from_pyca(attacker.public_key())
    attacker_kid = embedded.thumbprint()
    for header in (
        {"alg": algorithm, "kid": attacker_kid, "typ": "at+jwt"},
        header_of(genuine_key),
        {"alg": algorithm, "kid": attacker_kid, "typ": "at+jwt", "jwk": embedded.export_public(as_dict=True)},
        header_of(genuine_key, jwk=embedded.export_public(as_dict=True)),
        header_of(
            genuine_key, jku="https://attacker.example/jwks.json", x5u="https://attacker.example/c.pem"
        ),
    ):
        assert verify_jwt(compact(header, attacker), typ="at+jwt") is None, header


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_revoked_keys_tokens_are_refused(active, algorithm):
    """RFC 8725 §3.1 on a key that was UAA's: once revoked (docs/key-rotation.md), a token it signed before
    verifies no more, though its signature is still mathematically right."""
    key = active[algorithm]
    token = sign_jwt(claims=CLAIMS, algorithm=algorithm, typ="at+jwt")
    assert verify_jwt(token, typ="at+jwt") == CLAIMS
    revoke_signing_key(kid=key.kid, now=timezone.now(), reason="test")
    assert verify_jwt(token, typ="at+jwt") is None
    assert verification_key(token, typ="at+jwt") is None


@pytest.mark.parametrize("state", [SigningKey.State.EXPIRED, SigningKey.State.REVOKED])
def test_a_key_that_left_the_jwks_is_refused(active, state):
    key = active["ES256"]
    token = genuine(key)
    SigningKey.objects.filter(pk=key.pk).update(state=state)
    assert verify_jwt(token, typ="at+jwt") is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_key_row_written_without_the_kek_is_refused(active, algorithm):
    """A database-only attacker's row (tests/tokens/forgery.py): published state, the attacker's public key,
    but nothing UAA can unwrap: never trusted."""
    row, private = inject_signing_key(algorithm=algorithm)
    token = forge_token(private, kid=row.kid, alg=algorithm)
    assert verify_jwt(token, typ="at+jwt") is None


# --- extensions UAA does not implement ---------------------------------------------------------------


@pytest.mark.parametrize(
    "extension",
    [
        {"crit": ["exp"], "exp": 2**31},
        {"crit": ["x-uaa-policy"], "x-uaa-policy": "allow"},
        {"crit": ["b64"], "b64": True},
        {"crit": []},
        {"crit": "exp", "exp": 2**31},
        {"crit": None},
        {"crit": ["http://openid.net/specs/openid-connect-rpinitiated-1_0.html"]},
    ],
)
@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_a_critical_header_is_refused(active, algorithm, extension):
    """RFC 7515 §4.1.11: if any of the listed extension Header Parameters are not understood and supported
    by the recipient, then the JWS is invalid. UAA understands none, so any ``crit`` is refused, even a
    genuine signature's, and even a malformed or empty one."""
    assert verify_jwt(genuine(active[algorithm], **extension), typ="at+jwt") is None


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_an_unencoded_payload_is_refused(active, algorithm):
    """RFC 7797 §3, §5.2: ``b64: false`` changes what the signature covers. UAA never makes such a token and
    refuses one: attached, detached (RFC 7515 Appendix F), with ``crit`` as §6 requires or without."""
    key = active[algorithm]
    payload = json.dumps({"sub": "1", "jti": "j1"}).encode()
    for extra in ({"b64": False, "crit": ["b64"]}, {"b64": False}):
        head = encode(header_of(key, **extra))
        signature = b64(raw_signature(private_of(key), head.encode() + b"." + payload))
        assert verify_jwt(f"{head}.{payload.decode()}.{signature}", typ="at+jwt") is None, extra
        assert verify_jwt(f"{head}..{signature}", typ="at+jwt") is None, extra
        assert verification_key(f"{head}..{signature}", typ="at+jwt") is None, extra


# --- the compact serialization, and nothing else -----------------------------------------------------


@pytest.mark.parametrize("flattened", [True, False])
def test_a_json_serialized_jws_is_refused(active, flattened):
    """RFC 7519 §7.2: a JWT uses the JWS Compact Serialization; the JSON one, genuinely signed, is not one."""
    key = active["ES256"]
    protected = encode(header_of(key))
    payload = encode(CLAIMS)
    signature = b64(raw_signature(private_of(key), f"{protected}.{payload}".encode()))
    member = {"protected": protected, "signature": signature}
    document = {"payload": payload, **member} if flattened else {"payload": payload, "signatures": [member]}
    assert verify_jwt(json.dumps(document), typ="at+jwt") is None
    assert verify_jwt(compact(header_of(key), private_of(key)), typ="at+jwt") == CLAIMS  # the same, compact


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".",
        lambda t: "." + t,
        lambda t: t.replace(".", "..", 1),
        lambda t: t + "." + t.split(".")[2],
        lambda t: ".".join(t.split(".")[:2]),
        lambda t: t.rsplit(".", 1)[0] + ".",
        lambda t: ".".join([*t.split("."), "", ""]),  # five segments: the shape of a JWE
        lambda t: (
            t.split(".")[0] + "." + t.split(".")[1][:10] + "." + t.split(".")[1][10:] + "." + t.split(".")[2]
        ),
        lambda t: t.replace(".", " . "),
        lambda t: t + "\n",
    ],
    ids=[
        "trailing",
        "leading",
        "doubled",
        "extra-segment",
        "two-segments",
        "no-signature",
        "jwe",
        "split-payload",
        "spaces",
        "newline",
    ],
)
def test_anything_but_three_segments_of_a_genuine_token_is_refused(active, mangle):
    """RFC 7515 §7.1, RFC 7519 §7.2: exactly three base64url segments; an extra dot is not tolerated."""
    token = genuine(active["ES256"])
    assert verify_jwt(mangle(token), typ="at+jwt") is None


# --- bad input is refused, never raised ---------------------------------------------------------------

NESTED = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize(
    "token",
    [
        "",
        "..",
        "a.b.c",
        "!!!.###.$$$",
        f"{b64(NESTED.encode())}.{encode(CLAIMS)}.AAAA",
        f"{encode([1, 2])}.{encode(CLAIMS)}.AAAA",
        f"{encode('text')}.{encode(CLAIMS)}.AAAA",
        f"{encode(None)}.{encode(CLAIMS)}.AAAA",
        b64(bytes([0xFF, 0xFE, 0x00])) + f".{encode(CLAIMS)}.AAAA",
        "é.é.é",
        "\ud800.\ud800.\ud800",
        "\x00.\x00.\x00",
        "eyJhbGciOiJFUzI1NiJ9" * 10_000 + ".x.y",
    ],
    ids=range(13),
)
def test_garbage_is_refused_without_an_exception(db, token):
    assert verify_jwt(token, typ="at+jwt") is None
    assert verification_key(token, typ="at+jwt") is None


@pytest.mark.parametrize("value", [None, b"a.b.c", 3, ["a", "b", "c"], {"a": 1}])
def test_what_is_not_a_string_is_refused(db, value):
    assert verify_jwt(value, typ="at+jwt") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kid",
    ["\x00", "kid\x00", "\ud800", "a\udfffb", 7, None, ["kid"], {"kid": "x"}, "", "x" * 10_000],
    ids=[
        "nul",
        "inner-nul",
        "surrogate",
        "inner-surrogate",
        "int",
        "null",
        "list",
        "object",
        "empty",
        "long",
    ],
)
def test_a_kid_that_is_no_stored_key_is_refused(active, kid):
    """A kid that cannot be a key id, or that a database driver cannot even encode (NUL, a lone surrogate from
    a JSON ``\\ud800`` escape): no key, no database error, no exception (PostgreSQL refuses both)."""
    key = active["ES256"]
    header = json.dumps({"alg": "ES256", "kid": kid, "typ": "at+jwt"})  # \\ud800 stays an escape here
    signing_input = f"{b64(header.encode())}.{encode(CLAIMS)}"
    token = f"{signing_input}.{b64(raw_signature(private_of(key), signing_input.encode()))}"
    assert verify_jwt(token, typ="at+jwt") is None
    assert verification_key(token, typ="at+jwt") is None


@pytest.mark.parametrize(
    "payload",
    [
        NESTED.encode(),
        b"[]",
        b'"claims"',
        b"1",
        b"null",
        b"not json",
        b"\xff\xfe",
        '{"sub": "\ud800"}'.encode("utf-8", "surrogatepass"),
    ],
    ids=["nested", "array", "string", "number", "null", "not-json", "not-utf8", "utf8-encoded-surrogate"],
)
def test_a_genuinely_signed_payload_that_is_no_claims_set_is_refused(active, payload):
    """RFC 7519 §7.2 step 10: the payload must be a JSON object, in UTF-8 (RFC 8259 §8.1: not a surrogate
    encoded as if it were a character, which Python's json.loads would take from bytes); deep nesting must
    not raise (recursion)."""
    key = active["ES256"]
    assert verify_jwt(compact(header_of(key), private_of(key), payload), typ="at+jwt") is None


def test_a_lone_surrogate_in_the_payload_or_signature_segment_is_refused(active):
    """Past a valid header the token text still reaches the library: text it cannot encode is refused."""
    head, payload, signature = genuine(active["ES256"]).split(".")
    for token in (f"{head}.{payload}\ud800.{signature}", f"{head}.{payload}.{signature}\x00"):
        assert verify_jwt(token, typ="at+jwt") is None


# --- ES256 access tokens by default; ID tokens RS256 unless the client registered another ---------------


def access_token_header_and_member(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    jwks = HttpClient().get(JWKS).json()
    header, _ = verify_with_jwks(token, jwks)
    (member,) = [member for member in jwks["keys"] if member["kid"] == header["kid"]]
    return header, member


def client_credentials(registered: Any) -> str:
    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=registered.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()["access_token"]


def test_a_default_server_signs_access_tokens_with_es256_on_a_published_p256_key(settings, service_client):
    """Issue 12 item 3: UAA_ACCESS_TOKEN_ALG defaults to ES256; the kid names an EC P-256 key of the JWKS made
    for ES256 (RFC 7518 §3.4, RFC 7517 §4.4), and a resource server verifies with that key alone."""
    assert settings.UAA_ACCESS_TOKEN_ALG == "ES256"  # the default: nothing in the test settings sets it
    token = client_credentials(service_client)
    header, member = access_token_header_and_member(token)
    assert header == {"alg": "ES256", "kid": member["kid"], "typ": "at+jwt"}
    assert {k: member[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "use": "sig",
    }
    assert SigningKey.objects.active().for_algorithm("ES256").get().kid == header["kid"]
    claims = pyjwt.decode(
        token, pyjwt.PyJWK(member).key, algorithms=["ES256"], audience="https://api.example.com"
    )
    assert claims["client_id"] == service_client.client_id
    introspected = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=service_client.basic)
    assert introspected.json()["active"] is True


def code_flow_tokens(browser: HttpClient, registered: Any) -> dict[str, Any]:
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    params = authorize(browser, request)
    response = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


def test_id_tokens_stay_rs256_while_access_tokens_are_es256(browser, confidential_client):
    """OIDC Core §15.1: RS256 for ID tokens, which every relying party can verify; a client that registered
    nothing else (the default algorithm, django-oauth-toolkit's ``algorithm`` field) gets RS256."""
    assert confidential_client.client.algorithm == "RS256"
    tokens = code_flow_tokens(browser, confidential_client)
    id_header, id_member = access_token_header_and_member(tokens["id_token"])
    assert id_header["alg"] == "RS256" and id_member["kty"] == "RSA" and id_member["alg"] == "RS256"
    access_header, access_member = access_token_header_and_member(tokens["access_token"])
    assert access_header["alg"] == "ES256" and access_member["crv"] == "P-256"
    userinfo = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == HTTPStatus.OK


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_a_client_that_registered_another_id_token_algorithm_gets_it(browser, client_factory, algorithm):
    """OIDC Registration §2 id_token_signed_response_alg (the client's ``algorithm``): the ID token follows
    it; the access token still follows UAA_ACCESS_TOKEN_ALG."""
    registered = client_factory(name=f"{algorithm} RP", algorithm=algorithm)
    tokens = code_flow_tokens(browser, registered)
    assert access_token_header_and_member(tokens["id_token"])[0]["alg"] == algorithm
    assert access_token_header_and_member(tokens["access_token"])[0]["alg"] == "ES256"


def test_rs256_access_tokens_still_work_when_configured(
    settings, browser, confidential_client, service_client
):
    """UAA_ACCESS_TOKEN_ALG=RS256 (docs/operations.md): access tokens of every grant are RS256 again, verify,
    introspect and reach userinfo."""
    settings.UAA_ACCESS_TOKEN_ALG = "RS256"
    token = client_credentials(service_client)
    header, member = access_token_header_and_member(token)
    assert header["alg"] == "RS256" and member["kty"] == "RSA"
    introspected = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=service_client.basic)
    assert introspected.json()["active"] is True
    tokens = code_flow_tokens(browser, confidential_client)
    assert access_token_header_and_member(tokens["access_token"])[0]["alg"] == "RS256"
    userinfo = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == HTTPStatus.OK


def test_readyz_needs_the_es256_key_by_default(client, db):
    """/readyz (uaa/health.py) asks for an active key of UAA_ACCESS_TOKEN_ALG: ES256 now; RS256 alone is not
    enough any more, and is again when configured."""
    create_signing_key(algorithm="RS256", now=timezone.now(), state=SigningKey.State.ACTIVE)
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["checks"]["signing_keys"] == {
        "ok": False,
        "critical": True,
        "detail": "no active ES256 key (run manage.py bootstrap)",
    }
