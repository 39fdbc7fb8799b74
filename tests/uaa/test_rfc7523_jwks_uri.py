"""A private_key_jwt client's ``jwks_uri`` (OIDC Dynamic Client Registration §2) is fetched safely.

The attacker here registered nothing: they send assertions naming a client whose ``jwks_uri`` points
somewhere, or they control DNS or the server behind it. UAA must not become their HTTP client into its
own network (OWASP SSRF prevention): only https (loopback, and http to it, only where
UAA_JWKS_URI_ALLOW_LOOPBACK says so, for local use), no user information, no redirects, only globally
reachable destinations (no private, loopback, link-local, multicast or reserved ones, nor one inside an
IPv6 address), every resolved address checked and the checked one connected to,
one deadline and a size cap for the whole fetch, failures cached instead of retried per request.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError

from tests.uaa.client_assertions import (
    assertion,
    assertion_request,
    http_server,
    json_handler,
    new_key,
    public_set,
    tcp_listener,
)
from uaa.oauth.models import Client
from uaa.oauth.services import register_client

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _loopback_jwks_uris(settings: Any) -> None:
    """The test servers below listen on 127.0.0.1: allowed only by the explicit setting."""
    settings.UAA_JWKS_URI_ALLOW_LOOPBACK = True


@pytest.fixture
def production(settings: Any) -> None:
    """Production: https redirect URIs only, and no loopback allowance for jwks_uri."""
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": ["https"]}
    settings.UAA_JWKS_URI_ALLOW_LOOPBACK = False


class FakeDNS:
    """Names in ``answers`` resolve to their address lists, one list per lookup (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        answer = self.answers[name][min(self.lookups.count(name), len(self.answers[name]) - 1)]
        self.lookups.append(name)
        results: list[tuple[Any, ...]] = []
        for address in answer:
            if ":" in address:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0)))
            else:
                results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0))))
        return results


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    dns = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    return dns


@pytest.fixture
def signing_key() -> Any:
    return new_key("ES256")


def uri_client(uri: str) -> Client:
    """A private_key_jwt client registered with ``uri`` (through the model's validation)."""
    return register_client(
        name="svc",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks_uri=uri,
    ).client


def stored_client(uri: str) -> Client:
    """A client whose jwks_uri was written to the database without the model's validation."""
    client = uri_client("https://keys.example.com/jwks.json")
    Client.objects.filter(pk=client.pk).update(jwks_uri=uri)
    return Client.objects.get(pk=client.pk)


def clean_with(uri: str) -> None:
    client = Client(
        name="svc",
        client_type=Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks_uri=uri,
    )
    client.clean()


def assert_refused(response: Any) -> None:
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost:@evil.example/jwks.json",  # the review's: userinfo "localhost:", host evil.example
        "https://user:password@keys.example.com/jwks.json",
        "https://keys.example.com@127.0.0.1/jwks.json",
        "http://127.0.0.1:@169.254.169.254/latest/meta-data",
    ],
)
def test_a_jwks_uri_with_user_information_is_refused_at_registration(db, uri):
    """RFC 3986 §3.2.1: what precedes "@" is userinfo, not the host; RFC 9110 §4.2.4: senders MUST NOT
    generate userinfo in http(s) URIs. A URL that a reader and a parser disagree on is refused."""
    with pytest.raises(ValidationError) as error:
        clean_with(uri)
    assert "jwks_uri" in error.value.message_dict


