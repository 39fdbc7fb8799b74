"""RFC 7662 token introspection over the stored token records (checksums only, never whole tokens).

Who learns what (§2.1, §4: the server decides what to tell whom): an access token is described to the
client it was issued to, and to a client registered as serving one of its audiences (``serves``: the
"resources this client serves" of the caller); a refresh token only to its own client. Anything else,
and any token of a deactivated account (or one the caller's ``refused`` rule names), is exactly
``{"active": false}``. ``username`` (the e-mail address) is included only when the token was granted the
``email`` scope (OIDC Core §5.4).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import get_refresh_token_model

from tokens.checksum import sha256_hex
from tokens.formats import rfc9068
from tokens.signing import verify_jwt
from tokens.stored_tokens import load_access_token

INACTIVE: dict[str, Any] = {"active": False}
EMAIL_SCOPE = "email"  # OIDC Core §5.4: the scope that releases the e-mail address


def _audiences(claims: dict[str, Any]) -> set[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return {aud}
    return {value for value in aud if isinstance(value, str)} if isinstance(aud, list) else set()


def _user_is_active(record: Any) -> bool:
    return record.user is None or record.user.is_active


def _releases_email(scope: str) -> bool:
    return EMAIL_SCOPE in scope.split()


def _never(record: Any) -> bool:
    return False


def _access_token(
    token: str, caller: Any, serves: Collection[str], refused: Callable[[Any], bool] = _never
) -> dict[str, Any] | None:
    claims = verify_jwt(token, typ=rfc9068.TYP)
    if claims is None:
        return None
    record = load_access_token(token)  # with its client and user, in one plain statement
    if record is None or record.is_expired() or not _user_is_active(record) or refused(record):
        return None
    if record.application_id != caller.pk and not _audiences(claims) & set(serves):
        return None  # §4: neither the caller's own token nor one for a resource it serves
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
    if record.user is not None and _releases_email(record.scope):
        body["username"] = record.user.get_username()
    if "auth_time" in claims:
        body["auth_time"] = claims["auth_time"]
    return body


def _refresh_token(token: str, caller: Any, refused: Callable[[Any], bool] = _never) -> dict[str, Any] | None:
    record = (
        get_refresh_token_model()
        .objects.select_related("application", "user", "access_token")
        .filter(token_checksum=sha256_hex(token), revoked__isnull=True, application=caller)
        .first()
    )
    if record is None or record.access_token is None or not _user_is_active(record) or refused(record):
        return None
    expires = record.access_token.expires + timedelta(seconds=settings.UAA_REFRESH_TOKEN_LIFETIME)
    if expires <= timezone.now():
        return None
    body: dict[str, Any] = {
        "active": True,
        "token_type": "refresh_token",
        "scope": record.access_token.scope,
        "client_id": record.application.client_id,
        "sub": str(record.user.pk),
        "exp": int(expires.timestamp()),
        "iss": settings.UAA_ISSUER,
    }
    if _releases_email(record.access_token.scope):
        body["username"] = record.user.get_username()
    return body


def introspect(
    *,
    token: str,
    hint: str | None,
    caller: Any,
    serves: Collection[str] = (),
    refused: Callable[[Any], bool] = _never,
) -> dict[str, Any]:
    """RFC 7662 §2.2 for ``caller`` (the authenticated client), which serves the resources ``serves``.

    ``refused`` is the caller's further rule for a stored token record (the uaa layer passes the user's
    not-before time, accounts/revocation.py, which this layer cannot import): a refused token is inactive.
    """
    lookups = [
        lambda t: _access_token(t, caller, serves, refused),
        lambda t: _refresh_token(t, caller, refused),
    ]
    if hint == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        body = lookup(token)
        if body is not None:
            return body
    return INACTIVE
