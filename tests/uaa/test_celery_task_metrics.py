"""Celery task outcomes at /metrics (issue 13 item 2), from a real worker through a real broker.

The worker is a process (under docker-compose a container) of its own: it writes its metrics into its own
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, emptied by its command at every start), and web's
/metrics merges that directory in (``UAA_METRICS_EXTRA_DIRS``; docker-compose.yml shares it as a volume,
deploy/systemd as /var/lib/uaa/metrics-worker). Here the compose commands run as they are written: the
worker (prefork, one child), ``celery call`` sending messages through the broker (the filesystem broker,
or Redis with ``UAA_TEST_BROKER_URL``), and web's gunicorn answering /metrics.

Attacker for the labels: whoever can put a message on the broker, naming any task it likes: the name
never becomes a label value (``other``).
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.uaa import live
from tests.uaa.live import processes
from tests.uaa.test_metrics import samples, samples_of
from uaa import metrics

__all__ = ["processes"]  # a fixture

WORKER_DIR = "/var/lib/uaa/metrics-worker"  # where docker-compose.yml and the worker unit put it
TASKS_TOTAL = "uaa_celery_tasks_total"
CLEANUP = "tokens.clear_expired_tokens"
FORGED = "attacker.chosen-name-7f3a"


def outcome(task: str, result: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (TASKS_TOTAL, (("outcome", result), ("task", task)))


def runs(task: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("uaa_celery_task_duration_seconds_count", (("task", task),))


def test_the_bounded_task_names_are_the_apps_own_tasks() -> None:
    """A task added to tokens/ or uaa/ without its name in uaa.metrics.TASKS would count as ``other``."""
    import accounts.tasks  # noqa: F401
    import tokens.tasks  # noqa: F401
    import uaa.oauth.tasks  # noqa: F401
    from uaa.celery import app

    own = {
        name
        for name, task in app.tasks.items()
        if type(task).__module__.split(".")[0] in {"uaa", "accounts", "tokens"}  # the function's module
    }
    assert own == metrics.TASKS


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own: a message left on a shared Redis database by an earlier, interrupted run
    would be counted too. Its keys are removed afterwards."""
    name = f"uaa-test-metrics-{uuid.uuid4().hex[:12]}"
    yield name
    broker = os.environ.get("UAA_TEST_BROKER_URL", "")
    if broker.startswith("redis"):
        import redis

        connection = redis.Redis.from_url(broker)
        connection.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")
        connection.zrem("_kombu.binding_deadlines", name)
        connection.close()


def _compose_worker(directory: Path, queue: str) -> tuple[list[str], dict[str, str]]:
    """docker-compose.yml's worker command and its metrics variable, the volume's path moved here, one
    child, consuming only ``queue``."""
    environment = live.COMPOSE["services"]["worker"]["environment"]
    assert environment["PROMETHEUS_MULTIPROC_DIR"] == WORKER_DIR
    assert "PROMETHEUS_MULTIPROC_DIR" not in live.COMPOSE["services"]["web"]["environment"]
    command = [
        part.replace(WORKER_DIR, str(directory)).replace("--concurrency=2", "--concurrency=1")
        for part in live.compose_command("worker")
    ]
    command[-1] += f" -Q {queue}"  # sh -c "rm ... && exec celery -A uaa worker ..."
    return command, {"PROMETHEUS_MULTIPROC_DIR": str(directory)}


def _stale_worker_file(directory: Path) -> None:
    """What the worker's previous run left in the volume: 1000 successful cleanups."""
    script = (
        "from prometheus_client import Counter;"
        f"Counter('{TASKS_TOTAL}', 'x', ['task', 'outcome']).labels('{CLEANUP}', 'succeeded').inc(1000)"
    )
    subprocess.run(
        [str(live.BIN / "python"), "-c", script],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": ""},
        check=True,
    )


