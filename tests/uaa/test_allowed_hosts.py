"""RFC 9110 §7.2 (Host): in production UAA answers only for its issuer's host and the hosts the operator
lists in ALLOWED_HOSTS; nothing else by default.

Attacker: on the network, sending requests with a Host header of their choosing (``testserver``,
``localhost``) to a production instance, so that absolute URLs UAA builds (redirects, the sign-in
page's ``next`` checks) name a host that is not the issuer's. The test client's ``testserver`` is added
by Django's test set-up itself, never by the production defaults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
http = Client(raise_request_exception=False)
answers = {host: http.get("/healthz", HTTP_HOST=host, secure=True).status_code for host in HOSTS}
print(json.dumps({"allowed_hosts": settings.ALLOWED_HOSTS, "answers": answers}))
"""
HOSTS = ["testserver", "localhost", "127.0.0.1", "id.example.com", "evil.example", "status.internal"]


def _production(**env: str) -> dict[str, object]:
    """Start Django as production would (no DEBUG, no test set-up) and ask /healthz under each host."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "uaa.settings",
        "SECRET_KEY": "production-like-secret-key-for-this-test-only-0123456789",
        "UAA_ISSUER": "https://id.example.com",
        "UAA_KEK": "4zCwW7m1tZrJq0q2pQ7y3v8Lk6bV5nX2aS9dF1gH0jE",
        "UAA_VAR_DIR": str(ROOT / "var" / "test"),
        "UAA_LOG_FORMAT": "plain",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    result = subprocess.run(
        [sys.executable, "-c", f"HOSTS = {HOSTS!r}\n{PROBE}"],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_defaults_answer_only_for_the_issuers_host():
    """RFC 9110 §7.2; Django's ALLOWED_HOSTS: a host not listed gets 400. Without ALLOWED_HOSTS set, the
    list is the issuer's host: ``testserver`` and ``localhost`` are refused."""
    probe = _production()
    assert probe["allowed_hosts"] == ["id.example.com"]
    assert probe["answers"] == {
        "testserver": 400,
        "localhost": 400,
        "127.0.0.1": 400,
        "id.example.com": 200,
        "evil.example": 400,
        "status.internal": 400,
    }


def test_allowed_hosts_adds_to_the_issuers_host():
    """docs/operations.md: ALLOWED_HOSTS lists further names (a health check's); the issuer's stays."""
    probe = _production(ALLOWED_HOSTS="status.internal,127.0.0.1")
    assert probe["allowed_hosts"] == ["id.example.com", "status.internal", "127.0.0.1"]
    assert probe["answers"]["status.internal"] == 200
    assert probe["answers"]["127.0.0.1"] == 200
    assert probe["answers"]["testserver"] == 400


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [("https://[2001:db8::1]:8443", "[2001:db8::1]"), ("https://ID.Example.com:8443/uaa", "id.example.com")],
)
def test_the_issuers_host_is_taken_without_port_or_path(issuer, expected):
    """RFC 3986 §3.2.2: an IPv6 literal is bracketed as Django compares it; the port is not part of it."""
    probe = _production(UAA_ISSUER=issuer)
    assert probe["allowed_hosts"] == [expected]


def test_debug_adds_the_local_names():
    """DESIGN: local defaults only when DEBUG is asked for."""
    probe = _production(DEBUG="true", UAA_ISSUER="http://localhost:8000")
    assert set(probe["allowed_hosts"]) == {"localhost", "127.0.0.1", "[::1]"}
    assert "testserver" not in probe["allowed_hosts"]