def test_a_stored_jwks_uri_with_user_information_is_never_fetched(db, resolver, signing_key):
    """Validation at fetch time too: a row written around the model's clean() still is not fetched."""
    with tcp_listener() as (port, served):
        resolver.answers["evil.example"] = [["127.0.0.1"]]
        client = stored_client(f"http://localhost:@evil.example:{port}/jwks.json")
        assert_refused(assertion_request(assertion(client.client_id, signing_key)))
        assert served.connections == 0


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/jwks.json",
        "https://127.0.0.1/jwks.json",
        "https://localhost/jwks.json",
        "https://[::1]/jwks.json",
        "https://10.0.0.8/jwks.json",
        "https://192.168.1.1/jwks.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/jwks.json",
        "https://[::ffff:127.0.0.1]/jwks.json",
        "https://0.0.0.0/jwks.json",
        "https://224.0.0.1/jwks.json",
        "http://keys.example.com/jwks.json",
        "ftp://keys.example.com/jwks.json",
        "https://keys.example.com/jwks.json#fragment",
    ],
)
def test_production_refuses_jwks_uris_that_are_not_public_https(db, production, uri):
    """https only; no destination inside the server's own networks (OWASP SSRF prevention)."""
    with pytest.raises(ValidationError) as error:
        clean_with(uri)
    assert "jwks_uri" in error.value.message_dict


def test_production_accepts_a_public_https_jwks_uri(db, production):
    clean_with("https://keys.example.com/.well-known/jwks.json")


def test_a_name_that_resolves_to_a_loopback_address_is_not_fetched_in_production(
    db, production, resolver, signing_key
):
    """The name passes registration; its address is checked at every fetch, before connecting."""
    with tcp_listener() as (port, served):
        resolver.answers["internal.example"] = [["127.0.0.1"]]
        client = uri_client(f"https://internal.example:{port}/jwks.json")
        assert_refused(assertion_request(assertion(client.client_id, signing_key)))
        assert served.connections == 0


def test_every_resolved_address_is_checked(db, production, resolver, signing_key):
    """A name with one public and one internal address is refused: the connection could go to either."""
    with tcp_listener() as (port, served):
        resolver.answers["mixed.example"] = [["127.0.0.1", "93.184.216.34"]]
        client = uri_client(f"https://mixed.example:{port}/jwks.json")
        assert_refused(assertion_request(assertion(client.client_id, signing_key)))
        assert served.connections == 0


def test_the_checked_address_is_the_one_connected_to(db, resolver, signing_key):
    """DNS rebinding: the name is resolved once and the connection goes to the address that was checked;
    a second lookup (which an attacker's DNS would answer with an internal address) never happens."""
    with http_server(json_handler(public_set(signing_key))) as (port, served):
        resolver.answers["localhost"] = [["127.0.0.1"], ["10.255.255.1"]]
        client = uri_client(f"http://localhost:{port}/jwks.json")
        response = assertion_request(assertion(client.client_id, signing_key))
        assert response.status_code == HTTPStatus.OK, response.content
        assert resolver.lookups == ["localhost"]
        assert served.requests == ["/jwks.json"]


def test_redirects_are_not_followed(db, signing_key):
    """A redirect could lead anywhere, past every check made on the registered URL."""
    with http_server(json_handler(public_set(signing_key))) as (target_port, target):

        def redirect(request: http.server.BaseHTTPRequestHandler, served: Any) -> None:
            request.send_response(HTTPStatus.FOUND)
            request.send_header("Location", f"http://127.0.0.1:{target_port}/jwks.json")
            request.send_header("Content-Length", "0")
            request.end_headers()

        with http_server(redirect) as (port, served):
            client = uri_client(f"http://127.0.0.1:{port}/jwks.json")
            assert_refused(assertion_request(assertion(client.client_id, signing_key)))
            assert served.requests == ["/jwks.json"]
            assert target.requests == []


def test_a_jwk_set_over_the_size_cap_is_refused(db, signing_key):
    """A JWK Set is a few kilobytes; 64 KiB is the cap, so a huge answer costs no memory."""
    document = {**public_set(signing_key), "padding": "x" * (100 * 1024)}
    with http_server(json_handler(document)) as (port, served):
        client = uri_client(f"http://127.0.0.1:{port}/jwks.json")
        assert_refused(assertion_request(assertion(client.client_id, signing_key)))
        assert served.requests == ["/jwks.json"]


