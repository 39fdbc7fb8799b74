"""Request rate limits at the token, introspection, revocation and userinfo endpoints (issue 13 item 4).

accounts/throttling.py limits credential *guessing* (failures); this limits request *volume*, so that one
address or one client cannot take a whole node, whatever its requests carry. Two counters per endpoint:

- **per client address** (an IPv4 address, an IPv6 /64: ``accounts.throttling.address_bucket``, behind
  ``UAA_TRUSTED_PROXIES`` as tokens/clientip.py computes it): every request counts, and the count is
  checked before the view runs, before any secret is hashed, signature verified or row read;
- **per client**: only requests that *proved* they are that client count, after they succeeded (a 2xx):
  the client authenticated at the token, introspection or revocation endpoint (a public client: a code or
  refresh token of its own redeemed at the token endpoint; its unauthenticated revocations prove nothing),
  or, at userinfo, a valid access token of that client. So a flood that names someone else's client_id with
  wrong secrets (or none) costs that flood's own address quota and never the client's. The count is read
  before the view (in the same round trip as the address's) and refuses a client that has used its quota.

Windows are fixed: ``UAA_RATELIMIT_WINDOW`` seconds, offset per counter by a hash of its key so that the
windows of different clients and addresses do not all end at the same second (and the clients told to
retry then do not all come back at once). A fixed window lets up to twice a limit through within one
window's length across a boundary (a limit at the end of one window, a limit at the start of the next);
over any longer time the average never exceeds the limit. A refused request is answered 429 with
``Retry-After`` (seconds to the end of the window that refused it) and the ``slow_down`` error.

Where the counters live: Redis when ``UAA_RATELIMIT_REDIS_URL`` is set (by default ``REDIS_URL``, else a
``redis://`` ``CACHE_URL``): one round trip per request, the check (a pipeline: INCR and EXPIREAT of the
address's key, GET of the client's), which also carries this process's previous success's count
(:class:`RedisStore`: other processes see a success one request of this process later), and no SQL.
Otherwise the database, table ``oauth_ratelimitcounter``: one statement for the check (an ``INSERT ...
ON CONFLICT DO UPDATE ... RETURNING`` of both rows, PostgreSQL and SQLite alike) and one for the count,
each outside the request's transaction (a counter row is never locked for longer than its statement).
Never process memory: every worker and every node shares them.

Redis down: the limits fail **open** (docs/operations.md, "Rate limits"). The requests are served
unlimited, the credential-guessing limits (in the database) still apply, each such request counts in
``uaa_ratelimit_unavailable_total``, and the process logs ``oauth.ratelimit_unavailable`` and leaves Redis
alone for ``REDIS_RETRY_SECONDS`` before it tries again (so a Redis that does not answer costs a request
``UAA_RATELIMIT_REDIS_TIMEOUT`` once per interval, not every request). The database backend cannot fail on
its own: a request that cannot reach the database fails anyway (503, uaa/outage.py).

A client's own limit (``Client.rate_limit``) is read from this worker's client cache
(uaa/oauth/client_cache.py, no query), which the client's authentication refreshes when the row changed: a
changed limit applies in each worker once the client has made a token, introspection or revocation request
there since the change (until a worker has seen the client at all, it uses the default).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import unquote_plus

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

from accounts.throttling import address_bucket
from tokens.clientip import client_address
from uaa import metrics
from uaa.oauth import client_cache, rfc7523
from uaa.oauth.clientauth import basic_credentials
from uaa.oauth.errors import RateLimited
from uaa.oauth.http import storable_text
from uaa.oauth.models import Client, RateLimitCounter

logger = logging.getLogger(__name__)

REDIS_PREFIX = "uaa:rl:"
REDIS_RETRY_SECONDS = 5.0  # after Redis failed, this process serves unlimited this long before trying again
MAX_TOKEN_PAYLOAD = 8192  # the longest JWT payload read for its client_id (base64url characters)


class Endpoint(StrEnum):
    TOKEN = "token"
    INTROSPECTION = "introspection"
    REVOCATION = "revocation"
    USERINFO = "userinfo"


def limits(endpoint: Endpoint) -> tuple[int, int]:
    """``(per client, per address)`` requests per window at ``endpoint`` (settings; 0: no limit)."""
    name = endpoint.value.upper()
    per_client = getattr(settings, f"UAA_RATELIMIT_{name}_CLIENT")
    per_address = getattr(settings, f"UAA_RATELIMIT_{name}_IP")
    return max(0, int(per_client)), max(0, int(per_address))


def window_seconds() -> int:
    return max(1, int(settings.UAA_RATELIMIT_WINDOW))


@dataclass(frozen=True)
class Counter:
    """One counter's current window: its key (the endpoint, what it counts, whom) and the epoch second
    the window ends (the windows of a key are [end - window, end))."""

    key: str
    window_end: int

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.window_end - now))


def counter(endpoint: Endpoint, kind: str, subject: str, *, now: float) -> Counter:
    key = f"{endpoint.value}:{kind}:{subject}"
    window = window_seconds()
    offset = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % window
    return Counter(key=key, window_end=(math.floor((now + offset) / window) + 1) * window - offset)


def client_subject(client_id: str) -> str:
    """A client in a counter's key: a digest (a client_id may be 255 characters of anything)."""
    return hashlib.sha256(client_id.encode("utf-8", "replace")).hexdigest()[:32]


