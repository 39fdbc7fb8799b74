"""The processes docker-compose.yml starts (gunicorn, Celery worker, Celery beat), run here for real.

Each test reads its command from docker-compose.yml, so the file and what is tested cannot drift
apart. They use their own SQLite file and a real broker: Redis when ``UAA_TEST_BROKER_URL`` names
one (CI sets ``redis://127.0.0.1:6379/15``), otherwise the embedded filesystem broker.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.uaa.live import (
    COMPOSE,
    ROOT,
    compose_command,
    create_service_client,
    free_port,
    healthy,
    manage,
    process_env,
    processes,
    start,
    wait_for,
    web_script,
)

__all__ = ["process_env", "processes"]  # fixtures


def test_the_web_service_command_migrates_bootstraps_and_serves_tokens_with_gunicorn(
    process_env, processes, tmp_path
):
    port = free_port()
    env = {**process_env, "UAA_ISSUER": f"http://127.0.0.1:{port}"}
    log = tmp_path / "web.log"
    processes.append(start(web_script(port), env, log))
    base = f"http://127.0.0.1:{port}"
    wait_for(healthy(base), "gunicorn /healthz", log)
    discovery = json.load(urllib.request.urlopen(f"{base}/.well-known/openid-configuration"))
    assert discovery["issuer"] == base
    jwks = json.load(urllib.request.urlopen(discovery["jwks_uri"]))
    algs = sorted(key["alg"] for key in jwks["keys"])  # an active key and a pre-published standby each
    assert algs == ["ES256", "ES256", "EdDSA", "EdDSA", "RS256", "RS256"]

    credentials = create_service_client(env)
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

    # The compose file's healthcheck of the web service, run as the container would (against our port).
    healthcheck = COMPOSE["services"]["web"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD" and "/readyz" in healthcheck[-1], healthcheck
    probe = [sys.executable, *healthcheck[2:]]
    probe[-1] = probe[-1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    subprocess.run(probe, check=True, timeout=30)
    ready = json.load(urllib.request.urlopen(f"{base}/readyz"))
    assert ready["checks"]["signing_keys"]["ok"] and ready["checks"]["database"]["ok"], ready
    # --limit-request-line 8190: a request line of 7,000 bytes (a POSTed authorization request's GET with a
    # long id_token_hint) is served, where gunicorn's default (4,094) answered 414.
    with urllib.request.urlopen(f"{base}/healthz?pad={'x' * 7000}") as response:
        assert response.status == 200


def _expired_redeemed_code(database: Path) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO oauth_redeemedcode (code_checksum, client_id, access_token_checksum, amr, acr,"
            " session_id, redeemed_at, expires, claims)"
            " VALUES ('c0ffee', 'x', '', '[]', '', '', '2000-01-01 00:00:00', '2000-01-02 00:00:00', '{}')"
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


def test_only_the_buffering_proxy_is_published_and_gunicorn_is_internal():
    """Issue 8 item 15: gunicorn's sync workers must never face clients (tests/uaa/test_slow_clients.py shows
    why); the nginx proxy, with the shipped template, is the only published service."""
    services = COMPOSE["services"]
    published = sorted(name for name, service in services.items() if service.get("ports"))
    assert published == ["proxy"]
    assert "ports" not in services["web"] and services["web"]["expose"] == ["8000"]
    assert COMPOSE["networks"]["backend"]["internal"] is True
    for name in ("web", "postgres", "redis", "worker", "beat"):
        assert "edge" not in services[name]["networks"], name
    assert set(services["proxy"]["networks"]) == {"edge", "backend"}
    template = "./deploy/nginx/uaa.conf.template:/etc/nginx/templates/default.conf.template:ro"
    assert template in services["proxy"]["volumes"]
    assert services["proxy"]["environment"]["UAA_UPSTREAM"] == "web:8000"
    assert "--worker-class sync" in compose_command("web")[2]


def test_docker_compose_config_is_valid(tmp_path):
    """``docker-compose config`` (Debian's docker-compose, as in .ci/run) accepts the file."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    env = {
        "PATH": "/usr/bin:/bin",
        "SECRET_KEY": "x",
        "UAA_KEK": "x",
        "UAA_ISSUER": "https://id.example.com",
        "UAA_SERVER_NAME": "id.example.com",
        "POSTGRES_PASSWORD": "x",
    }
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- forwarded headers (issue 9 item 8) --------------------------------------------------------------
# Attacker: a client that reaches gunicorn from an address that is not the proxy's and sends the headers a
# proxy would (X-Forwarded-For, X-Forwarded-Proto). On one host, another loopback address plays that peer.
PROXY, ATTACKER = "127.0.0.1", "127.0.0.2"


