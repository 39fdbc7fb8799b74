"""Token formats: RFC 9068 JWT access tokens and OIDC Core §2 ID tokens, signed by tokens.keys."""

from __future__ import annotations

import json
from typing import Any

from jwcrypto import jws, jwt
from jwcrypto.common import JWException

from tokens.keys import active_signing_key, published_public_key


def sign_jwt(*, claims: dict[str, Any], algorithm: str, typ: str) -> str:
    """Sign ``claims`` with the active key for ``algorithm``; the header carries ``kid`` and ``typ``."""
    key = active_signing_key(algorithm)
    token = jwt.JWT(
        header={"alg": algorithm, "kid": key.kid, "typ": typ}, claims=json.dumps(claims, default=str)
    )
    token.make_signed_token(key.jwk)
    return token.serialize()


def verify_jwt(token: str) -> dict[str, Any] | None:
    """Claims of ``token`` if it carries a valid signature by a published key; ``None`` otherwise.

    Expiry is not checked here: callers hold the token record and check it there.
    """
    try:
        parsed = jws.JWS()
        parsed.deserialize(token)
        header = parsed.jose_header
        kid = header.get("kid") if isinstance(header, dict) else None
        if not isinstance(kid, str):
            return None
        key = published_public_key(kid)
        if key is None:
            return None
        parsed.verify(key, alg=header.get("alg"))
        claims = json.loads(parsed.payload)
    except (JWException, ValueError, TypeError, KeyError):
        return None
    return claims if isinstance(claims, dict) else None