# --- the stores -----------------------------------------------------------------------------------------
class Unavailable(Exception):
    """The counters cannot be reached: the request is served without a limit (fail open)."""


class Store(Protocol):
    def hit(self, *, add: Counter | None, read: Counter | None) -> tuple[int, int]:
        """Count one request against ``add`` and read ``read``, in one round trip: their counts."""

    def count(self, key: Counter) -> None:
        """Count one request against ``key`` (a success of its client)."""


class DatabaseStore:
    """Rows of ``RateLimitCounter``: ``(key, window_end, hits)``, one row per key, its window rolled over
    in place. Every statement runs on its own (autocommit): never inside the request's transaction."""

    def hit(self, *, add: Counter | None, read: Counter | None) -> tuple[int, int]:
        """Add one to ``add``'s count and read ``read``'s, in one statement; ``read``'s row is never written
        here (an invented client_id leaves no row, red team row 14)."""
        if add is None:
            return 0, (self._read(read) if read is not None else 0)
        if read is None:
            return self._upsert([(add.key, add.window_end, 1)]).get(add.key, 0), 0
        with connection.cursor() as cursor:
            cursor.execute(_hit_and_read_sql(), [add.key, add.window_end, 1, read.window_end, read.key])
            row = cursor.fetchone()
        return (int(row[1]), int(row[2] or 0)) if row else (0, 0)

    def _read(self, key: Counter) -> int:
        with connection.cursor() as cursor:
            cursor.execute(_read_sql(), [key.window_end, key.key])
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def count(self, key: Counter) -> None:
        self._upsert([(key.key, key.window_end, 1)])

    def _upsert(self, rows: list[tuple[str, int, int]]) -> dict[str, int]:
        if not rows:
            return {}
        with connection.cursor() as cursor:
            cursor.execute(_upsert_sql(len(rows)), [value for row in rows for value in row])
            return {str(key): int(hits) for key, hits in cursor.fetchall()}


@cache
def _upsert_sql(rows: int) -> str:
    """The one statement of a check (PostgreSQL and SQLite >= 3.35 alike): a key in the same window adds its
    delta, a key in an older window starts the new one at its delta (a read adds 0: it resets an old
    window, and answers the current count); a row a node with a faster clock already rolled on is kept."""
    quote = connection.ops.quote_name
    table = quote(RateLimitCounter._meta.db_table)
    key, end, hits = quote("key"), quote("window_end"), quote("hits")
    values = ", ".join(["(%s, %s, %s)"] * rows)
    return (
        f"INSERT INTO {table} ({key}, {end}, {hits}) VALUES {values}"  # noqa: S608 - our own table  # nosec B608
        f" ON CONFLICT ({key}) DO UPDATE SET"
        f" {hits} = CASE WHEN {table}.{end} >= excluded.{end} THEN {table}.{hits} + excluded.{hits}"
        f" ELSE excluded.{hits} END,"
        f" {end} = CASE WHEN {table}.{end} > excluded.{end} THEN {table}.{end} ELSE excluded.{end} END"
        f" RETURNING {key}, {hits}"
    )


@cache
def _read_sql() -> str:
    """A key's count in the window ending at the parameter (a row of an older window counts 0)."""
    quote = connection.ops.quote_name
    key, end, hits = quote("key"), quote("window_end"), quote("hits")
    return (
        f"SELECT CASE WHEN {end} >= %s THEN {hits} ELSE 0 END"  # noqa: S608 - our own table  # nosec B608
        f" FROM {quote(RateLimitCounter._meta.db_table)} WHERE {key} = %s"
    )


@cache
def _hit_and_read_sql() -> str:
    """The address's upsert, returning also the client's count read by a subquery (PostgreSQL and SQLite
    alike): one statement, and no row written for the client."""
    quote = connection.ops.quote_name
    key, end, hits = quote("key"), quote("window_end"), quote("hits")
    return (
        f"{_upsert_sql(1)}, (SELECT CASE WHEN c.{end} >= %s THEN c.{hits} ELSE 0 END"  # noqa: S608 - our own table  # nosec B608
        f" FROM {quote(RateLimitCounter._meta.db_table)} c WHERE c.{key} = %s)"
    )


