"""The client's IP address behind the reverse proxies named by ``UAA_TRUSTED_PROXIES`` (used by throttling and
the audit ledger alike, so both see the same address; here, in the lowest layer, so that both may import it).

``UAA_TRUSTED_PROXIES`` is the one list of peers whose forwarded headers are believed: UAA reads
``X-Forwarded-For`` from them here, and the WSGI server reads ``X-Forwarded-Proto`` from them (gunicorn's
``--forwarded-allow-ips``, given the same value by docker-compose.yml and the Dockerfile). From any other
peer those headers are the client's own words and change nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

HOP_COUNT_REMOVED = (
    "UAA_TRUSTED_PROXIES lists the addresses or networks (CIDR, comma-separated) that reverse proxies "
    "connect to UAA from, not how many there are: for example 127.0.0.1 for nginx on the same host, or the "
    "subnet of docker-compose.yml's backend network. Leave it empty when no proxy is in front of UAA."
)


def parse_trusted_proxies(value: str | Iterable[str]) -> tuple[Network, ...]:
    """The networks of ``value`` (a comma-separated string or a list; a bare address is a /32 or /128).

    Refused with ``ImproperlyConfigured``: a number (the hop count this setting once was, which believed the
    header from any peer), anything that is not an address or a network with no host bits set (gunicorn
    refuses the same), and a network as wide as every address (``*``, ``0.0.0.0/0``, ``::/0``), which
    would believe every client."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    networks: list[Network] = []
    for part in (str(item).strip() for item in parts):
        if not part:
            continue
        if part.isdigit():
            raise ImproperlyConfigured(HOP_COUNT_REMOVED)
        try:
            network = ipaddress.ip_network(part)
        except ValueError:
            raise ImproperlyConfigured(
                f"UAA_TRUSTED_PROXIES: {part[:64]!r} is not an IP address or a network such as 10.0.0.0/24 "
                "(with no host bits set)."
            ) from None
        if network.prefixlen == 0:
            raise ImproperlyConfigured(
                "UAA_TRUSTED_PROXIES: a network of every address would believe every client."
            )
        networks.append(network)
    return tuple(networks)


@lru_cache(maxsize=8)
def _trusted(value: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_trusted_proxies(value)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 peer of a dual-stack socket
    return address


def is_trusted_proxy(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(meta: Mapping[str, str]) -> str:
    """``REMOTE_ADDR``; when that is a trusted proxy, the first address in ``X-Forwarded-For``, read from the
    right, that is not one (each trusted proxy appends the address it saw; what is further left was written
    by the client and is never reached). An entry that is not an address ends the walk at the last trusted
    hop. ``meta`` is a Django ``request.META`` (or oauthlib's copy of it)."""
    remote = meta.get("REMOTE_ADDR", "")
    networks = _trusted(tuple(settings.UAA_TRUSTED_PROXIES))
    current = _address(remote)
    if current is None or not networks or not is_trusted_proxy(current, networks):
        return remote
    forwarded = [part for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for entry in reversed(forwarded):
        hop = _address(entry)
        if hop is None:
            break
        current = hop
        if not is_trusted_proxy(current, networks):
            break
    return str(current)
