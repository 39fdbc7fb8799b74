"""OIDC Core §5.3 userinfo, a protected resource reached with RFC 6750 bearer tokens."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from freezegun import freeze_time
from jwcrypto import jwk, jwt

from tests.uaa.endpoints import revoke, unverified_claims, userinfo, verified


@pytest.fixture
def tokens(code_flow, confidential_client):
    return code_flow(confidential_client)["tokens"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload), signature


def _assert_invalid_token(response):
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid_token"
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge
    assert b"email" not in response.content


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_answers_get_and_post_with_a_bearer_header(tokens, user, method):
    """OIDC Core §5.3.1: the client sends the request using either HTTP GET or HTTP POST."""
    response = userinfo(tokens["access_token"], method=method)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["sub"] == str(user.pk)


def test_userinfo_sub_is_the_id_token_sub(tokens):
    """OIDC Core §5.3.2: the sub in the UserInfo response MUST exactly match the sub in the ID token."""
    assert userinfo(tokens["access_token"]).json()["sub"] == verified(tokens["id_token"])[1]["sub"]


def test_userinfo_response_is_not_cached(tokens):
    """RFC 6749 §5.1 applies to personal data too: no-store on the userinfo response."""
    assert userinfo(tokens["access_token"])["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("scope", "claims"),
    [
        ("openid", {"sub"}),
        ("openid profile", {"sub", "name", "given_name", "family_name", "updated_at"}),
        ("openid email", {"sub", "email", "email_verified"}),
        (
            "openid profile email",
            {"sub", "name", "given_name", "family_name", "updated_at", "email", "email_verified"},
        ),
    ],
)
def test_userinfo_releases_the_claims_of_the_granted_scopes_only(
    code_flow, confidential_client, user, scope, claims
):
    """OIDC Core §5.4: profile releases the name claims; email releases email and email_verified."""
    access_token = code_flow(confidential_client, scope=scope)["tokens"]["access_token"]
    body = userinfo(access_token).json()
    assert set(body) == claims
    if "email" in claims:
        assert body["email"] == user.email
        assert body["email_verified"] is True
    if "name" in claims:
        assert body["given_name"] == "Ada"
        assert body["family_name"] == "Lovelace"
        assert body["name"] == "Ada Lovelace"


def test_token_without_openid_scope_gets_no_claims(code_flow, confidential_client):
    """OIDC Core §5.3: userinfo needs an access token obtained through an OpenID Connect request.

    RFC 6750 §3.1 suggests 403 insufficient_scope; oauthlib's userinfo endpoint answers 401 invalid_token.
    """
    access_token = code_flow(confidential_client, scope="profile")["tokens"]["access_token"]
    response = userinfo(access_token)
    assert response.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "sub" not in response.json()


def test_no_token_is_401_with_a_bare_bearer_challenge(db):
    """RFC 6750 §3.1: with no authentication information the error code SHOULD NOT be included."""
    response = HttpClient().get("/oauth/userinfo")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_access_token_is_401_invalid_token(tokens):
    """RFC 6750 §3.1: invalid_token when the access token is expired."""
    exp = unverified_claims(tokens["access_token"])["exp"]
    with freeze_time(datetime.fromtimestamp(exp, UTC) + timedelta(seconds=1)):
        _assert_invalid_token(userinfo(tokens["access_token"]))


def test_access_token_is_valid_until_just_before_exp(tokens):
    """RFC 7519 §4.1.4: the token is accepted before its exp."""
    exp = unverified_claims(tokens["access_token"])["exp"]
    with freeze_time(datetime.fromtimestamp(exp, UTC) - timedelta(seconds=5)):
        assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK


@pytest.mark.parametrize("claim", ["sub", "scope", "exp"])
def test_tampered_payload_is_401_invalid_token(tokens, claim):
    """RFC 6750 §3.1 and RFC 7515 §5.2: a token whose signature does not verify is invalid_token."""
    header, _payload, signature = tokens["access_token"].split(".")
    claims = unverified_claims(tokens["access_token"])
    claims[claim] = {"sub": "someone-else", "scope": "openid profile email admin", "exp": 4102444800}[claim]
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    _assert_invalid_token(userinfo(forged))


def test_flipped_signature_byte_is_401_invalid_token(tokens):
    """RFC 7515 §5.2: validation fails if the signature does not verify."""
    header, payload, signature = tokens["access_token"].split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0x01
    _assert_invalid_token(userinfo(".".join([header, payload, _b64(bytes(raw))])))


def test_token_re_signed_with_a_key_we_did_not_issue_is_401(tokens):
    """RFC 7515 §5.2 and RFC 9068 §4: only keys in our JWKS are trusted, whatever kid a token names."""
    header, claims, _ = _segments(tokens["access_token"])
    # a key of the kind the header's algorithm names (UAA_ACCESS_TOKEN_ALG: ES256 by default), not ours
    kinds = {"RS256": {"kty": "RSA", "size": 2048}, "ES256": {"kty": "EC", "crv": "P-256"}}
    attacker_key = jwk.JWK.generate(**kinds.get(header["alg"], {"kty": "OKP", "crv": "Ed25519"}))
    forged = jwt.JWT(header=header, claims=claims)
    forged.make_signed_token(attacker_key)
    _assert_invalid_token(userinfo(forged.serialize()))


def test_unsigned_token_is_401(tokens):
    """RFC 8725 §3.1 and RFC 9068 §4: alg "none" is never accepted."""
    header, claims, _ = _segments(tokens["access_token"])
    unsigned = f"{_b64(json.dumps({**header, 'alg': 'none'}).encode())}.{_b64(json.dumps(claims).encode())}."
    _assert_invalid_token(userinfo(unsigned))


def test_hmac_signed_with_the_public_key_is_401(tokens):
    """RFC 8725 §2.1: no algorithm confusion: an HS256 token keyed with our public RSA key is refused."""
    header, claims, _ = _segments(tokens["access_token"])
    public = [
        key
        for key in HttpClient().get("/.well-known/jwks.json").json()["keys"]
        if key["kid"] == header["kid"]
    ]
    secret = jwk.JWK(kty="oct", k=_b64(json.dumps(public[0], sort_keys=True).encode()))
    forged = jwt.JWT(header={**header, "alg": "HS256"}, claims=claims)
    forged.make_signed_token(secret)
    _assert_invalid_token(userinfo(forged.serialize()))


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "x" * 5000])
def test_garbage_bearer_token_is_401(db, garbage):
    """RFC 6750 §3.1: invalid_token when the access token is malformed; never a server error."""
    _assert_invalid_token(userinfo(garbage))


def test_id_token_is_not_an_access_token(tokens):
    """OIDC Core §5.3.1 and RFC 9068 §2.1: only an access token (typ at+jwt) opens userinfo."""
    assert userinfo(tokens["id_token"]).status_code == HTTPStatus.UNAUTHORIZED


def test_refresh_token_is_not_an_access_token(tokens):
    """RFC 6749 §1.5: refresh tokens are never sent to resource servers."""
    _assert_invalid_token(userinfo(tokens["refresh_token"]))


def test_access_token_in_the_query_string_is_refused(tokens):
    """RFC 9700 §4.3.2 and RFC 6750 §5.3: access tokens MUST NOT be passed in page URLs."""
    response = HttpClient().get("/oauth/userinfo", {"access_token": tokens["access_token"]})
    assert response.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.BAD_REQUEST)
    assert b"sub" not in response.content


def test_access_token_in_the_query_string_is_refused_even_alongside_a_header(tokens):
    """RFC 6750 §2: clients MUST NOT use more than one method to transmit the token in each request."""
    response = HttpClient().get(
        "/oauth/userinfo",
        {"access_token": tokens["access_token"]},
        HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}",
    )
    assert response.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.BAD_REQUEST)
    assert b"email" not in response.content


def test_revoked_access_token_is_401(confidential_client, tokens):
    """RFC 7009 §2.1: a revoked token is invalid at once."""
    assert revoke(confidential_client, tokens["access_token"]).status_code == HTTPStatus.OK
    _assert_invalid_token(userinfo(tokens["access_token"]))


def test_access_token_of_a_deactivated_user_is_401(tokens, user):
    """OIDC Core §5.3: userinfo describes an active end-user; a deactivated account's token stops working."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    _assert_invalid_token(userinfo(tokens["access_token"]))


@pytest.mark.parametrize("scheme", ["Basic", "bearer", "Token"])
def test_other_authorization_schemes_are_refused(tokens, scheme):
    """RFC 6750 §2.1: the credentials are sent with the "Bearer" scheme."""
    response = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"{scheme} {tokens['access_token']}")
    if scheme.lower() == "bearer":
        assert response.status_code == HTTPStatus.OK  # RFC 7235 §2.1: the scheme is case-insensitive
    else:
        assert response.status_code == HTTPStatus.UNAUTHORIZED
