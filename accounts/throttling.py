"""Credential-guessing limits: failed password and second-factor attempts, per account and per client IP.

Counters are rows of ``ThrottleCounter`` in the database, so every worker and every web node sees the
same numbers (never process memory, never the per-process cache). A key counts failures over a window
of ``UAA_THROTTLE_WINDOW`` seconds; the ``UAA_THROTTLE_ACCOUNT_FAILURES``-th failure for an account (or
the ``UAA_THROTTLE_IP_FAILURES``-th from an IP address) locks it for ``UAA_LOCKOUT_SECONDS``. A lock ends
by itself, or at once when an admin unlocks the user.

The account key is a digest of the typed e-mail address, known or not: an unknown address locks exactly
like a real one, so the lock message does not tell whether an account exists (OWASP ASVS V2.2.1).

Client authentication at the token, revocation and introspection endpoints is limited the same way, with
keys of its own, each locking for ``UAA_CLIENT_LOCKOUT_SECONDS``: ``UAA_THROTTLE_CLIENT_IP_FAILURES``
failures per client address (an IPv6 address counts as its /64), whatever client they name;
``UAA_THROTTLE_CLIENT_FAILURES`` per registered client from one address; and as many per registered client
from all addresses together. The first two refuse every attempt. The client-wide lock refuses only an
attempt that could guess a secret, and only from an address the client has not authenticated from in the
last ``KNOWN_ADDRESS_FOR`` (OWASP's device cookies, keyed by address): strangers cannot lock a client out
of the addresses it works from, and a guesser spread over many addresses still gets
``UAA_THROTTLE_CLIENT_FAILURES`` guesses per lock. Unknown client_ids count against the address only, so
invented ids leave no rows behind. Locks are checked before any credential is, in one query, and a failure
is counted in one statement, of the same shape whether the client_id is registered or not (issue 12: the
time a failure takes does not tell a caller whether a client_id is registered).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from accounts import signals
from accounts.models import ThrottleCounter, canonical_email
from tokens.clientip import client_address


def client_ip(request: HttpRequest) -> str:
    """The client's address (tokens.clientip: honours ``UAA_TRUSTED_PROXIES``)."""
    return client_address(request.META)


def account_key(email: str) -> str:
    """The typed address in the one form it is stored and looked up in (``canonical_email``)."""
    return "acct:" + hashlib.sha256(canonical_email(email).encode("utf-8", "replace")).hexdigest()[:40]


def ip_key(ip: str | None) -> str:
    """An IPv4 address, or an IPv6 address's /64, as for client authentication (``address_bucket``)."""
    return "ip:" + address_bucket(ip)


def locked_until(*, email: str, now: datetime | None = None) -> datetime | None:
    """When the account's lock ends (the admin's view), or ``None``."""
    counter = ThrottleCounter.objects.filter(key=account_key(email)).locked(now or timezone.now()).first()
    return counter.locked_until if counter else None


def _limits() -> dict[str, int]:
    return {"acct": settings.UAA_THROTTLE_ACCOUNT_FAILURES, "ip": settings.UAA_THROTTLE_IP_FAILURES}


def locked_for(*, email: str, ip: str | None, now: datetime | None = None) -> int:
    """Seconds until the account and the IP address may try again; 0 when neither is locked."""
    return seconds_locked(keys=[account_key(email), ip_key(ip)], now=now)


def seconds_locked(*, keys: Iterable[str], now: datetime | None = None) -> int:
    """Seconds until every one of ``keys`` may try again (the longest lock among them); 0 when none is."""
    now = now or timezone.now()
    until = (
        ThrottleCounter.objects.filter(key__in=list(keys))
        .locked(now)
        .aggregate(until=Max("locked_until"))["until"]
    )
    return math.ceil((until - now).total_seconds()) if until else 0


