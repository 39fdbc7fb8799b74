"""RFC 8252 redirect URIs: which ones a client may register (``check_redirect_uri``, the one rule), and the
§7.3 loopback exception at the authorization endpoint; every other redirect URI matches exactly.

django-oauth-toolkit lets any port through for a registered ``http://127.0.0.1`` or ``http://[::1]``
redirect URI, whatever the client. That exception exists for native apps, which get an ephemeral port
from the operating system (RFC 8252 §7.3); a web client's loopback URI (local development, a second app
on one host) is an ordinary redirect URI and is compared exactly, port included (RFC 9700 §2.1, §4.1.3).
Everything else (scheme, host, path, query, no fragment, no userinfo) is DOT's comparison.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
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


# One rule for every redirect URI a client registers (the admin API, the Django admin, ``create_client``,
# uaa/oauth/services.py: all through Client.clean), RFC 8252 and RFC 9700 §2.1 / §4.1.1. The authority is
# read here, after RFC 3986 §3.2, never by urlsplit: it takes "http://[::1].evil.com/" for the host ::1.
MAX_URI = 2048
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")  # §7.3's literals; not localhost (§8.3), nor other spellings
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_PATH_AND_QUERY = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*")  # RFC 3986 pchar, "/" and "?"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def authority_problem(authority: str) -> tuple[str, str | None]:
    """``(host, None)`` for an RFC 3986 §3.2 authority without userinfo, else ``("", problem)``: a name or
    IPv4 address of letters, digits, '-' and '.', or a bracketed IPv6 address without a zone ID, then an
    optional port 1-65535. Read here, not by ``urlsplit``, which ignores what follows ']'. Also the issuer
    check's (uaa/checks.py)."""
    if "@" in authority:
        return "", "A redirect URI carries no user name or password (RFC 9700 §4.1.1)."
    if authority.startswith("["):  # §3.2.2 IP-literal: an IPv6 address, no zone ID, no IPvFuture
        host, bracket, after = authority.partition("]")
        host += bracket
        try:
            ipaddress.IPv6Address(host[1:-1])  # refuses an IPvFuture ("v1.x")
            valid = bool(bracket) and "%" not in host  # and a zone ID, which ipaddress takes
        except ValueError:
            valid = False
        if not valid or (after and not after.startswith(":")):
            return "", "Not a host: a bracketed IPv6 address, with nothing after ']' but a port."
    else:
        host, colon, port = authority.partition(":")
        after = colon + port
        if not all(_LABEL.fullmatch(label) for label in host.split(".")):
            return "", "Not a host: a name or an IPv4 address of letters, digits, '-' and '.'."
    if after and not (_PORT.fullmatch(after[1:]) and 0 < int(after[1:]) <= 65535):
        return "", "Not a URI: a port is 1 to 65535, in digits (RFC 3986 §3.2.3)."
    return host, None


def redirect_uri_problem(uri: str, *, schemes: Iterable[str], native: bool) -> str | None:
    """Why ``uri`` may not be registered as a redirect URI, or None. ``schemes`` are those the server
    allows (UAA_REDIRECT_URI_SCHEMES); ``native`` says the client is a public one (RFC 8252 §8.4)."""
    if len(uri) > MAX_URI or not uri.isascii() or not uri.isprintable() or any(c.isspace() for c in uri):
        return f"A URI of at most {MAX_URI} printable ASCII characters, without spaces (RFC 3986 §2)."
    if "#" in uri:
        return "A redirect URI has no fragment (RFC 6749 §3.1.2)."
    if _BAD_PERCENT.search(uri):
        return "A '%' begins a percent-encoded octet (RFC 3986 §2.1)."
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return "An absolute URI with a lower-case scheme (RFC 3986 §3.1)."
    if scheme not in {s.lower() for s in schemes}:
        return f"An absolute https URI, or one of UAA_REDIRECT_URI_SCHEMES; not {scheme}."
    if scheme in ("http", "https"):
        if not rest.startswith("//"):
            return "An absolute URI with a host (RFC 3986 §3.2)."
        end = min((i for i in (rest.find("/", 2), rest.find("?", 2)) if i != -1), default=len(rest))
        host, problem = authority_problem(rest[2:end])
        if problem:
            return problem
        if scheme == "http" and host not in LOOPBACK_HOSTS:
            return "https, or http on 127.0.0.1 or [::1] only (RFC 8252 §7.3; not localhost, §8.3)."
        path = rest[end:]
    else:
        if not native:
            return "A private-use URI scheme is for native apps, which are public clients (RFC 8252 §7.1)."
        labels = scheme.split(".")
        if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
            return (
                "A private-use URI scheme is a reversed domain name, such as com.example.app (RFC 8252 §7.1)."
            )
        if not rest.startswith("/") or rest.startswith("//"):
            return (
                "A private-use URI scheme takes one slash and no host: com.example.app:/path (RFC 8252 §7.1)."
            )
        path = rest
    if not _PATH_AND_QUERY.fullmatch(path) or not (path == "" or path[0] in "/?"):
        return "A path and query of RFC 3986 characters (§3.3, §3.4)."
    return None


def check_redirect_uri(uri: str, *, schemes: Iterable[str], native: bool) -> None:
    """Raise ``ValidationError`` with :func:`redirect_uri_problem`'s reason, if any."""
    problem = redirect_uri_problem(uri, schemes=schemes, native=native)
    if problem:
        raise ValidationError(problem, code="invalid_redirect_uri")
