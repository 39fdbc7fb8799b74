"""Keycloak's "not before" revocation policy, per user: the one rule for grants made before a revocation.

"Sign out everywhere" with "Also sign out of applications", a password change, an admin's reset of the
second factors and deactivation set the user's ``not_before`` to now. From then on:

- an SSO session whose ``auth_time`` is earlier ends at its next request (accounts/sessions.py);
- an authorization code issued from such a session is neither issued nor redeemed;
- a refresh token whose family was granted earlier (the ``auth_time`` of the sign-in the family's code
  carried, else the family's first token) is ``invalid_grant`` (RFC 6749 §5.2);
- an access token stored earlier is inactive at introspection (RFC 7662 §2.2) and refused by userinfo.

"Sign out everywhere" without applications sets ``sessions_not_before`` only: the sessions end, and the
codes they issued are refused, but tokens already held by applications stay valid.

The race this closes: requests in flight with a stolen session cookie (a ``prompt=none`` authorization,
a code exchange, a refresh) that commit after the revocation has looked for their results. The time is
set first, in a transaction of its own, holding the user's row ``FOR UPDATE``; every request that issues
a code or a token reads it with ``grant_refused(..., lock=True)``, which holds the row ``FOR KEY SHARE``
until that request commits. So a grant is either committed before the time is set (and the revocation
that follows finds and revokes it) or its request waits, reads the new time and is refused. On SQLite a
writing transaction already excludes every other (``BEGIN IMMEDIATE``).

Times come from the web nodes' clocks (as ``auth_time`` does): keep them synchronised (NTP).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from tokens import ledger
from tokens.models import LedgerRecord

logger = logging.getLogger(__name__)


class Reason(StrEnum):
    """Why the not-before times were set (``detail.reason`` of the ``account.not_before`` record)."""

    SIGN_OUT_EVERYWHERE = "sign_out_everywhere"
    PASSWORD_CHANGED = "password_changed"
    MFA_RESET = "mfa_reset"
    DEACTIVATED = "deactivated"
    ADMIN_REVOKED = "admin_revoked"  # an admin ended every session and token (the admin API)


@dataclass(frozen=True)
class NotBefore:
    """A user's two cut-off times (``None``: never revoked)."""

    grants: datetime | None
    sessions: datetime | None

    @property
    def session_cutoff(self) -> datetime | None:
        times = [value for value in (self.grants, self.sessions) if value is not None]
        return max(times) if times else None

    def ends_session(self, auth_time: datetime | None) -> bool:
        """An SSO session (or a code it issued) that began before the cut-off; one of unknown age too."""
        cutoff = self.session_cutoff
        return cutoff is not None and (auth_time is None or auth_time < cutoff)

    def refuses_grant(self, granted_at: datetime | None) -> bool:
        """A refresh-token family or an access token granted before ``not_before``; one of unknown age too."""
        return self.grants is not None and (granted_at is None or granted_at < self.grants)


def of(user: Any) -> NotBefore:
    """The cut-offs of a loaded user (the request's, read once per request by AuthenticationMiddleware)."""
    return NotBefore(
        grants=getattr(user, "not_before", None), sessions=getattr(user, "sessions_not_before", None)
    )


def read(user_id: Any, *, lock: bool = False) -> NotBefore:
    """The user's cut-offs as committed now. With ``lock`` (inside the transaction that issues a grant) the
    row is held ``FOR KEY SHARE`` until that transaction ends: ``revoke`` waits for it, and a grant being
    issued waits for a revocation in progress. ``FOR KEY SHARE`` does not queue grants of one user behind
    each other, nor behind ordinary updates of the row (``last_login``)."""
    if lock and connection.vendor == "postgresql":
        if not connection.in_atomic_block:
            raise RuntimeError("read(lock=True) needs the grant's transaction")
        quote = connection.ops.quote_name
        table, columns = quote(User._meta.db_table), "not_before, sessions_not_before"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM {table} WHERE {quote('id')} = %s FOR KEY SHARE",  # noqa: S608 - quoted names of our table  # nosec B608
                [user_id],
            )
            row = cursor.fetchone()
    else:
        row = User.objects.filter(pk=user_id).values_list("not_before", "sessions_not_before").first()
    return NotBefore(grants=row[0], sessions=row[1]) if row else NotBefore(grants=None, sessions=None)


def session_ended(*, user: Any, auth_time: datetime | None) -> bool:
    """Whether a signed-in session of ``user`` (loaded for this request) began before a revocation."""
    return of(user).ends_session(auth_time)


def code_refused(*, user_id: Any, auth_time: datetime | None) -> bool:
    """An authorization code from a session that began before a revocation: neither issued nor redeemed.
    Call inside the transaction that issues or redeems it (the row lock, see ``read``)."""
    return read(user_id, lock=True).ends_session(auth_time)


def grant_refused(*, user_id: Any, granted_at: datetime | None, lock: bool) -> bool:
    """A refresh-token family or access token granted before ``not_before``. ``lock`` when about to issue
    tokens from it (the token endpoint), not when only describing it (introspection, userinfo)."""
    return read(user_id, lock=lock).refuses_grant(granted_at)


def revoke(*, user: User, request: HttpRequest | None, reason: Reason, applications: bool = True) -> datetime:
    """Set the user's cut-offs to now, in a transaction of its own (call it outside any other, before
    anything else is revoked), with its ledger record. ``applications=False`` ends sessions only."""
    actor = getattr(request, "user", None)
    by = str(actor.pk) if actor is not None and actor.is_authenticated and actor.pk != user.pk else ""
    with transaction.atomic():
        # FOR UPDATE: waits for every grant being issued to this user (they hold the row FOR KEY SHARE).
        list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
        moment = timezone.now()
        fields = {"sessions_not_before": moment, **({"not_before": moment} if applications else {})}
        User.objects.filter(pk=user.pk).update(**fields)
        ledger.append_record(
            event=LedgerRecord.Event.ACCOUNT_NOT_BEFORE,
            sub=str(user.pk),
            detail={
                "not_before": moment.isoformat(),
                "applications": applications,
                "reason": reason,
                **({"by": by} if by else {}),
            },
            **ledger.request_metadata(request),
        )
    for name, value in fields.items():
        setattr(user, name, value)
    logger.info(
        "accounts.not_before_set",
        extra={"user_id": str(user.pk), "reason": reason, "applications": applications},
    )
    return moment