def _send(env: dict[str, str], queue: str, *args: str) -> None:
    """``celery call``: a message on the broker, as beat or an operator sends it."""
    result = subprocess.run(
        [str(live.BIN / "celery"), "-A", "uaa", "call", "--queue", queue, *args],
        cwd=live.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _worker_samples(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples_of(MultiProcessCollector.merge([str(p) for p in directory.glob("*.db")], accumulate=True))


def test_a_real_workers_task_outcomes_reach_webs_metrics(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], queue: str
) -> None:
    """A cleanup that fails (no tables yet) is retried three times (its max_retries) and then failed; after
    the migrations the same task succeeds; a message that expired in the queue is revoked; a message naming
    a task nobody registered is rejected as ``other``. Web's /metrics shows each, the worker's previous run
    is gone, and the forged name appears nowhere."""
    worker_dir = tmp_path / "metrics-worker"
    worker_dir.mkdir()
    _stale_worker_file(worker_dir)
    env = live.base_env(tmp_path)  # a fresh SQLite file: nothing migrated yet
    command, worker_env = _compose_worker(worker_dir, queue)
    worker_log = tmp_path / "worker.log"
    processes.append(live.start(command, {**env, **worker_env}, worker_log))
    live.wait_for(lambda: "ready." in worker_log.read_text(errors="replace"), "the worker", worker_log)
    assert outcome(CLEANUP, "succeeded") not in _worker_samples(worker_dir)  # emptied at start

    _send(env, queue, CLEANUP)
    live.wait_for(
        lambda: _worker_samples(worker_dir).get(outcome(CLEANUP, "failed")) == 1,
        "the cleanup to fail after its retries",
        worker_log,
        timeout=90,
    )

    # web as docker-compose.yml runs it (migrate, bootstrap, gunicorn), the worker's directory merged in.
    web_env = {
        **env,
        "UAA_METRICS_EXTRA_DIRS": live.COMPOSE["services"]["web"]["environment"][
            "UAA_METRICS_EXTRA_DIRS"
        ].replace(WORKER_DIR, str(worker_dir)),
    }
    assert web_env["UAA_METRICS_EXTRA_DIRS"] == str(worker_dir)
    port = live.free_port()
    base = f"http://127.0.0.1:{port}"
    web_log = tmp_path / "web.log"
    processes.append(live.start(live.web_script(port, workers=1), web_env, web_log))
    live.wait_for(live.healthy(base), "gunicorn", web_log, timeout=120)

    _send(env, queue, CLEANUP)
    _send(env, queue, CLEANUP, "--expires", "2000-01-01T00:00:00+00:00")
    _send(env, queue, FORGED)

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = live.call(f"{base}/metrics")
        assert answer.status == 200, answer.body[:300]
        return samples(answer.body)

    def all_counted() -> bool:
        found = scraped()
        return bool(
            found.get(outcome(CLEANUP, "succeeded")) == 1
            and found.get(outcome(CLEANUP, "revoked")) == 1
            and found.get(outcome(metrics.OTHER, "rejected")) == 1
        )

    live.wait_for(all_counted, "the outcomes at /metrics", worker_log)
    found = scraped()
    assert found[outcome(CLEANUP, "failed")] == 1
    assert found[outcome(CLEANUP, "retried")] == 3
    assert found[runs(CLEANUP)] == 5  # four failed runs and the successful one; the expired one never ran
    body = live.call(f"{base}/metrics").body.decode()
    assert FORGED not in body
    assert "UAA_METRICS_EXTRA_DIRS" not in body and str(worker_dir) not in body
    outcomes = {dict(labels)["outcome"] for (name, labels) in found if name == TASKS_TOTAL}
    assert outcomes <= {"succeeded", "failed", "retried", "revoked", "rejected", "internal_error"}


@pytest.mark.django_db
def test_a_task_outside_the_apps_own_counts_as_other_and_is_timed() -> None:
    from celery import shared_task

    @shared_task(name="tests.celery_metrics_probe")
    def probe(fail: bool) -> None:
        if fail:
            raise ValueError("boom")

    before = {k: v for k, v in samples(_process_exposition()).items() if k[0].startswith("uaa_celery")}
    probe.apply(args=[False])
    probe.apply(args=[True])
    after = samples(_process_exposition())
    assert (
        after[outcome(metrics.OTHER, "succeeded")] == before.get(outcome(metrics.OTHER, "succeeded"), 0) + 1
    )
    assert after[outcome(metrics.OTHER, "failed")] == before.get(outcome(metrics.OTHER, "failed"), 0) + 1
    assert after[runs(metrics.OTHER)] == before.get(runs(metrics.OTHER), 0) + 2
    assert not [key for key in after if "tests.celery_metrics_probe" in str(key)]


def _process_exposition() -> bytes:
    from django.test import Client

    response = Client().get("/metrics")
    assert response.status_code == 200
    return bytes(response.content)


def test_every_metric_is_listed_in_the_operations_guide() -> None:
    """docs/operations.md's Metrics table names every metric uaa/metrics.py defines, and no other."""
    code = set(re.findall(r'"(uaa_[a-z_]+)"', (live.ROOT / "uaa" / "metrics.py").read_text()))
    text = (live.ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n### Alerts worth setting\n", 1)[0]
    listed = set(re.findall(r"^\| `(uaa_[a-z_]+)` \|", section, flags=re.M))
    assert code == listed
