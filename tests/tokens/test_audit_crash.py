"""kill -9 in the middle of a load of grants loses no record of any token a client received.

A real gunicorn serving client-credentials grants from a real PostgreSQL database, and a sealer
sealing in a loop, are both killed with SIGKILL while clients are mid-request. Afterwards every access
token a client holds has its record in the ledger, and `manage.py audit verify` passes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.conf import settings

from tests.uaa.live import BIN, ROOT, TIMEOUT, free_port, wait_for

pytestmark = pytest.mark.postgres

POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
SEALER = """
import django, os
django.setup()
from django.utils import timezone
from tokens.ledger import seal_tree_head
while True:
    seal_tree_head(now=timezone.now())
"""


@pytest.fixture
def crash_database() -> Iterator[str]:
    """A database of its own (the test database lives inside pytest's transactions)."""
    import psycopg

    base = settings.DATABASES["default"]
    name = f"uaa_crash_{uuid.uuid4().hex[:8]}"
    dsn = f"host={base['HOST']} port={base['PORT'] or 5432} user={base['USER']} dbname=postgres"
    if base.get("PASSWORD"):
        dsn += f" password={base['PASSWORD']}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    password = f":{base['PASSWORD']}" if base.get("PASSWORD") else ""
    yield f"postgres://{base['USER']}{password}@{base['HOST']}:{base['PORT'] or 5432}/{name}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.mark.skipif(
    not POSTGRES, reason="the crash test runs against PostgreSQL (DATABASE_URL=postgres://...)"
)
def test_kill_9_during_a_load_of_grants_loses_no_record_of_a_token_a_client_received(
    crash_database, tmp_path
):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "CELERY_", "REDIS_URL", "UAA_", "DEBUG"))
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        SECRET_KEY="crash-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        UAA_KEK="4zCwW7m1tZrJq0q2pQ7y3v8Lk6bV5nX2aS9dF1gH0jE",
        UAA_ISSUER=f"http://127.0.0.1:{port}",
        UAA_ALLOW_HTTP_ISSUER="true",  # a loopback issuer without TLS (uaa/checks.py)
        UAA_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=crash_database,
        CELERY_BROKER_URL="memory://",
        ALLOWED_HOSTS="127.0.0.1",
        UAA_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="uaa.settings",
    )
    assert run_manage(env, "migrate", "--noinput").returncode == 0
    created = run_manage(
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
    assert created.returncode == 0, created.stderr
    credentials = json.loads(created.stdout)
    basic = base64.b64encode(f"{credentials['client_id']}:{credentials['client_secret']}".encode()).decode()

    log = tmp_path / "gunicorn.log"
    with log.open("wb") as handle:
        server = subprocess.Popen(
            [str(BIN / "gunicorn"), "uaa.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "3"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sealer = subprocess.Popen(
            [str(BIN / "python"), "-c", SEALER],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/healthz", timeout=2).status == 200
        except OSError:
            return False

    received: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    killed = threading.Event()

    def client() -> None:
        body = urlencode({"grant_type": "client_credentials"}).encode()
        while not killed.is_set():
            request = urllib.request.Request(
                f"{base}/oauth/token",
                data=body,
                headers={
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    token = json.load(response)["access_token"]
            except (OSError, ValueError, urllib.error.HTTPError):
                continue  # the server is gone (or going): this client never received a token
            with lock:
                received.append(token)
                if len(received) >= 300:
                    enough.set()

    try:
        wait_for(healthy, "gunicorn /healthz", log)
        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        assert enough.wait(timeout=TIMEOUT), log.read_text()[-2000:]
        os.killpg(server.pid, signal.SIGKILL)  # master and workers, mid-request
        os.killpg(sealer.pid, signal.SIGKILL)  # and the sealer, wherever it was
        killed.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT)
    finally:
        for process in (server, sealer):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=TIMEOUT)
    assert server.returncode == -signal.SIGKILL

    verify = run_manage(env, "audit", "verify")
    assert verify.returncode == 0, verify.stderr + verify.stdout
    assert "OK:" in verify.stdout
    exported = run_manage(env, "audit", "export", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    recorded = set()
    for line in (tmp_path / "export" / "records.jsonl").read_text().splitlines():
        record = json.loads(line)["record"]
        if record["event"] == "token.issued":
            recorded.add(record["hashes"]["access_token"])
    missing = [token for token in received if hashlib.sha256(token.encode()).hexdigest() not in recorded]
    assert len(received) >= 300
    assert not missing, f"{len(missing)} of {len(received)} tokens a client received have no record"