def _failed_token_request(port: int, *, source: str, forwarded_for: str) -> int:
    """An invalid_client token request sent from ``source`` (counted per client address, RFC 6749 §5.2)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        body = urlencode({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"})
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-For": forwarded_for,
            "X-Forwarded-Proto": "https",
        }
        connection.request("POST", "/oauth/token", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _client_address_counters(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT key, failures FROM accounts_throttlecounter WHERE key LIKE 'client-ip:%'"
        ).fetchall()
    return dict(rows)


def test_gunicorn_as_compose_runs_it_believes_x_forwarded_for_from_the_trusted_proxy_only(
    process_env, processes, tmp_path
):
    """The web command passes UAA_TRUSTED_PROXIES to --forwarded-allow-ips, and UAA reads X-Forwarded-For
    from those peers only: a client straight at gunicorn is counted under its own address, not 1.2.3.4, so it
    can neither spread its guesses over invented addresses nor lock out someone else's (RFC 6749 §10.10)."""
    port = free_port()
    env = {**process_env, "UAA_ISSUER": f"http://127.0.0.1:{port}", "UAA_TRUSTED_PROXIES": PROXY}
    log = tmp_path / "web.log"
    processes.append(start(web_script(port), env, log))
    wait_for(healthy(f"http://127.0.0.1:{port}"), "gunicorn /healthz", log)
    assert _failed_token_request(port, source=ATTACKER, forwarded_for="1.2.3.4") == 401
    assert _failed_token_request(port, source=PROXY, forwarded_for="198.51.100.7") == 401  # the proxy's word
    assert _client_address_counters(tmp_path / "uaa.sqlite3") == {
        f"client-ip:{ATTACKER}": 1,
        "client-ip:198.51.100.7": 1,
    }


def test_forwarded_headers_are_believed_from_the_backend_network_only():
    """compose: gunicorn's --forwarded-allow-ips is UAA_TRUSTED_PROXIES (never '*'), whose default is the
    backend network's pinned subnet, where the proxy is; the image alone believes its own loopback only."""
    script = compose_command("web")[2]
    assert '--forwarded-allow-ips "$UAA_TRUSTED_PROXIES"' in script
    assert "'*'" not in script and '"*"' not in script
    subnet = COMPOSE["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert COMPOSE["x-uaa-env"]["UAA_TRUSTED_PROXIES"] == "${UAA_TRUSTED_PROXIES:-" + subnet + "}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENV UAA_TRUSTED_PROXIES=127.0.0.1\n" in dockerfile
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert '--forwarded-allow-ips \\"$UAA_TRUSTED_PROXIES\\"' in cmd and "*" not in cmd


def _dockerfile_command() -> tuple[list[str], dict[str, str]]:
    """The image's CMD (exec form) and the ENV lines that come with it."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    command = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    env = dict(part.split("=", 1) for line in lines if line.startswith("ENV ") for part in line[4:].split())
    return command, env


def _discovery_status(port: int, *, source: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        headers = {"Host": "127.0.0.1", "X-Forwarded-Proto": "https"}
        connection.request("GET", "/.well-known/openid-configuration", headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_the_images_command_believes_x_forwarded_proto_from_its_own_loopback_only(
    process_env, processes, tmp_path
):
    """The Dockerfile's CMD, run as the image runs it: with an https issuer a plain request is redirected to
    HTTPS (RFC 6749 §3.1), and X-Forwarded-Proto: https changes that only when it comes from 127.0.0.1."""
    (shell, flag, script), image_env = _dockerfile_command()
    assert image_env["UAA_TRUSTED_PROXIES"] == PROXY
    port = free_port()
    script = script.replace("--workers 4", "--workers 1")
    env = {
        **process_env,
        "UAA_ISSUER": f"https://127.0.0.1:{port}",
        "UAA_TRUSTED_PROXIES": image_env["UAA_TRUSTED_PROXIES"],
        "UAA_BIND": f"127.0.0.1:{port}",  # the image's own default: 127.0.0.1:8000
    }
    manage(env, "migrate", "--noinput")
    log = tmp_path / "image.log"
    processes.append(start([shell, flag, script], env, log))
    wait_for(healthy(f"http://127.0.0.1:{port}"), "gunicorn /healthz", log)
    assert _discovery_status(port, source=ATTACKER) == 301
    assert _discovery_status(port, source=PROXY) == 200
