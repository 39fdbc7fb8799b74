"""Health: ``/healthz`` (the process answers) and ``/readyz`` (it can do its job), for load balancers,
orchestrators and the compose healthchecks.

``/readyz`` runs each check and answers JSON naming them. A *critical* check failing (the database, the
migrations, a usable signing key) makes it ``503 {"status": "not ready"}``: this node cannot issue tokens,
take it out of rotation. A *degraded* one (the broker, the audit sealer) is ``200 {"status": "degraded"}``:
tokens are still issued — the ledger records every grant in the database and the sealer catches up — so
taking every node out of rotation over a broker outage would turn it into a full one. Details name the
failure in a few words and never carry an exception's text (host names, SQL, paths stay in the logs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from tokens.keys import proven_key
from tokens.ledger.sealing import sealing_problem
from tokens.models import LedgerRecord, SigningKey

logger = logging.getLogger(__name__)

BROKER_TIMEOUT = 2.0  # seconds: a probe must answer well within an orchestrator's timeout


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str


@dataclass(frozen=True)
class Check:
    name: str
    critical: bool
    run: Callable[[], Result]


def check_database() -> Result:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.warning("uaa.readyz_database_unreachable", exc_info=True)
        return Result(False, "unreachable")
    return Result(True, connection.vendor)


_migrated = False  # once every migration is applied it stays so for this process: checked until then


def check_migrations() -> Result:
    global _migrated
    if not _migrated:
        try:
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError:
            return Result(False, "cannot read the migration history")
        if pending:
            return Result(False, f"{len(pending)} migrations not applied")
        _migrated = True
    return Result(True, "applied")


def check_signing_keys() -> Result:
    """The access-token algorithm's active key exists, and every active key opens under this KEK and
    proves to be what its row says (tokens/keys.py): a node with the wrong ``UAA_KEK`` is not ready."""
    try:
        active = list(SigningKey.objects.active())
    except DatabaseError:
        return Result(False, "cannot read the signing keys")
    unusable = sorted(key.algorithm for key in active if proven_key(key) is None)
    if unusable:
        return Result(False, f"active {', '.join(unusable)} key cannot be used with this UAA_KEK")
    required = settings.UAA_ACCESS_TOKEN_ALG
    if required not in {key.algorithm for key in active}:
        return Result(False, f"no active {required} key (run manage.py bootstrap)")
    return Result(True, ", ".join(sorted(key.algorithm for key in active)))


def check_broker() -> Result:
    url = settings.CELERY_BROKER_URL
    if url.startswith("memory://"):
        return Result(True, "in-process")
    if url.startswith("filesystem://"):
        folders = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        missing = [
            name for name in ("data_folder_in", "data_folder_out") if not Path(str(folders[name])).is_dir()
        ]
        return Result(not missing, "filesystem" if not missing else "broker directory missing")
    from kombu import Connection  # kombu comes with Celery

    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)
    except Exception:  # kombu raises the transport's own errors (OperationalError, socket, redis, amqp)
        logger.warning("uaa.readyz_broker_unreachable", exc_info=True)
        return Result(False, "unreachable")
    return Result(True, url.split(":", 1)[0])


def check_sealing() -> Result:
    """The sealer would seal (no refusal pending), and no record waits longer than ``UAA_READY_SEAL_LAG``."""
    now = timezone.now()
    try:
        problem = sealing_problem(now=now)
        oldest = LedgerRecord.objects.unsealed().aggregate(oldest=Min("at"))["oldest"]
    except DatabaseError:
        return Result(False, "cannot read the ledger")
    if problem:
        return Result(False, "sealing refused (see tokens.ledger_* in the logs and the admin's audit page)")
    lag = timedelta(seconds=settings.UAA_READY_SEAL_LAG)
    if oldest is not None and now - oldest > lag:
        return Result(False, f"records unsealed for more than {settings.UAA_READY_SEAL_LAG} s")
    return Result(True, "sealing")


CHECKS = (
    Check("database", critical=True, run=check_database),
    Check("migrations", critical=True, run=check_migrations),
    Check("signing_keys", critical=True, run=check_signing_keys),
    Check("broker", critical=False, run=check_broker),
    Check("sealing", critical=False, run=check_sealing),
)


_last: tuple[float, int, dict[str, object]] | None = None  # (monotonic time, status, body) of the last run
_lock = threading.Lock()


def readiness() -> tuple[int, dict[str, object]]:
    """(HTTP status, body), computed at most once per ``UAA_READY_CACHE_SECONDS`` per process: a probe, or
    anyone who can reach ``/readyz``, cannot make the checks (the sealer's is not free) run per request."""
    global _last
    with _lock:
        cached = _last
        if cached is not None and time.monotonic() - cached[0] < settings.UAA_READY_CACHE_SECONDS:
            return cached[1], cached[2]
        code, body = _run_checks()
        _last = (time.monotonic(), code, body)
        return code, body


def _run_checks() -> tuple[int, dict[str, object]]:
    """The database is checked first; what needs it is not run once it failed."""
    results: dict[str, dict[str, object]] = {}
    database_down = False
    for check in CHECKS:
        if database_down and check.name in {"migrations", "signing_keys", "sealing"}:
            result = Result(False, "database unreachable")
        else:
            try:
                result = check.run()
            except Exception:  # a check's own bug must not make the probe a 500
                logger.exception("uaa.readyz_check_failed", extra={"check": check.name})
                result = Result(False, "check failed")
        if check.name == "database" and not result.ok:
            database_down = True
        results[check.name] = {"ok": result.ok, "critical": check.critical, "detail": result.detail}
    critical_failed = any(not r["ok"] and r["critical"] for r in results.values())
    degraded = any(not r["ok"] for r in results.values())
    status = "not ready" if critical_failed else "degraded" if degraded else "ready"
    code = HTTPStatus.SERVICE_UNAVAILABLE if critical_failed else HTTPStatus.OK
    return code, {"status": status, "checks": results}


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and answering; it looks at nothing else (liveness)."""
    return HttpResponse("ok", content_type="text/plain")


@never_cache
@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    code, body = readiness()
    return JsonResponse(body, status=code)