def count_failure(*, key: str, limit: int, lockout_seconds: int, now: datetime | None = None) -> bool:
    """One failure for ``key`` (any namespace): the ``limit``-th within ``UAA_THROTTLE_WINDOW`` seconds
    locks the key for ``lockout_seconds``. One row per key, updated under a row lock. True when this
    failure started the lock."""
    now = now or timezone.now()
    window = timedelta(seconds=settings.UAA_THROTTLE_WINDOW)
    with transaction.atomic():
        counter, _ = ThrottleCounter.objects.select_for_update().get_or_create(
            key=key, defaults={"window_started_at": now}
        )
        if counter.locked_until and counter.locked_until > now:
            return False  # already locked: the lock is not extended by further tries
        if now - counter.window_started_at > window:
            counter.failures, counter.window_started_at = 0, now
        counter.failures += 1
        locks = counter.failures >= limit
        if locks:
            counter.locked_until = now + timedelta(seconds=lockout_seconds)
            counter.failures, counter.window_started_at = 0, now
        counter.save()
    if locks:
        signals.lockout_started.send(sender=ThrottleCounter, key=key)
    return locks


def clear(*, key: str, now: datetime | None = None) -> None:
    """Forget ``key``'s failures, but not a lock that is still running."""
    now = now or timezone.now()
    ThrottleCounter.objects.filter(key=key).unlocked(now).delete()


def _count(key: str, *, limit: int, now: datetime) -> None:
    count_failure(key=key, limit=limit, lockout_seconds=settings.UAA_LOCKOUT_SECONDS, now=now)


def record_failure(*, email: str, ip: str | None, now: datetime | None = None) -> None:
    """Count one failed password or second-factor attempt against the account and the IP address."""
    now = now or timezone.now()
    limits = _limits()
    _count(account_key(email), limit=limits["acct"], now=now)
    _count(ip_key(ip), limit=limits["ip"], now=now)


def record_success(*, email: str) -> None:
    """A completed sign-in clears the account's failures (not the IP's: one good account is no alibi)."""
    clear(key=account_key(email))


def unlock(*, email: str) -> bool:
    """An admin ends an account's lock now. Returns whether there was anything to clear."""
    deleted, _ = ThrottleCounter.objects.filter(key=account_key(email)).delete()
    return bool(deleted)


def lock_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts. Sign-in is locked; try again in {minutes} {unit}."


# --- client authentication (the token, revocation and introspection endpoints) ----------------------
KNOWN_ADDRESS_FOR = timedelta(days=30)  # a client's successful address stays "known" this long


def client_key(client_id: str) -> str:
    return "client:" + hashlib.sha256(client_id.encode("utf-8", "replace")).hexdigest()[:40]


def _pair_digest(client_id: str, ip: str | None) -> str:
    pair = f"{client_id}\x00{address_bucket(ip)}"
    return hashlib.sha256(pair.encode("utf-8", "replace")).hexdigest()[:40]


def client_address_key(client_id: str, ip: str | None) -> str:
    """The failures of one client from one address."""
    return "client-at:" + _pair_digest(client_id, ip)


def known_address_key(client_id: str, ip: str | None) -> str:
    """An address the client authenticated from (``window_started_at``: the last time; no failures)."""
    return "client-ok:" + _pair_digest(client_id, ip)


