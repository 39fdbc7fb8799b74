"""Database outages: recognised, answered 503 with Retry-After, logged once per interval, and survived by the
public documents.

- ``is_database_unavailable``: the database cannot be reached (connection refused or lost, a connection
  that timed out, terminated by an administrator, too many connections, the SQLite file cannot be opened)
  or cannot answer in time (the web process's ``statement_timeout``, ``lock_timeout`` and
  ``idle_in_transaction_session_timeout``, uaa/settings.py: a stalled or locked database), as opposed to a
  query that failed (a deadlock, a constraint, a bug), which stays a ``server_error`` with its traceback.
- ``note_outage``: one WARNING line per process per ``UAA_UNAVAILABLE_LOG_INTERVAL`` seconds, with how many
  failures it stands for and no traceback; an outage cannot flood the log.
- ``LastGoodCopies``: the last successful answer of each public document (JWKS, discovery, the audit keys),
  kept per process and in Django's cache, served while the database is down (resource servers refresh keys
  exactly then) for at most ``UAA_LAST_GOOD_MAX_AGE`` seconds. A signing-key change (a revocation above
  all) makes every older JWKS copy unservable: it replaces the shared copy and moves the JWKS generation
  kept in the shared cache, which each copy is checked against before it is served; when the cache cannot
  be asked either, a process serves its own copy only while it is younger than ``UAA_JWKS_MAX_AGE`` (what
  any client may have cached anyway).

RFC 9110 §15.6.4: 503 means a temporary overload or maintenance, with ``Retry-After`` (§10.2.3) saying when
to retry. Imports nothing from the rest of UAA, so that the error renderers can use it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, InternalError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags

logger = logging.getLogger(__name__)

# SQLSTATE classes and codes of an unreachable server: 08 connection exception, 57P01-57P03 admin/crash
# shutdown and "cannot connect now", 53300 too many connections (PostgreSQL Appendix A); and of one that does
# not answer in time: 57014 query_canceled (statement_timeout), 55P03 lock_not_available (lock_timeout),
# 25P03 idle_in_transaction_session_timeout.
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "57014", "55P03", "25P03")
UNAVAILABLE_SQLITE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_NOTADB")
COPY_MAX_AGE = 60  # Cache-Control max-age of a last good copy: clients come back soon after recovery
CACHE_REFRESH = 60  # a copy that has not changed is re-written to the shared cache this often
GENERATION_REREAD = 1.0  # seconds: how long a process tags its JWKS copies with the generation it last read


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 10:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _driver_says_unreachable(cause: BaseException | None) -> bool:
    if cause is None:
        return False
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:
        return str(sqlstate).startswith(UNAVAILABLE_SQLSTATES)
    errorname = getattr(cause, "sqlite_errorname", None)
    if errorname:
        return str(errorname).startswith(UNAVAILABLE_SQLITE)
    # psycopg raises a failed, lost or timed-out connection as an OperationalError without an SQLSTATE: the
    # bare class, or a subclass (psycopg.errors.ConnectionTimeout after connect_timeout, when the server
    # accepts connections but never answers). Query errors carry an SQLSTATE and were decided above.
    return _is_psycopg_operational_error(cause)


def _is_psycopg_operational_error(cause: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # a deployment without PostgreSQL
        return False
    return isinstance(cause, psycopg.OperationalError)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached at all."""
    for error in _chain(exc):
        if isinstance(error, InterfaceError):  # Django: the connection is closed or unusable
            return True
        # OperationalError mostly; InternalError for 25P03 (the session ended by idle_in_transaction_...)
        if isinstance(error, OperationalError | InternalError) and _driver_says_unreachable(error.__cause__):
            return True
    return False


def retry_after() -> int:
    return int(settings.UAA_UNAVAILABLE_RETRY_AFTER)


class _LogLimiter:
    """At most one line per interval per process; the line counts the failures it stands for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def take(self) -> int | None:
        """The number of failures since the last line, when a line is due now; else None."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return None
            failures, self._suppressed = self._suppressed + 1, 0
            self._next = now + float(settings.UAA_UNAVAILABLE_LOG_INTERVAL)
            return failures

    def reset(self) -> None:
        with self._lock:
            self._next, self._suppressed = 0.0, 0


