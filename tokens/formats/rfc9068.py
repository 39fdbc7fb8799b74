"""RFC 9068 JSON Web Token profile for OAuth 2.0 access tokens.

django-oauth-toolkit calls :func:`generate_access_token` (its ``ACCESS_TOKEN_GENERATOR`` hook) for
every grant. The JWT is returned to the client; the server keeps only its SHA-256 checksum, so
introspection and revocation still work on it.
"""

from __future__ import annotations

import time
import uuid
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


def access_token_claims(request: OAuthlibRequest, *, now: int) -> dict[str, Any]:
    """RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti, scope, and auth_time where a user signed in."""
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
    auth_time = getattr(request, "uaa_auth_time", None)
    if user is not None and auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
        if getattr(request, "uaa_amr", None):
            claims["amr"] = list(request.uaa_amr)
        if getattr(request, "uaa_acr", None):
            claims["acr"] = request.uaa_acr
    return claims


def generate_access_token(request: OAuthlibRequest, refresh_token: bool = False) -> str:
    """oauthlib token generator: a signed RFC 9068 access token for ``request``.

    ``request.uaa_access_token_exp`` tells the validator when the stored record must expire: at ``exp``.
    """
    claims = access_token_claims(request, now=int(time.time()))
    request.uaa_access_token_exp = claims["exp"]
    return sign_jwt(claims=claims, algorithm=settings.UAA_ACCESS_TOKEN_ALG, typ=TYP)
