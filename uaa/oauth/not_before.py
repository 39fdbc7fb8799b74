"""The user's not-before time at the OAuth endpoints: when each grant was made, for accounts/revocation.py.

The rule is accounts.revocation's; this module only says which time each grant carries:

- a new authorization code: the ``auth_time`` of the SSO session issuing it;
- a code being redeemed: the ``auth_time`` it was issued with (else when it was issued);
- a refresh token: its family's grant, the ``auth_time`` of the code that began the family (else the
  family's first stored token, else the token itself), so a successor rotated after the revocation by a
  request already in flight is refused like its predecessor;
- an access token: when it was stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Min
from django.utils.dateparse import parse_datetime
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from accounts import revocation
from tokens.stored_tokens import LOADED_WITH_USER
from uaa.oauth.models import RedeemedCode


def session_code_refused(*, user: Any, context: dict[str, Any] | None) -> bool:
    """A code about to be issued from a session whose ``auth_time`` (``context``) predates a revocation."""
    value = (context or {}).get("auth_time")
    auth_time = parse_datetime(value) if isinstance(value, str) else value
    return revocation.code_refused(user_id=user.pk, auth_time=auth_time)


def redeemed_code_refused(*, grant: Any) -> bool:
    """A code being exchanged (inside the token request's transaction) that a revoked session issued."""
    return revocation.code_refused(user_id=grant.user_id, auth_time=grant.auth_time or grant.created)


_UNREAD: Any = object()  # the family's redemption was not read by the caller


def _family_granted_at(token: Any, redemption: Any = _UNREAD) -> datetime | None:
    if token.token_family is None:
        return token.created
    if redemption is _UNREAD:
        redemption = RedeemedCode.objects.filter(refresh_token_family=token.token_family).first()
    if redemption is not None and redemption.auth_time is not None:
        return redemption.auth_time
    first = (
        get_refresh_token_model()
        .objects.filter(token_family=token.token_family)
        .aggregate(first=Min("created"))["first"]
    )
    return first or token.created


def refresh_refused(*, token: Any, lock: bool, redemption: Any = _UNREAD) -> bool:
    """A refresh token whose family was granted before the user's not-before time. ``redemption``: the
    family's ``RedeemedCode`` (or ``None``) if the caller has read it in this transaction."""
    if token.user_id is None:
        return False
    granted_at = _family_granted_at(token, redemption)
    return revocation.grant_refused(user_id=token.user_id, granted_at=granted_at, lock=lock)


def access_token_refused(*, token: Any) -> bool:
    """An access token stored before the user's not-before time (client-credentials tokens have no user).

    A token loaded by tokens.stored_tokens came with its user's row in the same statement, read now: its
    ``not_before`` is the committed one, and is not read a second time."""
    if token.user_id is None:
        return False
    if getattr(token, LOADED_WITH_USER, False) and token.user is not None:
        return revocation.of(token.user).refuses_grant(token.created)
    return revocation.grant_refused(user_id=token.user_id, granted_at=token.created, lock=False)


def token_refused(record: Any) -> bool:
    """For introspection (tokens/introspection.py, which cannot import accounts): either kind of record."""
    if isinstance(record, get_access_token_model()):
        return access_token_refused(token=record)
    return refresh_refused(token=record, lock=False)