def address_bucket(ip: str | None) -> str:
    """The address a limit applies to: an IPv4 address, or the /64 of an IPv6 address (RFC 6177: one
    subscriber's allocation, within which an attacker rotates addresses for free)."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return (ip or "unknown")[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def client_ip_key(ip: str | None) -> str:
    return "client-ip:" + address_bucket(ip)


@dataclass(frozen=True)
class ClientThrottle:
    """What the counters say about one client authentication attempt, read in one query.

    ``retry_after`` is the lock of the address or of this (client, address) pair: it refuses every
    attempt. ``client_retry_after`` is the client-wide lock (too many failures from all addresses
    together): it refuses only attempts that could guess a secret, and never one from an address the
    client authenticated from within ``KNOWN_ADDRESS_FOR`` (0 then)."""

    retry_after: int  # seconds until the attempt may be made whatever it carries; 0: now
    client_retry_after: int  # seconds until a guessable attempt from an unknown address may be made
    pair_failures: int  # failures of the named client from this address in the current window
    known_since: datetime | None  # when the client last authenticated from this address, if it is known

    def refuses(self, *, guessable: bool) -> int:
        """Seconds to wait (0: go on) for an attempt that could guess a secret (``guessable``) or not."""
        return max(self.retry_after, self.client_retry_after if guessable else 0)


def _seconds(until: datetime | None, now: datetime) -> int:
    return math.ceil((until - now).total_seconds()) if until and until > now else 0


def client_counter_keys(*, client_id: str | None, ip: str | None) -> dict[str, str]:
    """The counters a client authentication naming ``client_id`` from ``ip`` reads: key -> its kind."""
    keys = {client_ip_key(ip): "ip"}
    if client_id:
        keys[client_key(client_id)] = "client"
        keys[client_address_key(client_id, ip)] = "pair"
        keys[known_address_key(client_id, ip)] = "known"
    return keys


def client_throttle(
    *,
    keys: dict[str, str],
    rows: Iterable[tuple[str, int, datetime | None, datetime]],
    now: datetime,
) -> ClientThrottle:
    """What the counter ``rows`` (key, failures, locked_until, window_started_at) of ``keys``
    (``client_counter_keys``) say about the attempt: the rule of ``check_client``, for a caller that read
    the rows in a query of its own (uaa/oauth/clientauth.py reads the client's version with them)."""
    locks: dict[str, datetime] = {}
    pair_failures, known_since = 0, None
    for key, count, locked, started in rows:
        kind = keys[key]
        if kind == "known":
            known_since = started if now - started < KNOWN_ADDRESS_FOR else None
            continue
        if locked and locked > now:
            locks[kind] = locked
        if kind == "pair":
            pair_failures = count
    return ClientThrottle(
        retry_after=max(_seconds(locks.get("ip"), now), _seconds(locks.get("pair"), now)),
        client_retry_after=0 if known_since else _seconds(locks.get("client"), now),
        pair_failures=pair_failures,
        known_since=known_since,
    )


def check_client(*, client_id: str | None, ip: str | None, now: datetime | None = None) -> ClientThrottle:
    """The counters for a client authentication naming ``client_id`` from ``ip``, before anything is
    verified (one indexed query on the request path)."""
    now = now or timezone.now()
    keys = client_counter_keys(client_id=client_id, ip=ip)
    rows = ThrottleCounter.objects.filter(key__in=list(keys)).values_list(
        "key", "failures", "locked_until", "window_started_at"
    )
    return client_throttle(keys=keys, rows=rows, now=now)


def record_client_failure(*, client_id: str | None, ip: str | None, now: datetime | None = None) -> bool:
    """Count a failed client authentication against the address, and against ``client_id`` when it names
    a registered client (the caller says so by passing it; unknown ids are passed as ``None``): against
    that client from this address, and against the client from everywhere. True when this failure
    started a client-wide lock (the caller raises the alarm).

    One statement (``_count_client_failures``) whoever is named: the client's two counters are in it for an
    unknown id too, filtered out by a parameter, so an invented id writes the address's row alone and costs
    what a registered one does."""
    now = now or timezone.now()
    named = client_id or ""
    rows = [
        (client_ip_key(ip), settings.UAA_THROTTLE_CLIENT_IP_FAILURES, True),
        (client_address_key(named, ip), settings.UAA_THROTTLE_CLIENT_FAILURES, bool(client_id)),
        (client_key(named), settings.UAA_THROTTLE_CLIENT_FAILURES, bool(client_id)),
    ]
    started = _count_client_failures(rows, lockout_seconds=settings.UAA_CLIENT_LOCKOUT_SECONDS, now=now)
    for key in started:
        signals.lockout_started.send(sender=ThrottleCounter, key=key)
    return bool(client_id) and client_key(named) in started


def _count_client_failures(
    rows: list[tuple[str, int, bool]], *, lockout_seconds: int, now: datetime
) -> list[str]:
    """``count_failure`` for each (key, limit, counted) of ``rows`` that is ``counted``, as one upsert: a new
    key starts a window with one failure; a locked key is left alone (a lock is not extended by further
    tries); a key whose window ended starts a new one; the ``limit``-th failure of a window locks the key
    for ``lockout_seconds``. The row lock the upsert takes serialises concurrent failures of one key as
    ``count_failure``'s SELECT ... FOR UPDATE does. The keys whose lock this failure started."""
    ops = connection.ops
    params: dict[str, Any] = {
        "now": ops.adapt_datetimefield_value(now),
        "window_from": ops.adapt_datetimefield_value(now - timedelta(seconds=settings.UAA_THROTTLE_WINDOW)),
        "lock_until": ops.adapt_datetimefield_value(now + timedelta(seconds=lockout_seconds)),
    }
    for index, (key, limit, counted) in enumerate(rows):
        params.update({f"k{index}": key, f"l{index}": limit, f"c{index}": 1 if counted else 0})
    with connection.cursor() as cursor:
        cursor.execute(_client_failures_sql(len(rows)), params)
        return [key for key, started in cursor.fetchall() if started]


@cache
def _client_failures_sql(count: int) -> str:
    quote = connection.ops.quote_name
    table = quote(ThrottleCounter._meta.db_table)
    key, failures, started, locked = (
        f"{table}.{quote(name)}" for name in ("key", "failures", "window_started_at", "locked_until")
    )
    stamp = "::timestamp with time zone" if connection.vendor == "postgresql" else ""
    now, window_from, lock_until = (f"%({name})s{stamp}" for name in ("now", "window_from", "lock_until"))
    values = ", ".join(f"(%(k{i})s, %(l{i})s, %(c{i})s)" for i in range(count))
    limit = "CASE " + " ".join(f"WHEN {key} = %(k{i})s THEN %(l{i})s" for i in range(count)) + " END"
    running = f"({locked} IS NOT NULL AND {locked} > {now})"
    ended = f"({started} < {window_from})"
    counted = f"((CASE WHEN {ended} THEN 0 ELSE {failures} END) + 1)"
    locks = f"({counted} >= {limit})"
    columns = ", ".join(quote(name) for name in ("key", "failures", "window_started_at", "locked_until"))
    return (  # our own table and columns; every value is a parameter
        f"INSERT INTO {table} ({columns})"  # noqa: S608 - our own table  # nosec B608
        f" SELECT v.column1, CASE WHEN v.column2 <= 1 THEN 0 ELSE 1 END, {now},"
        f" CASE WHEN v.column2 <= 1 THEN {lock_until} END"
        f" FROM (VALUES {values}) AS v WHERE v.column3 = 1"
        f" ON CONFLICT ({quote('key')}) DO UPDATE SET"
        f" {quote('failures')} = CASE WHEN {running} THEN {failures} WHEN {locks} THEN 0 ELSE {counted} END,"
        f" {quote('window_started_at')} = CASE WHEN {running} THEN {started}"
        f" WHEN {ended} OR {locks} THEN {now} ELSE {started} END,"
        f" {quote('locked_until')} = CASE WHEN {running} THEN {locked} WHEN {locks} THEN {lock_until}"
        f" ELSE {locked} END"
        f" RETURNING {quote('key')}, CASE WHEN {quote('locked_until')} = {lock_until} THEN 1 ELSE 0 END"
    )


def record_client_success(
    *, client_id: str, ip: str | None, throttle: ClientThrottle, now: datetime | None = None
) -> None:
    """An authenticated client's failures from this address are forgiven (not the address's, nor the
    client's from elsewhere: one success is no alibi for guesses made meanwhile), and the address is
    remembered as one the client uses. Writes only when ``throttle`` (read before the attempt) counted
    failures here, or the address was last remembered more than a window ago."""
    now = now or timezone.now()
    if throttle.pair_failures:
        clear(key=client_address_key(client_id, ip), now=now)
    window = timedelta(seconds=settings.UAA_THROTTLE_WINDOW)
    if throttle.known_since is None or now - throttle.known_since > window:
        ThrottleCounter.objects.update_or_create(
            key=known_address_key(client_id, ip),
            defaults={"failures": 0, "window_started_at": now, "locked_until": None},
        )
