"""Credential-guessing limits: failed password and second-factor attempts, per account and per client IP.

Counters are rows of ``ThrottleCounter`` in the database, so every worker and every web node sees the
same numbers (never process memory, never the per-process cache). A key counts failures over a window
of ``UAA_THROTTLE_WINDOW`` seconds; the ``UAA_THROTTLE_ACCOUNT_FAILURES``-th failure for an account (or
the ``UAA_THROTTLE_IP_FAILURES``-th from an IP address) locks it for ``UAA_LOCKOUT_SECONDS``. A lock ends
by itself, or at once when an admin unlocks the user.

The account key is a digest of the typed e-mail address, known or not: an unknown address locks exactly
like a real one, so the lock message does not tell whether an account exists (OWASP ASVS V2.2.1).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import ThrottleCounter
from uaa.clientip import client_address


def client_ip(request: HttpRequest) -> str:
    """The client's address (uaa.clientip: honours ``UAA_TRUSTED_PROXIES``)."""
    return client_address(request.META)


def account_key(email: str) -> str:
    return "acct:" + hashlib.sha256(email.strip().lower().encode("utf-8", "replace")).hexdigest()[:40]


def ip_key(ip: str | None) -> str:
    return "ip:" + (ip or "unknown")[:64]


def locked_until(*, email: str, now: datetime | None = None) -> datetime | None:
    """When the account's lock ends (the admin's view), or ``None``."""
    counter = ThrottleCounter.objects.filter(
        key=account_key(email), locked_until__gt=now or timezone.now()
    ).first()
    return counter.locked_until if counter else None


def _limits() -> dict[str, int]:
    return {"acct": settings.UAA_THROTTLE_ACCOUNT_FAILURES, "ip": settings.UAA_THROTTLE_IP_FAILURES}


def locked_for(*, email: str, ip: str | None, now: datetime | None = None) -> int:
    """Seconds until the account and the IP address may try again; 0 when neither is locked."""
    now = now or timezone.now()
    until = ThrottleCounter.objects.filter(
        key__in=[account_key(email), ip_key(ip)], locked_until__gt=now
    ).aggregate(until=Max("locked_until"))["until"]
    return math.ceil((until - now).total_seconds()) if until else 0


def _count(key: str, *, limit: int, now: datetime) -> None:
    window = timedelta(seconds=settings.UAA_THROTTLE_WINDOW)
    with transaction.atomic():
        counter, _ = ThrottleCounter.objects.select_for_update().get_or_create(
            key=key, defaults={"window_started_at": now}
        )
        if counter.locked_until and counter.locked_until > now:
            return  # already locked: the lock is not extended by further tries
        if now - counter.window_started_at > window:
            counter.failures, counter.window_started_at = 0, now
        counter.failures += 1
        if counter.failures >= limit:
            counter.locked_until = now + timedelta(seconds=settings.UAA_LOCKOUT_SECONDS)
            counter.failures, counter.window_started_at = 0, now
        counter.save()


def record_failure(*, email: str, ip: str | None, now: datetime | None = None) -> None:
    """Count one failed password or second-factor attempt against the account and the IP address."""
    now = now or timezone.now()
    limits = _limits()
    _count(account_key(email), limit=limits["acct"], now=now)
    _count(ip_key(ip), limit=limits["ip"], now=now)


def record_success(*, email: str) -> None:
    """A completed sign-in clears the account's failures (not the IP's: one good account is no alibi)."""
    ThrottleCounter.objects.filter(key=account_key(email), locked_until__isnull=True).delete()
    ThrottleCounter.objects.filter(key=account_key(email), locked_until__lte=timezone.now()).delete()


def unlock(*, email: str) -> bool:
    """An admin ends an account's lock now. Returns whether there was anything to clear."""
    deleted, _ = ThrottleCounter.objects.filter(key=account_key(email)).delete()
    return bool(deleted)


def lock_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts. Sign-in is locked; try again in {minutes} {unit}."