_limiter = _LogLimiter()


def note_outage(exc: BaseException, *, request: HttpRequest | None) -> None:
    """Log the outage once per interval: the error class and the driver's first line, never a traceback."""
    failures = _limiter.take()
    if failures is None:
        return
    cause = next((e.__cause__ for e in _chain(exc) if e.__cause__ is not None), None) or exc
    detail = (str(cause).strip().splitlines() or [""])[0][:300]
    logger.warning(
        "uaa.database_unavailable",
        extra={
            "error_class": f"{type(cause).__module__}.{type(cause).__name__}",
            "detail": detail,
            "failures": failures,
            "interval": settings.UAA_UNAVAILABLE_LOG_INTERVAL,
            "request_id": getattr(request, "request_id", None),
        },
    )


def mark_unavailable(response: HttpResponse) -> HttpResponse:
    """A 503 for an outage: Retry-After; already logged (``note_outage``), so Django does not log it again."""
    response["Retry-After"] = str(retry_after())
    response.uaa_database_unavailable = True  # type: ignore[attr-defined]
    response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log.log_response
    return response


def is_outage_response(response: HttpResponse) -> bool:
    return bool(getattr(response, "uaa_database_unavailable", False))


# --- the last good copy of the public documents -------------------------------------------------------
SKIPPED_HEADERS = frozenset({"set-cookie", "x-request-id", "date", "content-length", "age"})


@dataclass(frozen=True)
class Copy:
    stored_at: float  # time.time()
    content: bytes
    headers: tuple[tuple[str, str], ...]
    generation: str | None = None  # the document's generation when it was read (None: not generational)

    def etag(self) -> str | None:
        return next((value for name, value in self.headers if name.lower() == "etag"), None)


