"""Refresh tokens: one rotation per token, even when several requests present it at once.

RFC 9700 §4.14.2: with refresh token rotation, a refresh token is used once; presenting it again is
reuse, and the server revokes the family (``REFRESH_TOKEN_REUSE_PROTECTION``, no grace period). RFC 6749
§5.2: the reused token is ``invalid_grant``. Refresh tokens are kept only as SHA-256 checksums.
"""

from __future__ import annotations

from django.db import transaction
from oauth2_provider.models import get_refresh_token_model

from tokens.checksum import sha256_hex


def lock_for_rotation(*, refresh_token: str) -> None:
    """Lock the refresh token's row(s) for the rest of the token request's transaction (``TokenView``).

    Called before the token is checked: concurrent presentations of one refresh token queue here, the
    first rotates it, and each of the others then finds it rotated (a reuse) instead of checking it
    while it is still live and minting a second successor, or answering with the first one's tokens.
    SQLite ignores the lock; its ``BEGIN IMMEDIATE`` already serializes the whole transaction.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_for_rotation needs the token request's transaction")
    checksum = sha256_hex(refresh_token)
    rows = get_refresh_token_model().objects.select_for_update().filter(token_checksum=checksum)
    list(rows.values_list("pk", flat=True))
