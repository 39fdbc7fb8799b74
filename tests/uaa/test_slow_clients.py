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
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
MAIN_CONFIG = ROOT / "deploy" / "nginx" / "nginx.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
WORKERS = 2
SLOW_HEADERS, SLOW_BODIES = 40, 10  # 50 slow sockets
HEADER_TIMEOUT = int(re.findall(r"client_header_timeout (\d+)s;", TEMPLATE.read_text())[-1])
# The proxy's address, the stack's UAA_TRUSTED_PROXIES; another loopback address is a client that is not it.
PROXY, ATTACKER = "127.0.0.1", "127.0.0.2"

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run installs it)"
)


def nginx_version() -> tuple[int, ...]:
    found = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True, timeout=10).stderr
    return tuple(int(part) for part in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", found).groups())  # type: ignore[union-attr]


def render(template: str, values: dict[str, str]) -> str:
    """What envsubst (or the nginx image's templates/) makes of the template: only ${UAA_*} replaced. On an
    nginx older than 1.25.5 (Debian bookworm's 1.22) the ssl_handshake_timeout line goes, as the template
    says: there client_header_timeout bounds the handshake."""
    for name, value in values.items():
        template = template.replace("${" + name + "}", value)
    assert "${UAA_" not in template, "a template variable was left unset"
    if nginx_version() < (1, 25, 5):
        template = re.sub(r"(?m)^\s*ssl_handshake_timeout [^;]+;\n", "", template)
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
    """deploy/nginx/nginx.conf as shipped, its paths pointed at ``directory`` and its include at ``include``
    (every other line, worker_processes and worker_connections included, as it is)."""
    config = MAIN_CONFIG.read_text()
    temp = "".join(
        f"    {kind}_temp_path {directory}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    mime = "/etc/nginx/mime.types"
    replacements = [
        (r"(?m)^user\s+\S+;$", "user root;" if os.geteuid() == 0 else ""),
        (r"(?m)^pid\s+\S+;$", f"daemon off;\npid {directory}/nginx.pid;"),
        (r"(?m)^error_log\s+\S+(\s+\w+)?;$", f"error_log {directory}/error.log warn;"),
        (r"(?m)^(\s*)access_log\s+\S+(\s+\w+)?;$", f"\\1access_log {directory}/access.log;\n{temp}"),
        (
            r"(?m)^\s*include\s+/etc/nginx/mime.types;$",
            f"    include {mime};" if os.path.exists(mime) else "",
        ),
        (r"(?m)^(\s*)include\s+/etc/nginx/conf.d/\*\.conf;$", f"\\1include {include};"),
    ]
    for pattern, replacement in replacements:
        config, found = re.subn(pattern, replacement, config)
        assert found == 1, f"deploy/nginx/nginx.conf: no line matches {pattern}"
    return config


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


# --- a distributed flood (issue 8 item 15, red team) -----------------------------------------------------
# Attacker: several machines (here 25 loopback addresses, 127.0.1.10-34, each socket bound to its own),
# no credentials. Each opens slow bodies (complete headers, then a byte every 4 s: just inside
# client_body_timeout), kept-alive connections left idle after one request, and TCP connections that never
# send a ClientHello. Before: 100 connections per address were allowed, 1024 per nginx worker, body and
# keep-alive timeouts of 10-15 s and the TLS handshake 60 s (nginx 1.25.5+): 1150 slow bodies from 13
# addresses reset 69% of token requests.
FLOOD_ADDRESSES = [f"127.0.1.{n}" for n in range(10, 35)]
# Per address: 95 slow bodies (within the old limit of 100), 20 idle, 20 stalled: 3375 connections in all,
# the slow bodies alone more than two workers of 1024 (which nginx cannot free: it drops idle ones first).
FLOOD_SLOW_BODIES, FLOOD_IDLE, FLOOD_STALLED = 95, 20, 20
PER_ADDRESS = int(re.search(r"limit_conn uaa_per_address (\d+);", TEMPLATE.read_text()).group(1))  # type: ignore[union-attr]


class DistributedFlood:
    """Slow bodies, idle keep-alives and stalled TLS handshakes from many source addresses."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.sockets: list[tuple[str, str, socket.socket]] = []
        self.refused = 0
        self.stop = threading.Event()
        plan = [
            (address, kind)
            for address in FLOOD_ADDRESSES
            for kind, count in (("body", FLOOD_SLOW_BODIES), ("idle", FLOOD_IDLE), ("stalled", FLOOD_STALLED))
            for _ in range(count)
        ]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            for opened in pool.map(self._open, plan):
                if opened is None:
                    self.refused += 1
                else:
                    self.sockets.append(opened)
        self.seconds_to_open = time.monotonic() - started
        self.trickler = threading.Thread(target=self._trickle, daemon=True)
        self.trickler.start()

    def _open(self, planned: tuple[str, str]) -> tuple[str, str, socket.socket] | None:
        address, kind = planned
        try:
            raw = socket.create_connection(
                ("127.0.0.1", self.stack.https), timeout=2, source_address=(address, 0)
            )
        except OSError:
            return None
        if kind == "stalled":
            return address, kind, raw  # a TCP connection that never says a word
        try:
            sock = self.stack.context.wrap_socket(raw, server_hostname="127.0.0.1")
            if kind == "body":
                sock.sendall(
                    b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 60000\r\n\r\ngrant_type="
                )
            else:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                sock.settimeout(2)
                sock.recv(4096)  # the answer; the connection stays open, kept alive and idle
        except OSError:
            raw.close()
            return None
        return address, kind, sock

    def _trickle(self) -> None:
        while not self.stop.wait(4.0):
            for _, kind, sock in self.sockets:
                if kind == "body":
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        continue

    def still_open(self) -> dict[str, dict[str, int]]:
        """Per kind, per source address: the connections the server has not closed or answered."""
        found: dict[str, dict[str, int]] = {"body": {}, "idle": {}, "stalled": {}}
        for address, kind, sock in self.sockets:
            sock.settimeout(0.01)
            try:
                sock.recv(4096)  # EOF, or an answer (429, 408): either way the server let go
                closed = True
            except (TimeoutError, ssl.SSLWantReadError):
                closed = False
            except OSError:
                closed = True
            if not closed:
                found[kind][address] = found[kind].get(address, 0) + 1
        return found

    def close(self) -> None:
        self.stop.set()
        self.trickler.join(timeout=5)
        for _, _, sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


def test_a_distributed_flood_of_slow_idle_and_stalled_connections_does_not_stop_token_requests(stack):
    """3375 connections from 25 addresses — 95 slow bodies, 20 idle keep-alives and 20 stalled TLS
    handshakes each — and token requests from another address are still answered, each within a second.
    Within the timeouts (5 s) nginx has let go of every idle and stalled one; of the slow bodies it holds at
    most limit_conn (20) per address and refused the rest with 429."""
    assert token_request(stack, via_nginx=True, timeout=5)[0] == 200
    flood = DistributedFlood(stack)
    try:
        timings = []
        for _ in range(15):
            timings.append(token_request(stack, via_nginx=True, timeout=5))
            time.sleep(0.2)
        assert all(status == 200 for status, _ in timings), timings
        slowest = max(seconds for _, seconds in timings)
        assert slowest < 1.0, timings
        time.sleep(HEADER_TIMEOUT + 1.5)
        held = flood.still_open()
        print(
            f"flood: {len(flood.sockets)} connections from {len(FLOOD_ADDRESSES)} addresses opened in "
            f"{flood.seconds_to_open:.1f} s ({flood.refused} refused); 15 token requests, slowest "
            f"{slowest * 1000:.0f} ms; after {HEADER_TIMEOUT} s still held: "
            f"{sum(held['body'].values())} slow bodies, {sum(held['idle'].values())} idle, "
            f"{sum(held['stalled'].values())} stalled"
        )
        assert sum(held["idle"].values()) == 0 and sum(held["stalled"].values()) == 0, held
        assert max(held["body"].values(), default=0) <= PER_ADDRESS, held["body"]
        assert token_request(stack, via_nginx=True, timeout=5)[0] == 200
    finally:
        flood.close()


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


@pytest.mark.parametrize("host", ["evil.example", "evil.example:443", "127.0.0.1.evil.example"])
def test_the_https_redirect_goes_to_the_configured_name_whatever_the_host_header(stack, host):
    """RFC 9110 §7.2: Host is the client's to write. The plain-HTTP redirect went to https://$host, so a link
    to http://uaa/ with another Host header (or a server that answers for any name) sent browsers wherever
    the sender chose; it goes to the configured server name (UAA_SERVER_NAME)."""
    response = fetch(stack.http, "GET", "/oauth/authorize?x=1", source=ATTACKER, headers={"Host": host})
    assert response.status == 301
    assert response.getheader("Location") == "https://127.0.0.1/oauth/authorize?x=1"


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


def test_a_script_name_header_from_the_proxys_address_changes_nothing(stack):
    """gunicorn maps a SCRIPT_NAME header from a --forwarded-allow-ips peer into the WSGI environ
    (--forwarder-headers' default), and answered 500 when the path did not start with it; the web command
    passes --forwarder-headers= (none), so the header is dropped from every peer. nginx never passes a
    header name with an underscore (underscores_in_headers off)."""
    claim = {"SCRIPT_NAME": "/elsewhere", "X-Forwarded-Proto": "https"}
    direct = fetch(stack.gunicorn, "GET", "/.well-known/openid-configuration", source=PROXY, headers=claim)
    assert direct.status == 200
    prefixed = fetch(
        stack.gunicorn,
        "GET",
        "/.well-known/openid-configuration",
        source=PROXY,
        headers={**claim, "SCRIPT_NAME": "/.well-known"},
    )
    assert prefixed.status == 200  # not routed as /openid-configuration under a prefix
    through = fetch(
        stack.https,
        "GET",
        "/.well-known/openid-configuration",
        source=ATTACKER,
        context=stack.context,
        headers={"SCRIPT_NAME": "/elsewhere"},
    )
    assert through.status == 200


def test_a_request_id_is_believed_from_the_proxy_only(stack):
    """The X-Request-ID that UAA logs and writes into ledger records: from nginx (its $request_id, 32 hex
    digits) it is kept; from anyone else, or in any other form, UAA makes its own, so a client straight at
    gunicorn cannot write an id of its choosing into the audit ledger or the logs."""
    forged = "forged-request-id-0123456789"
    direct = fetch(stack.gunicorn, "GET", "/healthz", source=ATTACKER, headers={"X-Request-ID": forged})
    assert direct.getheader("X-Request-ID") not in (None, forged)
    nginx_like = "0123456789abcdef0123456789abcdef"
    proxied = fetch(stack.gunicorn, "GET", "/healthz", source=PROXY, headers={"X-Request-ID": nginx_like})
    assert proxied.getheader("X-Request-ID") == nginx_like
    odd = fetch(stack.gunicorn, "GET", "/healthz", source=PROXY, headers={"X-Request-ID": forged})
    assert odd.getheader("X-Request-ID") != forged
    through = fetch(
        stack.https,
        "GET",
        "/healthz",
        source=ATTACKER,
        context=stack.context,
        headers={"X-Request-ID": nginx_like},
    )
    assert through.getheader("X-Request-ID") not in (None, nginx_like)  # nginx's own, never the client's


def test_an_address_beyond_its_request_rate_gets_429_from_the_proxy(stack):
    """limit_req on the endpoints that check credentials (here the sign-in page: 2 per second, a burst of
    20): one address asking faster gets RFC 6585 429 with Retry-After and an RFC 6749 §5.2-shaped body
    from nginx, before gunicorn is asked; another address is not affected."""

    def get(source: str) -> tuple[int, str | None, bytes]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", stack.https, timeout=10, context=stack.context, source_address=(source, 0)
        )
        try:
            connection.request("GET", "/accounts/login", headers={"Host": "127.0.0.1"})
            response = connection.getresponse()
            return response.status, response.getheader("Retry-After"), response.read()
        finally:
            connection.close()

    answers = [get("127.0.0.9") for _ in range(40)]
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) >= 15 and statuses.count(429) >= 10, statuses
    _, retry_after, body = next(answer for answer in answers if answer[0] == 429)
    assert retry_after == "1" and json.loads(body)["error"] == "temporarily_unavailable"
    assert get("127.0.0.8")[0] == 200


def test_the_limits_count_an_ipv6_client_per_64_and_an_ipv4_client_per_address(tmp_path):
    """An IPv6 host has a /64 (2^64 addresses) to spread connections over, so limit_conn and limit_req keyed
    on the whole address ($binary_remote_addr, a /128) limited nothing. The template's map keys them on the
    /64, an IPv4 address (also one seen as ::ffff:a.b.c.d on a dual-stack socket) on itself. Its map block,
    run by the real nginx, answers the key it computes."""
    block = re.search(r"(?ms)^map \$binary_remote_addr \$uaa_client \{.*?^\}", TEMPLATE.read_text())
    assert block is not None
    with socket.socket(socket.AF_INET6) as probe:  # free on IPv6 and IPv4 alike (the dual-stack listener)
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(("::", 0))
        port = int(probe.getsockname()[1])
    conf = tmp_path / "map.conf"
    conf.write_text(
        f"{block.group(0)}\nserver {{\n    listen [::]:{port} ipv6only=off;\n"
        "    location / { return 200 $uaa_client; }\n}\n"
    )
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_config(tmp_path, conf))
    command = [str(NGINX), "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log")]
    process = start(command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, tmp_path / "nginx.out")
    try:

        def key(host: str, source: str) -> bytes:
            connection = http.client.HTTPConnection(host, port, timeout=5, source_address=(source, 0))
            try:
                connection.request("GET", "/", headers={"Host": "x"})
                return connection.getresponse().read()
            finally:
                connection.close()

        wait_for(lambda: _answers(key, "127.0.0.1"), "nginx with the map", tmp_path / "error.log")
        assert key("::1", "::1") == bytes(8)  # ::1's /64: eight zero bytes, the host part dropped
        assert key("127.0.0.1", "127.0.0.7") == bytes([127, 0, 0, 7])  # IPv4 (mapped) as itself
    finally:
        stop([process])


def _answers(key, source: str) -> bool:
    try:
        key("127.0.0.1", source)
        return True
    except OSError:
        return False
