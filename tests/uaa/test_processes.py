"""The processes docker-compose.yml starts (gunicorn, Celery worker, Celery beat), run here for real.

Each test reads its command from docker-compose.yml, so the file and what is tested cannot drift
apart. They use their own SQLite file and a real broker: Redis when ``UAA_TEST_BROKER_URL`` names
one (CI sets ``redis://127.0.0.1:6379/15``), otherwise the embedded filesystem broker.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TIMEOUT = 60


def compose_command(service: str) -> list[str]:
    command = COMPOSE["services"][service]["command"]
    return command if isinstance(command, list) else shlex.split(command)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def process_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "CELERY_", "REDIS_URL", "UAA_", "DEBUG"))
    }
    broker = os.environ.get("UAA_TEST_BROKER_URL", "filesystem://")
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        SECRET_KEY="process-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        UAA_KEK="4zCwW7m1tZrJq0q2pQ7y3v8Lk6bV5nX2aS9dF1gH0jE",
        UAA_ISSUER="http://127.0.0.1",
        UAA_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'uaa.sqlite3'}",
        CELERY_BROKER_URL=broker,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        UAA_LOG_FORMAT="plain",
    )
    (tmp_path / "var" / "broker" / "processed").mkdir(parents=True)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(predicate, what: str, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")


def test_the_web_service_command_migrates_bootstraps_and_serves_tokens_with_gunicorn(
    process_env, processes, tmp_path
):
    port = free_port()
    env = {**process_env, "UAA_ISSUER": f"http://127.0.0.1:{port}"}
    shell, flag, script = compose_command("web")
    script = script.replace("0.0.0.0:8000", f"127.0.0.1:{port}").replace("--workers 4", "--workers 2")
    log = tmp_path / "web.log"
    processes.append(start([shell, flag, script], env, log))
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/healthz", timeout=2).status == 200
        except OSError:
            return False

    wait_for(healthy, "gunicorn /healthz", log)
    discovery = json.load(urllib.request.urlopen(f"{base}/.well-known/openid-configuration"))
    assert discovery["issuer"] == base
    jwks = json.load(urllib.request.urlopen(discovery["jwks_uri"]))
    assert sorted(key["alg"] for key in jwks["keys"]) == ["ES256", "EdDSA", "RS256"]

    credentials = json.loads(
        manage(
            env,
            "create_client",
            "--name",
            "svc",
            "--grant",
            "client_credentials",
            "--audience",
            "https://api",
            "--json",
        )
    )
    body = urlencode({"grant_type": "client_credentials", **credentials})
    request = urllib.request.Request(
        discovery["token_endpoint"],
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.headers["Cache-Control"] == "no-store"
        token = json.load(response)
    assert token["token_type"] == "Bearer"
    assert token["access_token"].count(".") == 2


def _expired_redeemed_code(database: Path) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO oauth_redeemedcode (code_checksum, client_id, access_token_checksum, amr, acr,"
            " session_id, redeemed_at, expires)"
            " VALUES ('c0ffee', 'x', '', '[]', '', '', '2000-01-01 00:00:00', '2000-01-02 00:00:00')"
        )


def _run_every_second(database: Path) -> None:
    """What an operator does in Django admin: make both scheduled tasks run every second."""
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO django_celery_beat_intervalschedule (every, period) VALUES (1, 'seconds')"
        )
        interval = connection.execute("SELECT max(id) FROM django_celery_beat_intervalschedule").fetchone()[0]
        connection.execute("UPDATE django_celery_beat_periodictask SET interval_id = ?", (interval,))
        connection.execute("UPDATE django_celery_beat_periodictasks SET last_update = datetime('now')")


def _active_keys(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT algorithm FROM tokens_signingkey WHERE state = 'active'").fetchall()
    return sorted(row[0] for row in rows)


def _redeemed_codes(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM oauth_redeemedcode").fetchone()[0])


def test_celery_beat_and_worker_commands_run_the_scheduled_tasks_through_the_broker(
    process_env, processes, tmp_path
):
    """Beat reads the schedule from the database, the broker carries the tasks, the worker runs them:
    the key rotation heals a key table with no key, and the cleanup removes an expired code record."""
    manage(process_env, "migrate", "--noinput")
    database = tmp_path / "uaa.sqlite3"
    _expired_redeemed_code(database)
    _run_every_second(database)
    assert _redeemed_codes(database) == 1
    assert _active_keys(database) == []

    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    worker = [part.replace("--concurrency=2", "--concurrency=1") for part in compose_command("worker")]
    beat = [
        part.replace("/tmp/celerybeat-schedule", str(tmp_path / "beat-schedule"))
        for part in compose_command("beat")
    ]
    processes.append(start(worker, process_env, worker_log))
    processes.append(start(beat, process_env, beat_log))

    wait_for(lambda: _redeemed_codes(database) == 0, "beat → broker → worker → cleanup", worker_log)
    every_algorithm = ["ES256", "EdDSA", "RS256"]
    wait_for(
        lambda: _active_keys(database) == every_algorithm, "beat → broker → worker → rotation", worker_log
    )
    assert "tokens.clear_expired_tokens" in beat_log.read_text()
    assert "tokens.rotate_signing_keys" in beat_log.read_text()
