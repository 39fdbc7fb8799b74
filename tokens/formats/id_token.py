"""OpenID Connect Core 1.0 §2: the ID token, signed by the active key of the client's registered algorithm.

oauthlib and django-oauth-toolkit give the claims of the request (``sub``, ``aud``, ``iat``, ``nonce``,
``at_hash``, ``c_hash``: OIDC Core §2, §3.1.3.6); :func:`id_token_claims` adds what only UAA knows: the
issuer, the lifetime, the sign-in's ``auth_time``, ``amr`` and ``acr``, the session's ``sid`` (OIDC
Front-Channel Logout §3) and a ``jti``. :func:`sign_id_token` signs them; tokens/signing.py verifies
them (``verify_jwt(token, typ=TYP)``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from tokens.signing import sign_jwt

TYP = "JWT"  # what UAA's ID tokens carry (OIDC Core §2 names none; RFC 7519 §5.1 suggests it)


def id_token_claims(
    claims: dict[str, Any],
    *,
    now: datetime,
    auth_time: datetime | None,
    amr: Sequence[str] | None,
    acr: str | None,
    sid: str | None,
) -> tuple[dict[str, Any], datetime]:
    """``claims`` with ``iss``, ``exp``, ``auth_time`` (the sign-in's, else ``now``), ``jti`` and, where the
    sign-in has them, ``amr``, ``acr`` and ``sid``; and when the token expires (``UAA_ID_TOKEN_LIFETIME``)."""
    expires = now + timedelta(seconds=settings.UAA_ID_TOKEN_LIFETIME)
    claims.update(
        iss=settings.UAA_ISSUER,
        exp=int(expires.timestamp()),
        auth_time=int((auth_time or now).timestamp()),
        jti=str(uuid.uuid4()),
    )
    if amr:
        claims["amr"] = list(amr)
    if acr:
        claims["acr"] = acr
    if sid:
        claims["sid"] = sid
    return claims, expires


def sign_id_token(*, claims: dict[str, Any], algorithm: str) -> str:
    """The signed ID token, made inside the transaction that stores its record (tokens.signing.sign_jwt)."""
    return sign_jwt(claims=claims, algorithm=algorithm, typ=TYP)
