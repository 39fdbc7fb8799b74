"""Prometheus metrics (the text exposition format, prometheus-client): what is counted, and the scrape.

Counters and histograms are recorded where things happen — one call per instrumentation point (the
request middleware below, ``uaa/oauth/audit.py`` for tokens, ``uaa/oauth/clientauth.py`` for failed client
authentications) or by receivers of signals sent below this layer (Django's ``user_logged_in`` and
``user_login_failed``, ``accounts.signals``, Celery's ``task_*``). Gauges about the database (the signing
keys, the audit ledger) are computed at scrape time by ``DatabaseCollector``, never kept in a process.

Every label value comes from a fixed set or from the code (a URL pattern's name, a task's name), never
from what a client sent: a random path is ``endpoint="unmatched"``, a random client_id names no label at
all. Unknown values become ``other``.

Several gunicorn workers: prometheus-client's multiprocess mode, chosen by ``PROMETHEUS_MULTIPROC_DIR``
in the environment before the process starts (an empty directory per deployment, wiped at start:
``uaa/gunicorn_config.py`` does it for gunicorn, and marks a dead worker's files). The scrape merges the
files of that directory and of ``UAA_METRICS_EXTRA_DIRS`` (a Celery worker's own directory). Without
``PROMETHEUS_MULTIPROC_DIR`` (``make run``, runserver) the process's own registry is served.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import DatabaseError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from accounts import signals as account_signals

logger = logging.getLogger(__name__)
disable_created_metrics()  # no *_created series: a counter's start time is not worth a series per label set

OTHER = "other"

HTTP_REQUESTS = Counter(
    "uaa_http_requests_total",
    "HTTP requests answered, by URL pattern name and status class.",
    ["endpoint", "status"],
)
HTTP_DURATION = Histogram(
    "uaa_http_request_duration_seconds",
    "Time to answer an HTTP request (the whole middleware chain), by URL pattern name.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TOKENS_ISSUED = Counter(
    "uaa_tokens_issued_total", "Token responses of the token endpoint, by grant type.", ["grant_type"]
)
CLIENT_AUTH_FAILURES = Counter(
    "uaa_client_authentication_failures_total",
    "Failed (or throttled) client authentications at the token, revocation and introspection endpoints.",
    ["method", "reason"],
)
RATE_LIMITED = Counter(
    "uaa_rate_limited_total",
    "Requests refused with 429 by a rate limit (uaa/oauth/ratelimit.py), by endpoint and limit (client, ip).",
    ["endpoint", "limit"],
)
RATE_LIMIT_UNAVAILABLE = Counter(
    "uaa_ratelimit_unavailable_total",
    "Requests served without a rate-limit check because the counters (Redis) could not be reached.",
    ["endpoint"],
)
SIGN_INS = Counter("uaa_sign_ins_total", "Completed sign-ins (a session started).")
SIGN_IN_FAILURES = Counter(
    "uaa_sign_in_failures_total",
    "Failed sign-in steps: a wrong password, or a wrong second factor (otp: TOTP or backup code; hwk: key).",
    ["factor"],
)
LOCKOUTS = Counter(
    "uaa_lockouts_total",
    "Throttle locks started (accounts/throttling.py), by what was locked.",
    ["scope"],
)
CELERY_TASKS = Counter(
    "uaa_celery_tasks_total",
    "Celery task outcomes in the worker, by UAA task name (any other task: other).",
    ["task", "outcome"],
)
CELERY_TASK_DURATION = Histogram(
    "uaa_celery_task_duration_seconds",
    "Time one run of a Celery task took in the worker (each retry is a run of its own), by UAA task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

GRANT_TYPES = frozenset(
    {
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "password",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    }
)
AUTH_METHODS = frozenset({"client_secret_basic", "client_secret_post", "private_key_jwt", "none"})
# uaa/oauth/clientauth.py's fixed reasons (tests/uaa/test_metrics.py checks that each has its label here);
# any other reason is an RFC 7523 assertion's rejection.
AUTH_REASONS = {
    "the Basic credentials are malformed": "malformed_credentials",
    "no client has this client_id": "unknown_client",
    "the client secret is wrong": "wrong_secret",
    "no client credentials were sent": "no_credentials",
    "the client authenticates with private_key_jwt": "wrong_method",
    "client_id names another client than the credentials": "client_id_mismatch",
}
LOCK_SCOPES = {  # accounts/throttling.py's key prefixes
    "acct": "account",
    "ip": "ip",
    "client": "client",
    "client-at": "client_address",
    "client-ip": "client_ip",
}
FACTORS = frozenset({"password", "otp", "hwk"})
RATE_LIMITED_ENDPOINTS = frozenset({"token", "introspection", "revocation", "userinfo"})
RATE_LIMITS = frozenset({"client", "ip"})
STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
# The Celery tasks of tokens/tasks.py, uaa/oauth/tasks.py and accounts/tasks.py
# (tests/uaa/test_celery_task_metrics.py checks the list against the app's registry): a message naming
# anything else counts as ``other``.
TASKS = frozenset(
    {
        "tokens.rotate_signing_keys",
        "tokens.seal_audit_ledger",
        "tokens.clear_expired_tokens",
        "accounts.send_mail",
    }
)


def _bounded(value: object, allowed: Iterable[str]) -> str:
    text = str(value or "")
    return text if text in allowed else OTHER


# --- recording ------------------------------------------------------------------------------------------
def endpoint_of(request: HttpRequest) -> str:
    """The URL pattern's name (``oauth:token``), never the path: ``unmatched`` when nothing matched."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return str(match.view_name or "unnamed")


