"""Refresh tokens: one rotation per token, even when several requests present it at once.

RFC 9700 §4.14.2: with refresh token rotation, a refresh token is used once; presenting it again is
reuse, and the server revokes the family (``REFRESH_TOKEN_REUSE_PROTECTION``, no grace period). RFC 6749
§5.2: the reused token is ``invalid_grant``. Refresh tokens are kept only as SHA-256 checksums.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model, set_token_value
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthlibRequest

from tokens.checksum import sha256_hex


def locked_for_rotation(*, refresh_token: str, client: Any) -> Any | None:
    """The refresh token ``refresh_token`` names, locked for the rest of the token request's transaction,
    read with its access token and its user in the same statement; ``client`` (the authenticated one) is
    set as its application when it is that token's, so nothing reads the client again. ``None`` if none.

    Called before the token is checked: concurrent presentations of one refresh token queue here, the
    first rotates it, and each of the others then finds it rotated (a reuse) instead of checking it while
    it is still live and minting a second successor, or answering with the first one's tokens. SQLite
    ignores the lock; its ``BEGIN IMMEDIATE`` already serializes the whole transaction.

    What django-oauth-toolkit's ``validate_refresh_token`` read in four statements after a locking one
    (the token with its access token, ``rt.user``, ``rt.application``): every row with the checksum is
    locked (uniqueness is ``(token_checksum, revoked)``), and the one returned is DOT's choice: the live
    row, else the most recently revoked.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked_for_rotation needs the token request's transaction")
    rows = list(
        get_refresh_token_model()
        .objects.select_for_update(of=("self",))
        .select_related("access_token", "user")
        .filter(token_checksum=sha256_hex(refresh_token))
        .order_by(F("revoked").desc(nulls_first=True))
    )
    if not rows:
        return None
    token = rows[0]
    if client is not None and token.application_id == client.pk:
        get_refresh_token_model()._meta.get_field("application").set_cached_value(token, client)
    return token


def rotates(*, request: OAuthlibRequest, token: dict[str, Any]) -> bool:
    """Whether saving ``token`` is a rotation of the live refresh token this request presented (the
    refresh grant, with ``ROTATE_REFRESH_TOKEN``): what :func:`rotate` does."""
    previous = getattr(request, "refresh_token_instance", None)
    return (
        request.grant_type == "refresh_token"
        and bool(token.get("refresh_token"))
        and bool(oauth2_settings.ROTATE_REFRESH_TOKEN)
        and isinstance(previous, get_refresh_token_model())
        and previous.revoked is None
        and previous.access_token_id is not None
    )


def rotate(
    *, request: OAuthlibRequest, token: dict[str, Any], expires: datetime, validator: Any
) -> tuple[Any, Any]:
    """RFC 6749 §6, RFC 9700 §4.14.2: the presented refresh token is revoked, its access token replaced,
    a new refresh token of the same family issued; django-oauth-toolkit's ``_save_bearer_token`` does the
    same with eleven statements (the refresh token locked and read again, a savepoint, the old access
    token read, detached, deleted, a new one inserted). Here: two UPDATEs and one INSERT.

    * The refresh token was locked and read by :func:`locked_for_rotation`, in this transaction,
      so it is still live and nobody else rotates it meanwhile (the concurrency guarantee is that lock).
    * The old access token's row becomes the new access token (new checksum, expiry, scope, resource,
      ``created``, ``source_refresh_token`` = the presented one): the old token is gone from the table
      exactly as if deleted (nothing finds its checksum), and no row is deleted and inserted again.
    * The presented refresh token is marked revoked and detached (``access_token`` NULL), as
      ``RefreshToken.revoke()`` leaves it: a later presentation is reuse, and revokes the family.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("rotate needs the token request's transaction (and locked_for_rotation's lock)")
    previous = request.refresh_token_instance
    refresh_tokens = get_refresh_token_model().objects
    now = timezone.now()
    detached = refresh_tokens.filter(pk=previous.pk, revoked__isnull=True).update(
        revoked=now, access_token=None, updated=now
    )
    if detached != 1:  # cannot happen under the lock; refuse rather than mint a second successor
        raise RuntimeError("the refresh token changed under its lock")
    access_token = get_access_token_model()(
        pk=previous.access_token_id,
        user=request.user,
        scope=token["scope"],
        expires=expires,
        id_token=None,
        application=request.client,
        source_refresh_token=previous,
        resource=getattr(request, "resource", []),  # RFC 8707
        created=now,
    )
    set_token_value(access_token, token["access_token"])
    try:
        access_token.save(force_update=True)  # one UPDATE of the previous access token's row
    except DatabaseError:  # Django's "did not affect any rows": it was revoked (deleted) meanwhile
        access_token.pk = None
        access_token._state.adding = True
        access_token.save(force_insert=True)
    request.refresh_token_instance = None  # revoked, as django-oauth-toolkit leaves it
    refresh_token = validator._create_refresh_token(request, token["refresh_token"], access_token, previous)
    return access_token, refresh_token