class RedisStore:
    """One Redis key per counter and window (``uaa:rl:<key>:<window end>``), expiring after its window.

    One round trip per request: a success's count (:meth:`count`) is held by the process and sent with its
    next check (:meth:`hit`), in the same pipeline and before that check's reads, instead of a round trip of
    its own after the answer (issue 12: the second round trip was a sixth of the token endpoint's CPU). So
    a process's own counts are always in the counts it checks; what other processes see of them lags by
    the requests this process is serving and has not yet followed with a check (one per sync worker):
    across N workers a client may get up to N - 1 successes past its limit in a window. A held count
    whose window ended before it is sent expires at once (``EXPIREAT`` in the past); one that cannot be
    sent (Redis down, the process ending) is lost, as a count that fails is.
    """

    def __init__(self, url: str, timeout: float) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # a failure is answered by failing open, not by waiting more
            health_check_interval=0,
        )
        self.down_until = 0.0
        self.lock = threading.Lock()
        self._held: dict[str, tuple[int, int]] = {}  # key name -> (successes not yet sent, its EXPIREAT)

    @staticmethod
    def name(key: Counter) -> str:
        return f"{REDIS_PREFIX}{key.key}:{key.window_end}"

    def hit(self, *, add: Counter | None, read: Counter | None) -> tuple[int, int]:
        with self.lock:
            held, self._held = self._held, {}

        def commands(pipe: Any) -> None:
            for name, (successes, expire_at) in held.items():  # before the reads: they include them
                pipe.incrby(name, successes)
                pipe.expireat(name, expire_at)
            if add is not None:
                pipe.incr(self.name(add))
                pipe.expireat(self.name(add), add.window_end + 1)
            if read is not None:
                pipe.get(self.name(read))

        results = self._run(commands)[2 * len(held) :]
        added = int(results[0]) if add is not None else 0
        value = results[-1] if read is not None else None
        return added, int(value) if value is not None else 0

    def count(self, key: Counter) -> None:
        """Hold a success's count for the next check (see the class); nothing is sent now."""
        name = self.name(key)
        with self.lock:
            successes, _ = self._held.get(name, (0, 0))
            self._held[name] = (successes + 1, key.window_end + 1)

    def _run(self, commands: Any) -> list[Any]:
        if time.monotonic() < self.down_until:
            raise Unavailable("redis: retrying later")
        pipe = self.client.pipeline(transaction=False)
        commands(pipe)
        try:
            return list(pipe.execute())
        except self.errors as exc:
            with self.lock:
                first = time.monotonic() >= self.down_until
                self.down_until = time.monotonic() + REDIS_RETRY_SECONDS
            if first:
                logger.warning(
                    "oauth.ratelimit_unavailable",
                    extra={"store": "redis", "error": type(exc).__name__, "retry_in": REDIS_RETRY_SECONDS},
                )
            raise Unavailable(type(exc).__name__) from exc


_stores: dict[tuple[str, float], RedisStore] = {}
_stores_lock = threading.Lock()
DATABASE = DatabaseStore()


def store() -> Store:
    """Redis when ``UAA_RATELIMIT_REDIS_URL`` names one (one client and connection pool per process and
    URL), else the database."""
    url = settings.UAA_RATELIMIT_REDIS_URL
    if not url:
        return DATABASE
    key = (url, float(settings.UAA_RATELIMIT_REDIS_TIMEOUT))
    found = _stores.get(key)
    if found is None:
        with _stores_lock:
            found = _stores.setdefault(key, RedisStore(*key))
    return found


def prune(*, now: float | None = None) -> int:
    """Delete the database counters whose window has ended (the hourly cleanup task); Redis keys expire."""
    ended = int(now if now is not None else time.time())
    deleted, _ = RateLimitCounter.objects.filter(window_end__lt=ended).delete()
    return deleted


