"""Forwarded headers are believed from the configured reverse proxies only (issue 9 item 8).

Attacker: anyone who can send an HTTP request to UAA with headers of their choosing, and who tries to look
like a request that arrived over TLS (``X-Forwarded-Proto: https``: secure cookies, no HTTPS redirect, an
``https`` redirect check), to come from another host (``X-Forwarded-Host``), or from another address
(``X-Forwarded-For``, tests/uaa/test_clientip.py). Whether a request is secure is the WSGI server's to say
(``wsgi.url_scheme``; gunicorn sets it from ``X-Forwarded-Proto`` only for peers in ``--forwarded-allow-ips``,
which docker-compose.yml and the Dockerfile take from ``UAA_TRUSTED_PROXIES``): Django's
``SECURE_PROXY_SSL_HEADER`` would believe the header from any peer, so it is not set. The real processes
are attacked in tests/uaa/test_processes.py and test_slow_clients.py.
"""

from __future__ import annotations

import subprocess
from http import HTTPStatus

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client as HttpClient

from tests.uaa.live import BIN, ROOT, base_env
from tokens.clientip import parse_trusted_proxies

DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def https_issuer(settings):
    """What an https issuer turns on (uaa/settings.py): plain-HTTP requests are redirected to HTTPS."""
    settings.SECURE_SSL_REDIRECT = True


@pytest.mark.parametrize("peer", ["198.51.100.7", "127.0.0.1"])
def test_x_forwarded_proto_does_not_make_a_plain_http_request_secure(db, https_issuer, peer):
    """RFC 9110 §4.2.2 / RFC 6749 §3.1 (TLS required): a request that came over plain HTTP stays plain
    whatever header it carries; the redirect to HTTPS still happens. From a proxy's address too: only the
    WSGI server knows whether the peer is a proxy, and it says so in ``wsgi.url_scheme``."""
    response = HttpClient(REMOTE_ADDR=peer).get(DISCOVERY, HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == HTTPStatus.MOVED_PERMANENTLY
    assert response["Location"] == f"https://testserver{DISCOVERY}"


def test_a_request_the_server_received_as_https_is_secure(db, https_issuer):
    """What gunicorn hands over for a trusted proxy that said https: ``wsgi.url_scheme`` = https."""
    response = HttpClient().get(DISCOVERY, secure=True)
    assert response.status_code == HTTPStatus.OK


def test_x_forwarded_host_is_never_used(db, https_issuer):
    """RFC 9110 §7.2: the target host is the Host header (checked against ALLOWED_HOSTS); a client's
    X-Forwarded-Host would otherwise choose the host of every absolute URL UAA builds."""
    response = HttpClient().get(DISCOVERY, HTTP_X_FORWARDED_HOST="evil.example")
    assert response["Location"] == f"https://testserver{DISCOVERY}"


def test_a_view_sees_a_request_that_only_claims_https_as_plain(db):
    """What the session and CSRF cookies' Secure flag, the CSRF Referer check and the sign-in ``next`` check
    (accounts/views.py, ``require_https=request.is_secure()``) read."""
    response = HttpClient(REMOTE_ADDR="198.51.100.7").get("/accounts/login", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == HTTPStatus.OK
    assert response.wsgi_request.is_secure() is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        ("127.0.0.1", ["127.0.0.1/32"]),
        ("172.30.80.0/24, 192.0.2.7,::1", ["172.30.80.0/24", "192.0.2.7/32", "::1/128"]),
    ],
)
def test_trusted_proxies_are_addresses_or_networks(value, expected):
    assert [str(network) for network in parse_trusted_proxies(value)] == expected


@pytest.mark.parametrize("value", ["1", "2", "0", "*", "10.0.0.1/24", "proxy.internal", "0.0.0.0/0", "::/0"])
def test_a_hop_count_a_wildcard_or_a_bad_network_is_refused(value):
    """UAA_TRUSTED_PROXIES once counted proxies (believed from any peer); a count now means nothing, and
    ``*`` or a network covering every address would believe every client: refused, with what to set."""
    with pytest.raises(ImproperlyConfigured, match="UAA_TRUSTED_PROXIES"):
        parse_trusted_proxies(value)


