"""RFC 7662 token introspection over the stored token records (checksums only, never whole tokens)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from tokens.formats import verify_jwt

INACTIVE: dict[str, Any] = {"active": False}


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _access_token(token: str) -> dict[str, Any] | None:
    claims = verify_jwt(token)
    if claims is None:
        return None
    record = (
        get_access_token_model()
        .objects.select_related("application", "user")
        .filter(token_checksum=_checksum(token))
        .first()
    )
    if record is None or record.is_expired():
        return None
    body: dict[str, Any] = {
        "active": True,
        "token_type": "Bearer",
        "scope": record.scope,
        "client_id": record.application.client_id if record.application else claims.get("client_id"),
        "exp": claims.get("exp"),
        "iat": claims.get("iat"),
        "sub": claims.get("sub"),
        "aud": claims.get("aud"),
        "iss": claims.get("iss"),
        "jti": claims.get("jti"),
    }
    if record.user is not None:
        body["username"] = record.user.get_username()
    if "auth_time" in claims:
        body["auth_time"] = claims["auth_time"]
    return body


def _refresh_token(token: str, caller: Any) -> dict[str, Any] | None:
    record = (
        get_refresh_token_model()
        .objects.select_related("application", "user", "access_token")
        .filter(token_checksum=_checksum(token), revoked__isnull=True, application=caller)
        .first()
    )
    if record is None or record.access_token is None:
        return None
    expires = record.access_token.expires + timedelta(seconds=settings.UAA_REFRESH_TOKEN_LIFETIME)
    if expires <= timezone.now():
        return None
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": record.access_token.scope,
        "client_id": record.application.client_id,
        "sub": str(record.user.pk),
        "username": record.user.get_username(),
        "exp": int(expires.timestamp()),
        "iss": settings.UAA_ISSUER,
    }


def introspect(*, token: str, hint: str | None, caller: Any) -> dict[str, Any]:
    """RFC 7662 §2.2. Refresh tokens are only described to the client they were issued to."""
    lookups = [_access_token, lambda t: _refresh_token(t, caller)]
    if hint == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        body = lookup(token)
        if body is not None:
            return body
    return INACTIVE