def test_a_slow_jwks_uri_is_cut_off_at_one_deadline(db, settings, signing_key):
    """One deadline for the whole fetch: a server that trickles a byte at a time (each one well inside
    any per-read timeout) does not hold the token request for longer."""
    settings.UAA_JWKS_URI_TIMEOUT = 1
    body = json.dumps(public_set(signing_key)).encode()

    def trickle(request: http.server.BaseHTTPRequestHandler, served: Any) -> None:
        request.send_response(HTTPStatus.OK)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        try:
            for position in range(len(body)):
                request.wfile.write(body[position : position + 1])
                request.wfile.flush()
                time.sleep(0.02)
        except OSError:
            pass  # UAA hung up: that is the point

    with http_server(trickle) as (port, _served):
        client = uri_client(f"http://127.0.0.1:{port}/jwks.json")
        started = time.monotonic()
        assert_refused(assertion_request(assertion(client.client_id, signing_key)))
        assert time.monotonic() - started < 2.5


def test_a_failing_jwks_uri_is_not_fetched_again_on_every_request(db, signing_key):
    """Negative caching: an unreachable or broken jwks_uri is tried once per interval, not per request."""
    with http_server(json_handler({"error": "down"}, status=500)) as (port, served):
        client = uri_client(f"http://127.0.0.1:{port}/jwks.json")
        for _ in range(5):
            assert_refused(assertion_request(assertion(client.client_id, signing_key)))
        assert served.requests == ["/jwks.json"]