class MetricsMiddleware:
    """Counts and times every response; first in MIDDLEWARE, so it sees what the others answer too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        endpoint = endpoint_of(request)
        status = STATUS_CLASSES.get(response.status_code // 100, OTHER)
        HTTP_REQUESTS.labels(endpoint=endpoint, status=status).inc()
        HTTP_DURATION.labels(endpoint=endpoint).observe(time.perf_counter() - started)
        return response


def token_issued(*, grant_type: object) -> None:
    TOKENS_ISSUED.labels(grant_type=_bounded(grant_type, GRANT_TYPES)).inc()


def client_authentication_failed(*, method: object, reason: object) -> None:
    """``reason``: one of clientauth's fixed texts, an assertion's rejection, or ``throttled``."""
    label = "throttled" if reason == "throttled" else AUTH_REASONS.get(str(reason), "")
    if not label:
        label = "assertion_rejected" if method == "private_key_jwt" else OTHER
    CLIENT_AUTH_FAILURES.labels(method=_bounded(method, AUTH_METHODS), reason=label).inc()


def rate_limited(*, endpoint: object, limit: object) -> None:
    RATE_LIMITED.labels(
        endpoint=_bounded(endpoint, RATE_LIMITED_ENDPOINTS), limit=_bounded(limit, RATE_LIMITS)
    ).inc()


def rate_limit_unavailable(*, endpoint: object) -> None:
    RATE_LIMIT_UNAVAILABLE.labels(endpoint=_bounded(endpoint, RATE_LIMITED_ENDPOINTS)).inc()


@receiver(user_logged_in, dispatch_uid="uaa.metrics.sign_in")
def _signed_in(sender: object, **kwargs: Any) -> None:
    SIGN_INS.inc()


@receiver(user_login_failed, dispatch_uid="uaa.metrics.password_failed")
def _password_failed(sender: object, **kwargs: Any) -> None:
    SIGN_IN_FAILURES.labels(factor="password").inc()  # the credentials are never read


@receiver(account_signals.second_factor_failed, dispatch_uid="uaa.metrics.second_factor_failed")
def _second_factor_failed(sender: object, *, method: str, **kwargs: Any) -> None:
    SIGN_IN_FAILURES.labels(factor=_bounded(method, FACTORS - {"password"})).inc()


@receiver(account_signals.lockout_started, dispatch_uid="uaa.metrics.lockout")
def _lockout_started(sender: object, *, key: str, **kwargs: Any) -> None:
    LOCKOUTS.labels(scope=LOCK_SCOPES.get(key.partition(":")[0], OTHER)).inc()


def _task_name(task: object) -> str:
    return _bounded(getattr(task, "name", None), TASKS)


def _task_outcome(task: object, outcome: str) -> None:
    CELERY_TASKS.labels(task=_task_name(task), outcome=outcome).inc()


_task_started: dict[str, float] = {}  # task id -> perf_counter at task_prerun, in the process that runs it


def connect_celery() -> None:
    """Count task outcomes and time task runs in whichever process of the worker sees them.

    A pool child runs the task: ``task_prerun``/``task_postrun`` (the duration of each run, whatever its
    end), ``task_success`` (succeeded), ``task_retry`` (retried: the run ended in a retry, autoretry_for
    included), ``task_failure`` (failed: the last retry is spent, or the task does not retry),
    ``task_internal_error`` (Celery itself failed around the task body). The worker's main process refuses
    messages: ``task_revoked`` (revoked: revoked, terminated or expired before it ran), ``task_unknown``
    and ``task_rejected`` (rejected: a task name no module registered, a message that is no task).
    """
    from celery import signals as celery_signals

    def prerun(sender: object = None, task_id: str | None = None, **kwargs: Any) -> None:
        if task_id:
            _task_started[task_id] = time.perf_counter()

    def postrun(sender: object = None, task_id: str | None = None, **kwargs: Any) -> None:
        started = _task_started.pop(task_id or "", None)
        if started is not None:
            CELERY_TASK_DURATION.labels(task=_task_name(sender)).observe(time.perf_counter() - started)

    def succeeded(sender: object = None, **kwargs: Any) -> None:
        _task_outcome(sender, "succeeded")

    def failed(sender: object = None, **kwargs: Any) -> None:
        _task_outcome(sender, "failed")

    def retried(sender: object = None, **kwargs: Any) -> None:
        _task_outcome(sender, "retried")

    def internal_error(sender: object = None, **kwargs: Any) -> None:
        _task_outcome(sender, "internal_error")

    def revoked(sender: object = None, **kwargs: Any) -> None:
        _task_outcome(sender, "revoked")

    def unknown(sender: object = None, name: object = None, **kwargs: Any) -> None:
        CELERY_TASKS.labels(task=_bounded(name, TASKS), outcome="rejected").inc()

    def rejected(sender: object = None, **kwargs: Any) -> None:
        CELERY_TASKS.labels(task=OTHER, outcome="rejected").inc()

    receivers: list[tuple[Any, Callable[..., None]]] = [
        (celery_signals.task_prerun, prerun),
        (celery_signals.task_postrun, postrun),
        (celery_signals.task_success, succeeded),
        (celery_signals.task_failure, failed),
        (celery_signals.task_retry, retried),
        (celery_signals.task_internal_error, internal_error),
        (celery_signals.task_revoked, revoked),
        (celery_signals.task_unknown, unknown),
        (celery_signals.task_rejected, rejected),
    ]
    for signal, handler in receivers:
        signal.connect(handler, weak=False, dispatch_uid=f"uaa.metrics.{handler.__name__}")


connect_celery()


# --- the scrape -----------------------------------------------------------------------------------------
class DatabaseCollector:
    """Gauges read from the database at scrape time; none when it cannot be read (logged)."""

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except DatabaseError:
            logger.warning("uaa.metrics_database_unavailable")

    def _collect(self) -> list[Metric]:
        from tokens.models import LedgerRecord, SigningKey, TreeHead
        from tokens.rotation import KeyPolicy

        now = timezone.now()
        policy = KeyPolicy.from_settings()
        age = GaugeMetricFamily(
            "uaa_signing_key_age_seconds",
            "Seconds since the active signing key of each algorithm was activated.",
            labels=["algorithm"],
        )
        due = GaugeMetricFamily(
            "uaa_signing_key_next_rotation_seconds",
            "Seconds until the next scheduled rotation may promote the standby key (negative: overdue).",
            labels=["algorithm"],
        )
        for key in SigningKey.objects.active().order_by("algorithm", "-activated_at"):
            activated = key.activated_at or key.created_at
            age.add_metric([key.algorithm], (now - activated).total_seconds())
            rotation = activated + policy.period
            standby = SigningKey.objects.for_algorithm(key.algorithm).next_in_line().first()
            if standby is not None:
                rotation = max(rotation, standby.activate_after or standby.created_at + policy.prepublish)
            due.add_metric([key.algorithm], (rotation - now).total_seconds())
        unsealed = GaugeMetricFamily(
            "uaa_audit_unsealed_records", "Audit ledger records not yet sealed under a signed tree head."
        )
        unsealed.add_metric([], LedgerRecord.objects.unsealed().count())
        metrics: list[Metric] = [age, due, unsealed]
        head = TreeHead.objects.order_by("-tree_size", "-timestamp").values_list("timestamp", flat=True)
        latest = head.first()
        if latest is not None:
            head_age = GaugeMetricFamily(
                "uaa_audit_tree_head_age_seconds", "Seconds since the latest signed tree head's timestamp."
            )
            head_age.add_metric([], now.timestamp() - latest / 1000)
            metrics.append(head_age)
        return metrics


class _ProcessRegistry:
    """This process's own metrics (no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class _Directories:
    """The metrics of every process that wrote into the multiprocess directories, merged."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def collect(self) -> Iterable[Metric]:
        files = [name for path in self.paths for name in sorted(glob.glob(os.path.join(path, "*.db")))]
        return MultiProcessCollector.merge(files, accumulate=True)


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition() -> bytes:
    """The text exposition of every metric (the /metrics body)."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        registry.register(_Directories([directory, *settings.UAA_METRICS_EXTRA_DIRS]))
    else:
        registry.register(_ProcessRegistry())
    registry.register(DatabaseCollector())
    return generate_latest(registry)
