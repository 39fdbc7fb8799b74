"""What a database-only attacker writes: key rows of their own, copied blobs, and tokens they sign.

The attacker can read and write every table but does not know ``UAA_KEK``.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.conf import settings
from django.utils import timezone
from jwcrypto import jwk, jwt
from oauth2_provider.models import get_access_token_model

from tokens.envelope import configured_keks
from tokens.models import SigningKey

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def attacker_private_jwk(algorithm: str = "RS256") -> jwk.JWK:
    if algorithm == "RS256":
        return jwk.JWK.from_pyca(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if algorithm == "ES256":
        return jwk.JWK.from_pyca(ec.generate_private_key(ec.SECP256R1()))
    return jwk.JWK.from_pyca(ed25519.Ed25519PrivateKey.generate())


def public_members(private: jwk.JWK, algorithm: str) -> dict[str, Any]:
    kid = private.thumbprint()
    return {**private.export_public(as_dict=True), "kid": kid, "alg": algorithm, "use": "sig"}


def inject_signing_key(
    *, algorithm: str = "RS256", state: str = SigningKey.State.RETIRED
) -> tuple[SigningKey, jwk.JWK]:
    """A row with the attacker's public key and random bytes where the wrapped private key belongs.

    ``retired`` by default: published like ``next`` and ``active``, and free of the one-per-algorithm
    constraints, so the genuine keys can stay as they are.
    """
    private = attacker_private_jwk(algorithm)
    public = public_members(private, algorithm)
    row = SigningKey.objects.create(
        kid=public["kid"],
        algorithm=algorithm,
        state=state,
        public_jwk=public,
        wrapped_private_key=os.urandom(1232),
        wrapped_data_key=os.urandom(60),
        kek_id=configured_keks()[0].kek_id,
        created_at=T0,
        retired_at=timezone.now() if state == SigningKey.State.RETIRED else None,
    )
    return row, private


def forge_token(
    private: jwk.JWK,
    *,
    kid: str,
    alg: str = "RS256",
    typ: str = "at+jwt",
    **claims: Any,
) -> str:
    now = int(timezone.now().timestamp())
    body = {
        "iss": settings.UAA_ISSUER,
        "sub": "attacker",
        "aud": "https://api.example.com",
        "client_id": "attacker",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scope": "openid email",
        **claims,
    }
    token = jwt.JWT(header={"alg": alg, "kid": kid, "typ": typ}, claims=json.dumps(body))
    token.make_signed_token(private)
    return token.serialize()


def store_access_token(token: str, *, application: Any, user: Any = None, scope: str = "openid email") -> Any:
    """The token's record, as django-oauth-toolkit would have stored it (it keeps the checksum)."""
    return get_access_token_model().objects.create(
        token=token,
        application=application,
        user=user,
        scope=scope,
        expires=timezone.now() + timedelta(minutes=10),
    )
