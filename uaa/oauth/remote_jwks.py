"""A private_key_jwt client's ``jwks_uri`` (OIDC Dynamic Client Registration §2), checked and fetched
without letting a caller use UAA as an HTTP client into its own network (OWASP SSRF prevention).

* The URL (at registration and again at every fetch): ``https``, or ``http`` to a loopback host only
  where ``UAA_JWKS_URI_ALLOW_LOOPBACK`` says so (local use and tests; http redirect URIs for native apps
  do not); no user information (RFC 9110 §4.2.4), no fragment, a host read with ``urlsplit().hostname``.
* The destination: the host is resolved once, every address is checked (allowed, not denied: globally
  reachable unicast only, by ``ipaddress``'s ``is_global`` and the IANA special-purpose registries; an
  IPv4 address inside an IPv6 one, IPv4-mapped, 6to4, NAT64 or Teredo, must be allowed as well; loopback
  where ``UAA_JWKS_URI_ALLOW_LOOPBACK``; ``UAA_JWKS_URI_ALLOWED_NETWORKS`` for an operator's exceptions),
  and the connection goes to a checked address, so a second DNS answer (rebinding) cannot swap it. TLS
  still verifies the certificate for the URL's host name.
* The fetch: no redirects, status 200 only, at most ``MAX_BYTES``, one ``UAA_JWKS_URI_TIMEOUT`` deadline
  for resolving, connecting, TLS and reading together.
* The cache (Django's cache, shared where ``CACHE_URL`` says): a document for ``CACHE_SECONDS``, a
  failure for ``FAILURE_CACHE_SECONDS``, so a broken or hostile URL is not fetched on every request.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024  # a JWK Set is a few kilobytes
CACHE_SECONDS = 300
FAILURE_CACHE_SECONDS = 60
LOOPBACK_NAMES = frozenset({"localhost"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is embedded in the last 32 bits
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")  # RFC 3056: the IPv4 address is bits 16-47
TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380: the server's and the (obscured) client's IPv4 address
# Not globally reachable, though the ipaddress of some Python versions says so (its tables predate them):
NOT_GLOBAL = tuple(
    ipaddress.ip_network(network)
    for network in (
        "::/96",  # IPv4-compatible addresses (RFC 4291 §2.5.5.1, deprecated): nothing routes them
        "::ffff:0:0:0/96",  # IPv4-translated addresses (RFC 2765 §2.1)
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation (RFC 8215): inside the operator's network
        "fec0::/10",  # site-local (RFC 3879: deprecated, still routed inside some sites)
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
        "192.88.99.0/24",  # 6to4 relay anycast (RFC 7526, deprecated)
    )
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="uaa-jwks-dns")


class UnsafeURI(ValueError):
    """The URL, or where it leads, is not one UAA fetches (the message is for the admin)."""


class FetchFailed(Exception):
    """The JWK Set could not be fetched (logged; the client only sees invalid_client)."""


def loopback_allowed() -> bool:
    """Loopback (and plain http to it) only where ``UAA_JWKS_URI_ALLOW_LOOPBACK`` says so: a local setup or
    the tests. Not implied by http redirect URIs, which native apps need in production (RFC 8252 §7.3)."""
    return bool(settings.UAA_JWKS_URI_ALLOW_LOOPBACK)


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a connection to ``address`` may end up at, through a translator or a tunnel:
    NAT64 (RFC 6052), 6to4 (RFC 3056), Teredo (RFC 4380: the server and the client)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    if address in NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address in SIX_TO_FOUR and address.sixtofour is not None:
        return [address.sixtofour]
    if address in TEREDO and address.teredo is not None:
        return list(address.teredo)
    return []


def _operator_allows(address: IPAddress) -> bool:
    for network in settings.UAA_JWKS_URI_ALLOWED_NETWORKS:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


def _globally_reachable(address: IPAddress) -> bool:
    return (
        address.is_global
        and not address.is_multicast
        and not any(address.version == network.version and address in network for network in NOT_GLOBAL)
    )


def destination_allowed(address: IPAddress) -> bool:
    """Allowed, never merely not denied: a globally reachable unicast address, and every IPv4 address
    embedded in it one as well; loopback where ``loopback_allowed()``; the operator's allowed networks."""
    if _operator_allows(address):
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return destination_allowed(address.ipv4_mapped)  # the same host as its IPv4 address
    if address.is_loopback:
        return loopback_allowed()
    return _globally_reachable(address) and all(
        _globally_reachable(inner) or _operator_allows(inner) for inner in _embedded_ipv4(address)
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_uri(uri: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an acceptable ``jwks_uri``; ``UnsafeURI`` otherwise."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURI("The JWK Set URL is malformed.") from exc
    scheme = parts.scheme.lower()
    if not uri.isascii() or any(c.isspace() or ord(c) < 0x20 for c in uri):
        raise UnsafeURI("The JWK Set URL must be ASCII without spaces (percent-encode the rest).")
    if scheme not in ("https", "http"):
        raise UnsafeURI("The JWK Set URL must be https.")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UnsafeURI("The JWK Set URL must not contain user information (user:password@).")
    if parts.fragment or "#" in uri:
        raise UnsafeURI("The JWK Set URL must not have a fragment.")
    host = parts.hostname or ""
    if not host or not host.isascii() or any(c in host for c in "\\%") or host.endswith("."):
        raise UnsafeURI("The JWK Set URL needs a host name (ASCII: IDNA names in their xn-- form).")
    literal = _literal(host)
    loopback = host in LOOPBACK_NAMES or host.endswith(".localhost") or bool(literal and literal.is_loopback)
    if scheme == "http" and not (loopback and loopback_allowed()):
        raise UnsafeURI("The JWK Set URL must be https.")
    if loopback and not loopback_allowed():
        raise UnsafeURI("The JWK Set URL must not point at this server (loopback).")
    if literal is not None and not destination_allowed(literal):
        raise UnsafeURI("The JWK Set URL must not point at a private, loopback or reserved address.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchFailed("deadline exceeded")
    return left


def _resolve(host: str, port: int, deadline: float) -> list[tuple[int, tuple[Any, ...]]]:
    """Every address of ``host``, each one checked; an unacceptable one refuses them all."""
    literal = _literal(host)
    candidates: list[tuple[int, tuple[Any, ...]]]
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        candidates = [
            (family, (str(literal), port) if family == socket.AF_INET else (str(literal), port, 0, 0))
        ]
    else:
        future = _resolver.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            answers = future.result(timeout=_remaining(deadline))
        except FutureTimeout as exc:
            raise FetchFailed("DNS resolution timed out") from exc
        except OSError as exc:
            raise FetchFailed("DNS resolution failed") from exc
        candidates = [(family, sockaddr) for family, _, _, _, sockaddr in answers]
    if not candidates:
        raise FetchFailed("the host has no address")
    for _, sockaddr in candidates:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not destination_allowed(address):
            raise FetchFailed(f"the host resolves to a refused address ({address})")
    return candidates


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _connect(candidates: list[tuple[int, tuple[Any, ...]]], deadline: float) -> socket.socket:
    """A TCP connection to the first checked address that answers (no further name lookups)."""
    error: OSError | None = None
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise FetchFailed("could not connect") from error


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection over a socket already connected to a checked address."""

    def __init__(self, host: str, port: int, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=sock.gettimeout())
        self._pinned, self._tls = sock, tls

    def connect(self) -> None:
        sock = self._pinned
        if self._tls is not None:  # SNI and certificate verification for the URL's host name
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


def _abort(connection: http.client.HTTPConnection, sock: socket.socket) -> None:
    """The deadline passed: unblock whatever read or handshake is waiting (a trickling server included)."""
    for candidate in (connection.sock, sock):
        try:
            candidate.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            continue


def _get(uri: str) -> dict[str, Any]:
    scheme, host, port, path = check_uri(uri)
    deadline = time.monotonic() + float(settings.UAA_JWKS_URI_TIMEOUT)
    candidates = _resolve(host, port, deadline)
    sock = _connect(candidates, deadline)
    connection = _PinnedConnection(host, port, sock, _tls_context() if scheme == "https" else None)
    watchdog = threading.Timer(_remaining(deadline), _abort, args=(connection, sock))
    watchdog.daemon = True
    watchdog.start()
    body = bytearray()
    try:
        connection.request("GET", path, headers={"Accept": "application/json", "User-Agent": "UAA"})
        response = connection.getresponse()
        if response.status != http.client.OK:
            raise FetchFailed(f"status {response.status} (redirects are not followed)")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > MAX_BYTES:
            raise FetchFailed("the document is too large")
        while chunk := response.read1(8192):
            body += chunk
            if len(body) > MAX_BYTES:
                raise FetchFailed("the document is too large")
            _remaining(deadline)
        _remaining(deadline)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise FetchFailed("the request failed or timed out") from exc
    finally:
        watchdog.cancel()
        connection.close()
        sock.close()
    try:
        document = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:  # RecursionError: 64 KiB of "[" is valid JSON, too deep
        raise FetchFailed("the document is not JSON") from exc
    if not is_jwk_set_shaped(document):
        raise FetchFailed("the document is not a JWK Set")
    return document


def _jwk_member(value: Any) -> bool:
    """A JWK member (RFC 7517 §4, RFC 7518 §6): a string, number or boolean, or a list of strings (x5c,
    key_ops), or RSA's "oth" (a list of flat objects). Nothing nests deeper."""
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list):
        return all(
            isinstance(item, str)
            or (isinstance(item, dict) and all(isinstance(v, str) for v in item.values()))
            for item in value
        )
    return False


def is_jwk_set_shaped(document: Any) -> bool:
    """RFC 7517 §5: an object whose "keys" is a list of JWK objects (members as ``_jwk_member``). A
    document nested deeper than that is refused here, before it is cached, re-serialised or parsed again."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return False
    for key in document["keys"]:
        if not isinstance(key, dict) or not all(_jwk_member(value) for value in key.values()):
            return False
    return all(_jwk_member(value) for name, value in document.items() if name != "keys")


def _cache_key(uri: str) -> str:
    return "uaa:jwks_uri:" + hashlib.sha256(uri.encode()).hexdigest()


def fetch_jwks(uri: str) -> dict[str, Any]:
    """The JWK Set document at ``uri`` (cached), or ``FetchFailed`` (also cached, for a shorter time)."""
    key = _cache_key(uri)
    cached = cache.get(key)
    if isinstance(cached, dict):
        if "failed" in cached:
            raise FetchFailed(cached["failed"])
        return cached["document"]
    try:
        document = _get(uri)
    except (UnsafeURI, FetchFailed) as exc:
        reason = str(exc) or type(exc).__name__
        cache.set(key, {"failed": reason}, FAILURE_CACHE_SECONDS)
        logger.warning("oauth.jwks_uri_failed", extra={"reason": reason, "jwks_uri_sha256": key[-64:][:8]})
        raise FetchFailed(reason) from exc
    cache.set(key, {"document": document}, CACHE_SECONDS)
    return document