def _settings_load(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "python"), "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**base_env(tmp_path), "DJANGO_SETTINGS_MODULE": "uaa.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_refuse_the_removed_uaa_behind_proxy_and_a_hop_count(tmp_path):
    """A deployment still configured the old way stops with the new setting's name, instead of silently
    trusting more or fewer peers than it meant to."""
    behind = _settings_load(tmp_path, UAA_BEHIND_PROXY="1")
    assert behind.returncode != 0
    assert "UAA_BEHIND_PROXY was removed" in behind.stderr and "UAA_TRUSTED_PROXIES" in behind.stderr
    hops = _settings_load(tmp_path, UAA_TRUSTED_PROXIES="1")
    assert hops.returncode != 0
    assert "UAA_TRUSTED_PROXIES lists the addresses" in hops.stderr
    assert _settings_load(tmp_path, UAA_TRUSTED_PROXIES="172.30.80.0/24").returncode == 0


# --- X-Request-ID (red team, issue 8 item 15) ---------------------------------------------------------
# Attacker: a client straight at gunicorn (or through a proxy that passes the header on) that sends its own
# X-Request-ID, so that the ledger records and log lines of its requests carry an id of its choosing — one
# that collides with another request's, or that reads like something else.
NGINX_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("inbound", [NGINX_ID, "forged-request-id-0001", "A" * 32, "../../x" * 4])
def test_a_request_id_from_a_peer_that_is_not_a_proxy_is_never_taken(db, inbound):
    response = HttpClient(REMOTE_ADDR="198.51.100.7").get("/healthz", HTTP_X_REQUEST_ID=inbound)
    assert response["X-Request-ID"] != inbound
    assert len(response["X-Request-ID"]) == 32


def test_a_proxys_request_id_is_kept_in_its_own_form_only(db):
    """From a trusted proxy (UAA_TRUSTED_PROXIES; the test client's 127.0.0.1): nginx's $request_id or a
    UUID is kept, so nginx's and UAA's logs share it; anything else is replaced."""
    proxy = HttpClient(REMOTE_ADDR="127.0.0.1")
    assert proxy.get("/healthz", HTTP_X_REQUEST_ID=NGINX_ID)["X-Request-ID"] == NGINX_ID
    uuid = "01234567-89ab-cdef-0123-456789abcdef"
    assert proxy.get("/healthz", HTTP_X_REQUEST_ID=uuid)["X-Request-ID"] == uuid
    assert proxy.get("/healthz", HTTP_X_REQUEST_ID="forged-request-id-0001")["X-Request-ID"] != (
        "forged-request-id-0001"
    )


def test_the_ledger_never_records_a_clients_own_request_id(user):
    """docs/audit-ledger.md: ``request_id`` ties a record to the log lines of its request; a client cannot
    choose it (a failed sign-in here, recorded with its request's metadata)."""
    import json as json_module

    from tokens.models import LedgerRecord

    http = HttpClient(REMOTE_ADDR="198.51.100.7")
    response = http.post(
        "/accounts/login", {"email": user.email, "password": "wrong-password-123"}, HTTP_X_REQUEST_ID=NGINX_ID
    )
    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR  # the failed sign-in, recorded
    ids = {
        json_module.loads(body).get("request_id")
        for body in LedgerRecord.objects.values_list("body", flat=True)
    }
    assert response["X-Request-ID"] in ids
    assert NGINX_ID not in ids


# --- the image's default bind (red team, issue 8 item 15) ---------------------------------------------


def test_the_image_listens_on_its_own_loopback_unless_told_otherwise():
    """A plain ``docker run -p 8000:8000 uaa`` put gunicorn's sync workers in front of clients (two idle
    sockets stop token issuance, tests/uaa/test_slow_clients.py). The image's CMD binds the container's
    loopback unless UAA_BIND says otherwise, and EXPOSEs nothing."""
    import json as json_module

    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert not [line for line in lines if line.startswith("EXPOSE")]
    shell, flag, script = json_module.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    echoed = script.replace("exec gunicorn", "exec echo gunicorn")

    def bind(**env: str) -> str:
        out = subprocess.run(
            [shell, flag, echoed],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return out.split("--bind ", 1)[1].split()[0]

    assert bind() == "127.0.0.1:8000"
    assert bind(UAA_BIND="0.0.0.0:8000") == "0.0.0.0:8000"
    assert "--forwarder-headers=" in script.split()  # and no SCRIPT_NAME from any header
