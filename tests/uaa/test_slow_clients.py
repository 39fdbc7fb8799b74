"""Slow clients (slowloris) cannot stop token issuance: the shipped nginx config in front of a real gunicorn.

Attacker: anyone who can open TCP connections to the server, with no credentials. Against bare gunicorn
(sync workers, the web command of docker-compose.yml) each connection that sends part of a request pins a
worker until gunicorn's --timeout (30 s) kills it, so as many idle sockets as workers stop every token
request (test_bare_gunicorn_...: the documented attack, shown with a 2-second deadline). Behind
deploy/nginx/uaa.conf.template, rendered for free ports, nginx holds the slow connections itself
(event-driven, client_header_timeout 10 s), buffers bodies and answers, and gunicorn only ever sees whole
requests: with 50 slow sockets open, every token request is still answered within a second (RFC 6749
§3.2 says nothing about latency; availability is the point).
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.uaa.live import (
    ROOT,
    base_env,
    create_service_client,
    free_port,
    healthy,
    start,
    stop,
    wait_for,
    web_script,
)

TEMPLATE = ROOT / "deploy" / "nginx" / "uaa.conf.template"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
WORKERS = 2
SLOW_HEADERS, SLOW_BODIES = 40, 10  # 50 slow sockets
HEADER_TIMEOUT = 10  # client_header_timeout in the template
# The proxy's address, the stack's UAA_TRUSTED_PROXIES; another loopback address is a client that is not it.
PROXY, ATTACKER = "127.0.0.1", "127.0.0.2"

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run installs it)"
)


def render(template: str, values: dict[str, str]) -> str:
    """What envsubst (or the nginx image's templates/) makes of the template: only ${UAA_*} replaced."""
    for name, value in values.items():
        template = template.replace("${" + name + "}", value)
    assert "${UAA_" not in template, "a template variable was left unset"
    return template


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def nginx_main_config(directory: Path, include: Path) -> str:
    """The few main-context lines a package's nginx.conf provides, pointed at ``directory``."""
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
worker_processes 1;
{user}
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
{temp}
    include {include};
}}
"""


class Stack:
    def __init__(
        self,
        *,
        gunicorn: int,
        https: int,
        http_port: int,
        context: ssl.SSLContext,
        token: dict[str, str],
        log: Path,
        database: Path,
    ):
        self.gunicorn, self.https, self.http, self.context, self.token, self.log = (
            gunicorn,
            https,
            http_port,
            context,
            token,
            log,
        )
        self.database = database


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("slow-clients")
    gunicorn_port, https_port, http_port = free_port(), free_port(), free_port()
    cert, key = self_signed(tmp)
    env = {
        **base_env(tmp),
        "UAA_ISSUER": f"https://127.0.0.1:{https_port}",
        "UAA_TRUSTED_PROXIES": PROXY,  # nginx connects to gunicorn from 127.0.0.1
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        web_log = tmp / "web.log"
        started.append(start(web_script(gunicorn_port, workers=WORKERS), env, web_log))
        conf = tmp / "uaa.conf"
        conf.write_text(
            render(
                TEMPLATE.read_text(),
                {
                    "UAA_UPSTREAM": f"127.0.0.1:{gunicorn_port}",
                    "UAA_SERVER_NAME": "127.0.0.1",
                    "UAA_HTTP_PORT": f"127.0.0.1:{http_port}",
                    "UAA_HTTPS_PORT": f"127.0.0.1:{https_port}",
                    "UAA_TLS_CERT": str(cert),
                    "UAA_TLS_KEY": str(key),
                },
            )
        )
        main = tmp / "nginx.conf"
        main.write_text(nginx_main_config(tmp, conf))
        command = [str(NGINX), "-p", str(tmp), "-c", str(main), "-e", str(tmp / "error.log")]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        started.append(start(command, env, tmp / "nginx.out"))
        wait_for(healthy(f"http://127.0.0.1:{gunicorn_port}"), "gunicorn /healthz", web_log, timeout=120)
        wait_for(healthy(f"http://127.0.0.1:{http_port}"), "nginx → gunicorn /healthz", tmp / "error.log")
        context = ssl.create_default_context(cafile=str(cert))
        token = {"grant_type": "client_credentials", **create_service_client(env)}
        yield Stack(
            gunicorn=gunicorn_port,
            https=https_port,
            http_port=http_port,
            context=context,
            token=token,
            log=web_log,
            database=tmp / "uaa.sqlite3",
        )
    finally:
        stop(started)


def token_request(stack: Stack, *, via_nginx: bool, timeout: float) -> tuple[int, float]:
    """(status, seconds) of one client_credentials token request."""
    body = urlencode(stack.token)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Host": "127.0.0.1"}
    if via_nginx:
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", stack.https, timeout=timeout, context=stack.context
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", stack.gunicorn, timeout=timeout)
        headers["X-Forwarded-Proto"] = "https"  # what nginx would say (gunicorn trusts it, as compose does)
    started = time.monotonic()
    try:
        connection.request("POST", "/oauth/token", body=body, headers=headers)
        response = connection.getresponse()
        json.loads(response.read())
        return response.status, time.monotonic() - started
    finally:
        connection.close()


class SlowClients:
    """Sockets that start a request and never finish it, trickling a byte now and then (slowloris)."""

    def __init__(self, port: int, *, context: ssl.SSLContext | None, headers: int, bodies: int) -> None:
        self.sockets: list[tuple[str, socket.socket]] = []
        self.stop = threading.Event()
        for kind in ["header"] * headers + ["body"] * bodies:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
            start = b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            if kind == "body":
                start += b"Content-Type: application/x-www-form-urlencoded\r\n"
                start += b"Content-Length: 100000\r\n\r\ngrant_type="
            sock.sendall(start)
            self.sockets.append((kind, sock))
        self.opened = time.monotonic()
        self.trickler = threading.Thread(target=self._trickle, daemon=True)
        self.trickler.start()

    def _trickle(self) -> None:
        while not self.stop.wait(1.0):
            for kind, sock in self.sockets:
                try:
                    sock.sendall(b"X-Slow: 1\r\n" if kind == "header" else b"x")
                except OSError:
                    continue

    def closed_by_server(self, kind: str) -> int:
        """How many sockets of ``kind`` the server has closed (EOF, an error answer, or a reset)."""
        closed = 0
        for found, sock in self.sockets:
            if found != kind:
                continue
            sock.settimeout(0.05)
            try:
                data = sock.recv(4096)
                closed += data == b"" or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 400")
            except (TimeoutError, ssl.SSLWantReadError):
                pass
            except OSError:
                closed += 1
        return closed

    def close(self) -> None:
        self.stop.set()
        self.trickler.join(timeout=5)
        for _, sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


def test_fifty_slow_clients_do_not_delay_token_requests_behind_nginx(stack):
    """With 40 sockets trickling headers and 10 trickling a body at nginx, every token request is answered
    within a second; nginx drops the header-tricklers after client_header_timeout; gunicorn never sees one."""
    assert token_request(stack, via_nginx=True, timeout=5)[0] == 200
    slow = SlowClients(stack.https, context=stack.context, headers=SLOW_HEADERS, bodies=SLOW_BODIES)
    try:
        time.sleep(1.5)  # the attack is in place
        timings = [token_request(stack, via_nginx=True, timeout=5) for _ in range(20)]
        assert all(status == 200 for status, _ in timings), timings
        slowest = max(seconds for _, seconds in timings)
        assert slowest < 1.0, timings
        print(f"50 slow sockets open: 20 token requests, slowest {slowest * 1000:.0f} ms")
        deadline = slow.opened + HEADER_TIMEOUT + 4
        while time.monotonic() < deadline and slow.closed_by_server("header") < SLOW_HEADERS:
            time.sleep(0.5)
        assert slow.closed_by_server("header") == SLOW_HEADERS  # 408/reset after client_header_timeout
        assert token_request(stack, via_nginx=True, timeout=5)[0] == 200
    finally:
        slow.close()


def test_bare_gunicorn_is_stalled_by_as_many_slow_clients_as_workers(stack):
    """The attack the proxy is for (issue 8 item 15): straight at gunicorn, WORKERS + 2 sockets that never
    finish their headers pin every sync worker, and a token request gets no answer within 2 seconds (until
    --timeout, 30 s, kills a worker and the next slow socket takes its place): gunicorn is never published."""
    assert token_request(stack, via_nginx=False, timeout=5)[0] == 200
    slow = SlowClients(stack.gunicorn, context=None, headers=WORKERS + 2, bodies=0)
    try:
        time.sleep(0.5)
        with pytest.raises((TimeoutError, socket.timeout)):
            token_request(stack, via_nginx=False, timeout=2)
    finally:
        slow.close()
    # Once the sockets are gone, the workers are free again.
    wait_for(
        lambda: token_request(stack, via_nginx=False, timeout=3)[0] == 200,
        "gunicorn to recover",
        stack.log,
        timeout=40,
    )


def test_the_proxy_answers_without_a_version_and_refuses_oversized_bodies(stack):
    """server_tokens off (no version to fingerprint); client_max_body_size 64k answered by nginx with 413."""
    connection = http.client.HTTPSConnection("127.0.0.1", stack.https, timeout=5, context=stack.context)
    try:
        connection.request("GET", "/.well-known/openid-configuration", headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert response.headers.get_all("Server") == ["nginx"]
        assert response.getheader("X-Request-ID")  # nginx's $request_id, echoed by UAA
        connection.request("POST", "/oauth/token", body="x" * (65 * 1024), headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        assert response.status == 413
        assert b"nginx/" not in response.read()
    finally:
        connection.close()


def test_plain_http_redirects_to_https_except_the_health_check(stack):
    """Only /healthz answers over plain HTTP (for load-balancer probes); everything else is sent to HTTPS, so
    no token or cookie travels in the clear and UAA never sees an unproxied X-Forwarded-Proto."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.http, timeout=5)
    try:
        connection.request("POST", "/oauth/token", body=urlencode(stack.token), headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        response.read()
        assert response.status == 301
        assert response.getheader("Location").startswith("https://127.0.0.1/oauth/token")
    finally:
        connection.close()


# --- forwarded headers (issue 9 item 8) --------------------------------------------------------------
# Attacker: a client, straight at gunicorn or through nginx, that sends the headers a proxy would, to be
# treated as having come over TLS or from another address. gunicorn believes X-Forwarded-Proto from
# --forwarded-allow-ips peers only (the compose command passes UAA_TRUSTED_PROXIES, here nginx's 127.0.0.1),
# UAA believes X-Forwarded-For from the same peers only, and nginx overwrites what it forwards.


def fetch(
    port: int,
    method: str,
    path: str,
    *,
    source: str,
    context: ssl.SSLContext | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    """One request from the local address ``source``; the answer with its body read."""
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    else:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=context, source_address=(source, 0)
        )
    try:
        connection.request(method, path, body=body, headers={"Host": "127.0.0.1", **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def test_a_client_straight_at_gunicorn_cannot_claim_https(stack):
    """RFC 6749 §3.1 and §3.2 require TLS; a plain request from a peer that is not the proxy stays plain
    whatever X-Forwarded-Proto it sends: it is redirected to HTTPS (SECURE_SSL_REDIRECT of an https issuer)
    instead of being served, and would get no Secure cookie or https-only treatment."""
    claim = {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on", "X-Forwarded-Protocol": "ssl"}
    response = fetch(
        stack.gunicorn, "GET", "/.well-known/openid-configuration", source=ATTACKER, headers=claim
    )
    assert response.status == 301
    assert response.getheader("Location") == "https://127.0.0.1/.well-known/openid-configuration"
    # The same header from the proxy's address is believed: that is how nginx says https.
    proxied = fetch(stack.gunicorn, "GET", "/.well-known/openid-configuration", source=PROXY, headers=claim)
    assert proxied.status == 200


def _client_address_counters(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT key, failures FROM accounts_throttlecounter WHERE key LIKE 'client-ip:%'"
        ).fetchall()
    return dict(rows)


def test_through_nginx_the_forwarded_headers_are_nginxs_and_believed(stack):
    """The client's own X-Forwarded-* are not what UAA reads: nginx appends the address it saw and sets the
    scheme, so a failed client authentication is counted under the client's real address (not the 1.2.3.4
    it wrote, RFC 6749 §10.10), the request counts as https although the client said otherwise, and a
    contradicting X-Forwarded-Ssl from the client does not reach gunicorn (which would refuse the request)."""
    forged = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Forwarded-For": "1.2.3.4",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Ssl": "off",
        "X-Forwarded-Protocol": "plain",
        "X-Forwarded-Host": "evil.example",
    }
    body = urlencode(
        {"grant_type": "client_credentials", "client_id": "forged-headers", "client_secret": "x"}
    )
    response = fetch(
        stack.https, "POST", "/oauth/token", source=ATTACKER, context=stack.context, body=body, headers=forged
    )
    assert response.status == 401  # invalid_client, answered: neither redirected (301) nor refused (400)
    counters = _client_address_counters(stack.database)
    assert counters.get(f"client-ip:{ATTACKER}", 0) >= 1
    assert "client-ip:1.2.3.4" not in counters
    discovery = fetch(
        stack.https,
        "GET",
        "/.well-known/openid-configuration",
        source=ATTACKER,
        context=stack.context,
        headers=forged,
    )
    assert discovery.status == 200


def test_no_answer_through_nginx_names_gunicorn(stack):
    """nginx answers for gunicorn: its own ``Server: nginx`` without a version (server_tokens off), never
    gunicorn's ``Server: gunicorn`` (proxy_hide_header Server), on proxied answers and on the plain-HTTP
    health check alike."""
    answers = [
        fetch(
            stack.https, "GET", "/.well-known/openid-configuration", source=ATTACKER, context=stack.context
        ),
        fetch(stack.https, "GET", "/no-such-page", source=ATTACKER, context=stack.context),
        fetch(stack.http, "GET", "/healthz", source=ATTACKER),
    ]
    assert [answer.status for answer in answers] == [200, 404, 200]
    for answer in answers:
        assert answer.headers.get_all("Server") == ["nginx"]
    direct = fetch(stack.gunicorn, "GET", "/healthz", source=PROXY)
    assert direct.getheader("Server") == "gunicorn"  # what the proxy hides: gunicorn is never published