@pytest.mark.parametrize(
    "claims",
    [{"exp": 1}, {"aud": "https://elsewhere.example"}, {"jti": None}, {"exp": int(time.time()) + 86400}],
)
def test_the_jwks_uri_is_not_fetched_for_an_assertion_that_fails_the_cheap_checks(db, signing_key, claims):
    """The claims an unauthenticated caller controls are checked before the network is touched."""
    with http_server(json_handler(public_set(signing_key))) as (port, served):
        client = uri_client(f"http://127.0.0.1:{port}/jwks.json")
        assert_refused(assertion_request(assertion(client.client_id, signing_key, **claims)))
        assert served.requests == []


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("100.64.0.1", False),  # shared address space (RFC 6598)
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.251", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2001:db8::1", False),  # documentation
        # the red team's (W2): each passed before
        ("2002:a00:1::", False),  # 6to4 (RFC 3056) of 10.0.0.1
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("64:ff9b:1::a00:1", False),  # RFC 8215 local-use NAT64 prefix
        ("::a00:1", False),  # IPv4-compatible (RFC 4291 §2.5.5.1, deprecated) 10.0.0.1
        ("::5db8:d822", False),  # IPv4-compatible, of a public address: no longer meaningful at all
        ("fec0::1", False),  # site-local (RFC 3879: deprecated, still routed inside some sites)
        ("::ffff:0:a00:1", False),  # IPv4-translated (RFC 2765) 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo (RFC 4380), client 10.0.0.1
        ("3fff::1", False),  # documentation (RFC 9637)
        ("5f00::1", False),  # SRv6 SIDs (RFC 9602)
        ("2002:5db8:d822::1", True),  # 6to4 of a public address
        ("64:ff9b::5db8:d822", True),  # NAT64 of a public address
        ("::ffff:93.184.216.34", True),  # IPv4-mapped public address
    ],
)
def test_destination_rules(production, address, allowed):
    """Production: globally reachable unicast addresses only (ipaddress ``is_global``), and an IPv4 address
    embedded in an IPv6 one (mapped, 6to4, NAT64, Teredo) must be one as well."""
    from uaa.oauth.remote_jwks import destination_allowed

    assert destination_allowed(ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize(
    "host", ["[2002:a00:1::]", "[64:ff9b:1::a00:1]", "[::a00:1]", "[fec0::1]", "[::ffff:0:a00:1]"]
)
def test_jwks_uris_naming_an_internal_address_inside_ipv6_are_refused_at_registration(db, production, host):
    """Red team W2: these literals passed the address check at registration."""
    with pytest.raises(ValidationError) as error:
        clean_with(f"https://{host}/jwks.json")
    assert "jwks_uri" in error.value.message_dict


@pytest.mark.parametrize("address", ["2002:a00:1::", "64:ff9b:1::a00:1", "::a00:1", "fec0::1"])
def test_a_name_resolving_to_an_internal_address_inside_ipv6_is_not_connected_to(
    db, production, resolver, signing_key, monkeypatch, address
):
    """Red team W2 at fetch time: the resolved address is checked by the same rule before any connection."""
    from uaa.oauth import remote_jwks

    connected: list[Any] = []
    monkeypatch.setattr(remote_jwks, "_connect", lambda *args: connected.append(args) or 1 / 0)
    resolver.answers["keys.example.net"] = [[address]]
    client = uri_client("https://keys.example.net/jwks.json")
    assert_refused(assertion_request(assertion(client.client_id, signing_key)))
    assert connected == []


def test_allowing_http_redirect_uris_does_not_allow_a_loopback_jwks_uri(db, settings, signing_key):
    """Red team W2: native apps need http loopback redirect URIs (RFC 8252 §7.3), which used to allow a
    loopback jwks_uri in production as well. Only UAA_JWKS_URI_ALLOW_LOOPBACK does now."""
    settings.UAA_JWKS_URI_ALLOW_LOOPBACK = False
    assert "http" in settings.OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"]
    for uri in ("http://127.0.0.1/jwks.json", "https://localhost/jwks.json", "https://[::1]/jwks.json"):
        with pytest.raises(ValidationError):
            clean_with(uri)
    with http_server(json_handler(public_set(signing_key))) as (port, served):
        client = stored_client(f"http://127.0.0.1:{port}/jwks.json")
        assert_refused(assertion_request(assertion(client.client_id, signing_key)))
        assert served.connections == 0


def test_an_operator_can_allow_an_internal_network(settings, production):
    from uaa.oauth.remote_jwks import destination_allowed

    settings.UAA_JWKS_URI_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert destination_allowed(ipaddress.ip_address("10.20.1.2"))
    assert not destination_allowed(ipaddress.ip_address("10.21.1.2"))
    assert not destination_allowed(ipaddress.ip_address("169.254.169.254"))


def _self_signed(tmp_path: Any) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


def test_an_https_jwks_uri_is_fetched_with_the_certificate_checked_for_the_name(
    db, tmp_path, monkeypatch, signing_key
):
    """The connection goes to the checked address, and TLS still verifies the certificate for the URL's
    host name (SNI and hostname check), not for the address."""
    from uaa.oauth import remote_jwks

    cert_file, key_file = _self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    body = json.dumps(public_set(signing_key)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        client = uri_client(f"https://localhost:{port}/jwks.json")
        untrusted = assertion_request(assertion(client.client_id, signing_key))
        assert untrusted.status_code == HTTPStatus.UNAUTHORIZED  # the system CAs do not trust it
        cache.clear()
        monkeypatch.setattr(remote_jwks, "_tls_context", lambda: ssl.create_default_context(cafile=cert_file))
        response = assertion_request(assertion(client.client_id, signing_key))
        assert response.status_code == HTTPStatus.OK, response.content
    finally:
        server.shutdown()
        server.server_close()


def test_create_client_validates_the_jwks_uri(db):
    """manage.py create_client --jwks-uri registers a private_key_jwt client through the same checks."""
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="user information"):
        call_command(
            "create_client",
            "--name",
            "svc",
            "--grant",
            "client_credentials",
            "--jwks-uri",
            "http://localhost:@evil.example/jwks.json",
            stdout=StringIO(),
        )
    out = StringIO()
    call_command(
        "create_client",
        "--name",
        "svc",
        "--grant",
        "client_credentials",
        "--jwks-uri",
        "https://keys.example.com/jwks.json",
        "--json",
        stdout=out,
    )
    created = json.loads(out.getvalue())
    assert created["client_secret"] is None  # a private_key_jwt client's secret authenticates nothing
    client = Client.objects.get(client_id=created["client_id"])
    assert client.token_endpoint_auth_method == Client.PRIVATE_KEY_JWT
