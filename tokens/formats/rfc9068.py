"""RFC 9068 JSON Web Token profile for OAuth 2.0 access tokens.

:func:`access_token_claims` and :func:`sign_access_token` make the JWT that django-oauth-toolkit's
``ACCESS_TOKEN_GENERATOR`` (uaa/oauth/access_tokens.py) returns for every grant. The JWT is returned to the
client; the server keeps only its SHA-256 checksum, so introspection and revocation still work on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from oauthlib.common import Request as OAuthlibRequest

from tokens.signing import sign_jwt

TYP = "at+jwt"  # RFC 9068 §2.1


def audiences_for(request: OAuthlibRequest) -> list[str]:
    """RFC 8707 resource indicators if the request named any, else the client's default audience."""
    resource = getattr(request, "resource", None)
    if isinstance(resource, str):
        resource = [resource] if resource.strip() else []
    if resource:
        return list(resource)
    client = request.client
    return client.audiences or [settings.UAA_ISSUER]


def access_token_claims(
    request: OAuthlibRequest, *, now: int, auth_time: datetime | None, amr: Sequence[str], acr: str
) -> dict[str, Any]:
    """RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti, scope; where a user signed in, the sign-in's
    auth_time, and its amr and acr where it has them (§2.2.1)."""
    client = request.client
    user = getattr(request, "user", None)
    audiences = audiences_for(request)
    claims: dict[str, Any] = {
        "iss": settings.UAA_ISSUER,
        "sub": str(user.pk) if user is not None else client.client_id,
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + settings.UAA_ACCESS_TOKEN_LIFETIME,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(request.scopes or []),
    }
    if user is not None and auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
        if amr:
            claims["amr"] = list(amr)
        if acr:
            claims["acr"] = acr
    return claims


def sign_access_token(*, claims: dict[str, Any]) -> str:
    """The signed access token, with the active key for ``UAA_ACCESS_TOKEN_ALG`` (tokens.signing.sign_jwt)."""
    return sign_jwt(claims=claims, algorithm=settings.UAA_ACCESS_TOKEN_ALG, typ=TYP)