class LastGoodCopies:
    """The last 200 answer of each public document, per process and in Django's cache (shared by the
    processes when the cache is Redis, as in docker-compose.yml).

    A *generational* document (the JWKS) also has a generation in the shared cache, which ``invalidate``
    moves when what it lists changes (a signing key revoked, rotated, published, expired). A copy is tagged
    with the generation read *before* the document was read from the database, so a copy read before a
    change can never carry the generation after it; a copy is served only while its generation is the
    current one. When the shared cache cannot tell (unreachable, or the generation evicted), a copy is
    served only while it is younger than ``UAA_JWKS_MAX_AGE``: clients may hold a copy that old anyway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._copies: dict[str, Copy] = {}
        self._cached_at: dict[str, float] = {}
        self._read: dict[str, tuple[str, float]] = {}  # path -> (generation, time.monotonic() of its read)

    @staticmethod
    def _key(path: str) -> str:
        return f"uaa:last-good:{path}"

    @staticmethod
    def _generation_key(path: str) -> str:
        return f"uaa:last-good-generation:{path}"

    def generation(self, path: str, *, recent: bool = False) -> str | None:
        """The current generation of ``path`` (started when there is none yet); None when the shared cache
        cannot be asked. Read it before reading the document, and pass it to ``remember``.

        ``recent``: the value this process read within the last ``GENERATION_REREAD`` seconds will do (the
        JWKS endpoint's tag, uaa/middleware.py). Any value read before the document is a safe tag: a copy
        is never tagged newer than what it holds, and one tagged older is only unservable; ``remember``
        asks the shared cache itself before it replaces the shared copy."""
        if recent:
            with self._lock:
                held = self._read.get(path)
            if held is not None and time.monotonic() - held[1] < GENERATION_REREAD:
                return held[0]
        read_at = time.monotonic()
        key = self._generation_key(path)
        try:
            current = cache.get(key)
            if current is None:
                cache.add(key, uuid.uuid4().hex, timeout=None)
                current = cache.get(key)
        except Exception:  # the cache is a second copy, never a reason to fail
            logger.debug("uaa.last_good_generation_unreadable", exc_info=True)
            return None
        if current is None:
            return None
        with self._lock:
            self._read[path] = (str(current), read_at)
        return str(current)

    def remember(
        self, path: str, response: HttpResponse, *, generation: str | None = None, generational: bool = False
    ) -> None:
        """Keep ``response`` as the copy of ``path``. ``generational``: tagged with ``generation``, read
        before the document; if the shared copy is due to be replaced, and the generation has moved on
        since (a key changed while the document was made: that change's own replacement, made after its
        commit, is the copy to keep), nothing is kept."""
        headers = tuple((n, v) for n, v in response.items() if n.lower() not in SKIPPED_HEADERS)
        copy = Copy(
            stored_at=time.time(), content=bytes(response.content), headers=headers, generation=generation
        )
        with self._lock:
            previous = self._copies.get(path)
            changed = (
                previous is None or previous.content != copy.content or previous.generation != generation
            )
            due = changed or copy.stored_at - self._cached_at.get(path, 0.0) > CACHE_REFRESH
        if due and generational and (generation is None or self.generation(path) != generation):
            return
        with self._lock:
            self._copies[path] = copy
            if due:
                self._cached_at[path] = copy.stored_at
        if due:
            try:
                cache.set(self._key(path), copy, timeout=settings.UAA_LAST_GOOD_MAX_AGE)
            except Exception:  # the cache is a second copy, never a reason to fail
                logger.debug("uaa.last_good_copy_not_cached", exc_info=True)

    def invalidate(self, path: str, *, replacement: HttpResponse | None) -> None:
        """What ``path`` lists changed (its transaction committed): every copy made before is unservable
        from now on, in every process that shares the cache; ``replacement`` (the document as it is now,
        read after the commit) becomes the shared copy, so an outage that starts now still has one."""
        generation = uuid.uuid4().hex
        with self._lock:
            self._copies.pop(path, None)
            self._cached_at.pop(path, None)
            self._read.pop(path, None)
        try:
            cache.set(self._generation_key(path), generation, timeout=None)
            if replacement is None:
                cache.delete(self._key(path))
        except Exception:
            logger.warning("uaa.last_good_copy_not_invalidated", extra={"path": path}, exc_info=True)
            return
        with self._lock:
            self._read[path] = (generation, time.monotonic())
        if replacement is not None:
            self.remember(path, replacement, generation=generation, generational=True)

    def _servable(self, copy: Copy, *, generational: bool, current: str | None, now: float) -> bool:
        age = now - copy.stored_at
        if age > settings.UAA_LAST_GOOD_MAX_AGE:
            return False
        if not generational:
            return True
        if current is None:  # the shared cache cannot say whether the keys changed since
            return age <= settings.UAA_JWKS_MAX_AGE
        return copy.generation == current

    def recall(self, path: str, *, generational: bool = False) -> Copy | None:
        """The newest servable copy, per process or shared (``_servable``); else None."""
        with self._lock:
            local = self._copies.get(path)
        current: str | None = None
        try:
            shared = cache.get(self._key(path))
            if generational:
                found = cache.get(self._generation_key(path))
                current = str(found) if found is not None else None
        except Exception:  # an unreachable cache has no copy, and cannot say which generation is current
            shared = None
        now = time.time()
        candidates = [
            c
            for c in (local, shared)
            if isinstance(c, Copy) and self._servable(c, generational=generational, current=current, now=now)
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda c: c.stored_at)

    def response(self, path: str, request: HttpRequest, *, generational: bool = False) -> HttpResponse | None:
        """The copy as a response (a 304 when ``If-None-Match`` names its ETag), marked with its ``Age``."""
        copy = self.recall(path, generational=generational)
        if copy is None:
            return None
        etag = copy.etag()
        tags = parse_etags(request.headers.get("If-None-Match", ""))
        if etag and ("*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)):
            response: HttpResponse = HttpResponseNotModified()
        else:
            response = HttpResponse(copy.content)
        for name, value in copy.headers:
            response[name] = value
        response["Cache-Control"] = f"public, max-age={COPY_MAX_AGE}"
        response["Age"] = str(max(0, int(time.time() - copy.stored_at)))  # RFC 9111 §5.1
        return response

    def clear(self) -> None:
        with self._lock:
            paths = list(self._copies)
            self._copies.clear()
            self._cached_at.clear()
            self._read.clear()
        for path in paths:
            try:
                cache.delete_many([self._key(path), self._generation_key(path)])
            except Exception:
                logger.debug("uaa.last_good_copy_not_deleted", exc_info=True)


last_good_copies = LastGoodCopies()
