"""RFC 8252 §7.3 loopback redirect URIs, for native apps only; every other redirect URI matches exactly.

django-oauth-toolkit lets any port through for a registered ``http://127.0.0.1`` or ``http://[::1]``
redirect URI, whatever the client. That exception exists for native apps, which get an ephemeral port
from the operating system (RFC 8252 §7.3); a web client's loopback URI (local development, a second app
on one host) is an ordinary redirect URI and is compared exactly, port included (RFC 9700 §2.1, §4.1.3).
Everything else (scheme, host, path, query, no fragment, no userinfo) is DOT's comparison.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from oauth2_provider.models import redirect_to_uri_allowed

logger = logging.getLogger(__name__)

_NOT_A_PORT = object()


def _port(uri: str) -> object:
    """The URI's port (None when it names none), or ``_NOT_A_PORT`` when its port cannot be parsed."""
    try:
        return urlsplit(uri).port
    except ValueError:  # a non-numeric port or one beyond 65535 (RFC 3986 §3.2.3)
        return _NOT_A_PORT


def is_registered(*, uri: str, registered: list[str], any_loopback_port: bool, client_id: str) -> bool:
    """Whether ``uri`` is one of ``registered``; ``any_loopback_port`` only for a native (public) client."""
    port = _port(uri)
    if port is not _NOT_A_PORT:
        for candidate in registered:
            if redirect_to_uri_allowed(uri, [candidate]) and (any_loopback_port or _port(candidate) == port):
                return True
    logger.info("oauth.redirect_uri_not_registered", extra={"client_id": client_id})
    return False
