"""Real processes for tests: the commands docker-compose.yml runs, an environment for them, free ports.

Used by tests/uaa/test_processes.py, test_database_outage_live.py, test_slow_clients.py, test_scale_out.py
and the certification OP. Every command is read from docker-compose.yml, so that the file and what is tested
cannot drift apart.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TIMEOUT = 60
KEK = "4zCwW7m1tZrJq0q2pQ7y3v8Lk6bV5nX2aS9dF1gH0jE"


def compose_command(service: str) -> list[str]:
    command = COMPOSE["services"][service]["command"]
    parts = command if isinstance(command, list) else shlex.split(command)
    return [part.replace("$$", "$") for part in parts]  # compose's escape: "$$" reaches the container as "$"


def web_script(port: int, *, workers: int = 2) -> list[str]:
    """The web service's command (migrate, bootstrap, gunicorn) on 127.0.0.1:``port`` with fewer workers."""
    shell, flag, script = compose_command("web")
    assert "0.0.0.0:8000" in script and "--workers 4" in script, script
    script = script.replace("0.0.0.0:8000", f"127.0.0.1:{port}").replace(
        "--workers 4", f"--workers {workers}"
    )
    return [shell, flag, script]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(tmp_path: Path) -> dict[str, str]:
    """A production-mode environment (no DEBUG) with its own SQLite file, broker and var directory."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "CELERY_", "REDIS_URL", "UAA_", "DEBUG", "CACHE_URL"))
    }
    broker = os.environ.get("UAA_TEST_BROKER_URL", "filesystem://")
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        SECRET_KEY="process-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        UAA_KEK=KEK,
        UAA_ISSUER="http://127.0.0.1",
        UAA_ALLOW_HTTP_ISSUER="true",  # a loopback issuer without TLS (uaa/checks.py)
        UAA_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'uaa.sqlite3'}",
        CELERY_BROKER_URL=broker,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        UAA_LOG_FORMAT="plain",
    )
    (tmp_path / "var" / "broker" / "processed").mkdir(parents=True, exist_ok=True)
    return env


def postgres_server() -> str | None:
    """``postgres://user@host:port``: the server ``DATABASE_URL`` names, or ``None`` if not PostgreSQL."""
    url = os.environ.get("DATABASE_URL", "")
    return url.rsplit("/", 1)[0] if url.startswith(("postgres://", "postgresql://")) else None


@contextmanager
def postgres_database(
    server: str, *, prefix: str = "uaa_live"
) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A fresh database ``<prefix>_<random>`` on ``server``; yields its URL, ``down()`` (no connections
    allowed, every backend terminated: an outage) and ``up()``; dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin_url = server.replace("postgres://", "postgresql://", 1) + "/postgres"
    admin = psycopg.connect(admin_url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')

    def down() -> None:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    def up() -> None:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    try:
        yield f"{server}/{name}", down, up
    finally:
        up()
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def manage(env: dict[str, str], *args: str, timeout: float = TIMEOUT) -> str:
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, so that ``stop`` reaches what it starts in turn (the web
    command is ``sh -c "migrate && bootstrap && gunicorn ..."``: stopping sh alone would orphan gunicorn)."""
    handle = log.open("wb")
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # start_new_session: the group id is the leader's pid
    except ProcessLookupError:
        pass


def stop(started: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process group; SIGKILL to those still there after 15 seconds."""
    for process in started:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in started:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process, signal.SIGKILL)  # gunicorn's workers, if the shell went first
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; their process groups are stopped at the end, whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop(started)


def wait_for(predicate: Callable[[], bool], what: str, log: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text(errors='replace')[-3000:]}")


def healthy(base: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/healthz", timeout=2).status == 200
        except OSError:
            return False

    return check


@pytest.fixture
def process_env(tmp_path: Path) -> dict[str, str]:
    return base_env(tmp_path)


class Answer:
    """An HTTP answer, whatever its status (urllib raises for 4xx/5xx)."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(url: str, *, data: dict[str, str] | None = None, timeout: float = 10, **headers: str) -> Answer:
    body = urlencode(data).encode() if data is not None else None
    if body is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def create_service_client(env: dict[str, str]) -> dict[str, str]:
    """client_id and client_secret of a new client_credentials client (``manage.py create_client``)."""
    return json.loads(
        manage(
            env,
            *("create_client", "--name", "svc", "--grant", "client_credentials"),
            *("--audience", "https://api", "--json"),
        )
    )