# --- who a request says it is (unverified: it only picks the counter) ------------------------------------
def _usable(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 255 and storable_text(value):
        return value
    return None


def _basic_client_id(token68: str) -> str | None:
    try:
        decoded = base64.b64decode(token68, validate=False).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    client_id, colon, _ = decoded.partition(":")
    return unquote_plus(client_id) if colon else None


def _token_client(header: str) -> str | None:
    """The ``client_id`` claim (RFC 9068 §2.2) of a JWT access token, unverified: userinfo verifies it, and
    only a verified token's success is counted."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "dpop"):
        return None
    parts = token.strip().split(".")
    if len(parts) != 3 or len(parts[1]) > MAX_TOKEN_PAYLOAD:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, RecursionError):
        return None
    return _usable(payload.get("client_id")) if isinstance(payload, dict) else None


def claimed_client(request: HttpRequest, endpoint: Endpoint) -> tuple[str | None, bool]:
    """The client_id the request names, and whether its success proves it is that client (a public
    client's revocation, with its client_id alone, proves nothing)."""
    if endpoint is Endpoint.USERINFO:
        return _token_client(request.META.get("HTTP_AUTHORIZATION", "")), True
    basic = basic_credentials(request.META.get("HTTP_AUTHORIZATION", ""))
    if basic is not None:
        return _usable(_basic_client_id(basic)), True
    form = request.POST
    assertion = form.get("client_assertion")
    if assertion:
        return _usable(rfc7523.claimed_client_id(SimpleNamespace(client_assertion=assertion))), True
    client_id = _usable(form.get("client_id"))
    if endpoint is not Endpoint.REVOCATION:
        return client_id, True
    # RFC 7009 §2.1: a public client revokes with its client_id alone (an empty client_secret authenticates
    # it too, red team row 4), and an unknown token is a 200: only a confidential client's secret proves
    # who sent a revocation. The type as this worker last read it; not yet read: unproven.
    found, client_type = client_cache.peek(client_id, "client_type") if client_id else (False, None)
    confidential = found and client_type == Client.CLIENT_CONFIDENTIAL
    return client_id, bool(form.get("client_secret")) and confidential


def client_limit(client_id: str, default: int) -> int:
    """The client's own limit (``Client.rate_limit``) as this worker last read it, else ``default``."""
    found, own = client_cache.peek(client_id, "rate_limit")
    return max(0, int(own)) if found and own is not None else default


# --- the endpoints' hooks (uaa.oauth.http.oauth_endpoint) ------------------------------------------------
@dataclass(frozen=True)
class Admission:
    """A request let through: the client counter a success of it counts against (``settle``)."""

    endpoint: Endpoint
    client: Counter | None


def admit(request: HttpRequest, *, endpoint: Endpoint) -> Admission | None:
    """Count the request against its address and read its client's count, in one round trip; raise
    ``RateLimited`` if either is over its limit. ``None``: nothing to count (every limit is off)."""
    per_client, per_address = limits(endpoint)
    now = time.time()
    client_id, provable = claimed_client(request, endpoint)
    own_limit = client_limit(client_id, per_client) if client_id else 0
    address = (
        counter(endpoint, "ip", address_bucket(client_address(request.META)), now=now)
        if per_address
        else None
    )
    # An unproven request is neither counted against the client it names nor refused by its count: only
    # the address's count limits it (a flood naming a client never shuts that client's users out).
    client = (
        counter(endpoint, "client", client_subject(client_id), now=now)
        if client_id and own_limit and provable
        else None
    )
    if address is None and client is None:
        return None
    admission = Admission(endpoint=endpoint, client=client)
    try:
        address_hits, client_hits = store().hit(add=address, read=client)
    except Unavailable:
        metrics.rate_limit_unavailable(endpoint=endpoint.value)
        return admission
    waits: dict[str, int] = {}
    if address is not None and address_hits > per_address:
        waits["ip"] = address.retry_after(now)
    if client is not None and client_hits >= own_limit:
        waits["client"] = client.retry_after(now)
    if waits:
        for limit in waits:
            metrics.rate_limited(endpoint=endpoint.value, limit=limit)
        logger.debug(
            "oauth.rate_limited",
            extra={"endpoint": endpoint.value, "limits": sorted(waits), "client_id": client_id or ""},
        )
        raise RateLimited(max(waits.values()))
    return admission


def settle(admission: Admission | None, response: HttpResponse) -> None:
    """A success counts against the client it proved to be; nothing else does. A count that cannot be
    made is left out (the answer stands): Redis's failure was logged and counted by the check's store."""
    if admission is None or admission.client is None or not 200 <= response.status_code < 300:
        return
    try:
        store().count(admission.client)
    except Unavailable:
        pass
    except DatabaseError:  # the answer is given (a token issued): it stands, uncounted
        logger.warning("oauth.ratelimit_unavailable", extra={"store": "database"})


@dataclass(frozen=True)
class EndpointLimiter:
    """What uaa.oauth.http.oauth_endpoint checks and counts for one endpoint (``limiter``)."""

    endpoint: Endpoint

    def admit(self, request: HttpRequest) -> Admission | None:
        return admit(request, endpoint=self.endpoint)

    def settle(self, admission: object, response: HttpResponse) -> None:
        settle(admission if isinstance(admission, Admission) else None, response)


def limiter(endpoint: str) -> EndpointLimiter:
    """The limits of ``endpoint`` (an ``Endpoint`` value), for uaa/urls.py's ``oauth_endpoint``."""
    return EndpointLimiter(Endpoint(endpoint))
