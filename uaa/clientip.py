"""The client's IP address, honouring ``UAA_TRUSTED_PROXIES`` reverse proxies (used by throttling and the
audit ledger alike, so both see the same address)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from django.conf import settings


def client_address(meta: Mapping[str, str]) -> str:
    """``REMOTE_ADDR``, or behind ``UAA_TRUSTED_PROXIES`` reverse proxies the address the outermost of them
    saw (that many entries from the right of ``X-Forwarded-For``; entries further left are the client's
    own claims and are ignored). ``meta`` is a Django ``request.META`` (or oauthlib's copy of it)."""
    hops = settings.UAA_TRUSTED_PROXIES
    if hops > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            try:
                return str(ipaddress.ip_address(forwarded[-hops]))
            except ValueError:
                pass
    return meta.get("REMOTE_ADDR", "")
