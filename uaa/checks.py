"""UAA's configuration errors as Django system checks, registered by uaa/apps.py (as django-oauth-toolkit's
and allauth's checks are registered by their app configs).

uaa/settings.py only reads the environment. A missing secret stops it there (``env(..., default=REQUIRED)``);
every other configuration error is found here, from the settings' values:

- ``uaa.E001``: ``SECRET_KEY``, ``UAA_ISSUER``, ``UAA_KEK`` or ``UAA_KEK_FILE`` set but unusable (issue 8
  item 13). ``UAA_ISSUER=`` (or ``/``) served discovery with issuer "" and issued tokens for it;
  ``SECRET_KEY=`` started and answered 500 on every page; a junk ``UAA_KEK``, or a ``UAA_KEK_FILE`` naming
  a missing file, started and answered 500 on every token request (the KEK is read on first use).
- ``uaa.E002``: an ``http`` issuer on a host that is not loopback, whatever ``DEBUG`` or
  ``UAA_ALLOW_HTTP_ISSUER`` say (issue 13 item 5).
- ``uaa.E003``: ``UAA_ACCESS_TOKEN_ALG`` that is not RS256, ES256 or EdDSA.
- ``uaa.E004``: ``UAA_KEY_PREPUBLISH_SECONDS`` shorter than ``UAA_JWKS_MAX_AGE``.
- ``uaa.E005``: ``UAA_TRUSTED_PROXIES`` that is not a list of addresses or networks (a hop count, ``*``).
- ``uaa.E006``: ``UAA_BEHIND_PROXY`` set (removed: ``UAA_TRUSTED_PROXIES`` is the one proxy setting).
- ``uaa.E007``: ``UAA_CLIENT_SECRET_GRACE_SECONDS`` below 0 or above 30 days (``MAX_SECRET_GRACE_SECONDS``).

Production refuses to start with any of them: ``UAAConfig.ready`` calls ``refuse_to_start``, so
``django.setup()`` (gunicorn's workers, Celery, every ``manage.py`` command) raises ``ImproperlyConfigured``
naming them all before anything is served. ``manage.py check`` (and ``migrate``, which runs the checks)
reports the same with their ids.

The rules: the issuer is an absolute ``https`` URL with a host and no query, fragment (even empty ones) or
user information (OpenID Connect Discovery 1.0 §3, RFC 8414 §2), with the scheme in lower case, no trailing
dot on the host and no backslash (relying parties compare it as an exact string, OpenID Connect Core 1.0
§3.1.3.7, RFC 9207 §2.4, and ``settings.SECURE`` looks for ``https://``; the host's case is free, RFC 3986
§3.2.2, ALLOWED_HOSTS lowers it). ``http`` only on a loopback host (``localhost``, 127.0.0.0/8, ``::1``, and
Django's test host ``testserver``) and only with ``DEBUG`` or ``UAA_ALLOW_HTTP_ISSUER`` (a laptop, a
benchmark, a test). ``SECRET_KEY`` is at least 50 characters without ``DEBUG`` (Django's own
``security.W009`` length). ``UAA_KEK`` is one or more base64url 32-byte keys, comma separated (what
tokens/keys.py decodes); ``UAA_KEK_FILE``, when it is what is used or is named, exists and holds the same.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from tokens.clientip import parse_trusted_proxies
from uaa.oauth.rfc8252 import authority_problem
from uaa.oauth.services import MAX_SECRET_GRACE_SECONDS

SECRET_KEY_MIN_LENGTH = 50
ACCESS_TOKEN_ALGORITHMS = ("RS256", "ES256", "EdDSA")
REMOVED_VARIABLES = {
    "UAA_BEHIND_PROXY": (
        "UAA_BEHIND_PROXY was removed: UAA_TRUSTED_PROXIES lists the proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (empty: none). Unset UAA_BEHIND_PROXY."
    ),
}
LOOPBACK_NAMES = frozenset({"localhost"})
# Django's test client's host: no resolver answers for it, so an issuer there reaches nobody else either.
TEST_HOSTS = frozenset({"testserver"})
HTTP_ISSUER_OFF_LOOPBACK = (
    "UAA_ISSUER may use http on a loopback host only (localhost, 127.0.0.0/8, ::1; with DEBUG or "
    "UAA_ALLOW_HTTP_ISSUER, for a laptop, a benchmark or a test); {host} is not one: use https."
)


def _issuer_problems(issuer: str, *, debug: bool, allow_http: bool) -> list[str]:
    if not issuer:
        return ["UAA_ISSUER is empty: set it to the issuer's https URL, e.g. https://id.example.com."]
    if not issuer.isascii() or any(char.isspace() or ord(char) < 0x20 for char in issuer):
        return ["UAA_ISSUER must be an ASCII URL without spaces."]
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018  # raises ValueError for a port that is no number
    except ValueError:
        return ["UAA_ISSUER is not a URL."]
    found = []
    if "\\" in issuer:
        return ["UAA_ISSUER is not a URL (a backslash is no URL character, RFC 3986 §2)."]
    if parts.scheme not in ("https", "http") or not parts.hostname:
        found.append("UAA_ISSUER must be an absolute https URL with a host, e.g. https://id.example.com.")
    elif parts.scheme == "http" and not (debug or allow_http):
        found.append(
            "UAA_ISSUER must use https (OpenID Connect Discovery 1.0 §3); http only with DEBUG or "
            "UAA_ALLOW_HTTP_ISSUER=true on a loopback address."
        )
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        found.append("UAA_ISSUER must have no query or fragment (RFC 8414 §2).")
    if "@" in parts.netloc:
        found.append("UAA_ISSUER must not contain user information (user@).")
    if not issuer.startswith(f"{parts.scheme}:"):
        found.append(
            f"UAA_ISSUER's scheme must be written {parts.scheme}:// in lower case: relying parties compare "
            "the issuer as an exact string (OpenID Connect Core 1.0 §3.1.3.7)."
        )
    if (parts.hostname or "").endswith("."):
        found.append("UAA_ISSUER's host must not end with a dot: write the name as clients know it.")
    if "@" not in parts.netloc and authority_problem(parts.netloc)[1] is not None:
        # urlsplit ignores what follows "]" ("http://[::1].evil.com" reads as the host ::1)
        found.append(
            "UAA_ISSUER's authority must be a host and an optional port, nothing else: a name, an IPv4 "
            "address or a bracketed IPv6 address without a zone (RFC 3986 §3.2), and a port of digits."
        )
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        found.append("UAA_ISSUER's path must not have '.' or '..' segments: write it as clients know it.")
    return found


def http_issuer_off_loopback(issuer: str) -> str | None:
    """``uaa.E002``'s message for an ``http`` issuer whose host is not loopback; ``None`` otherwise."""
    try:
        parts = urlsplit(issuer)
    except ValueError:
        return None  # uaa.E001 says it is not a URL
    if parts.scheme != "http" or not parts.hostname:
        return None
    host = parts.hostname  # lower case; RFC 6761's *.localhost may be answered by the DNS: not loopback here
    if host in LOOPBACK_NAMES or host in TEST_HOSTS or is_loopback_literal(host):
        return None
    return HTTP_ISSUER_OFF_LOOPBACK.format(host=host[:64])


def is_loopback_literal(host: str) -> bool:
    """127.0.0.0/8 in dotted-quad form or ``::1``; never an IPv4-mapped address or a shorthand (127.1)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback and not (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped)


def _decodes_to_keys(text: str) -> bool:
    parts = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    if not parts:
        return False
    for part in parts:
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (ValueError, binascii.Error):
            return False
        if len(raw) != 32:
            return False
    return True


def _kek_problems(kek: str, kek_file: str, *, debug: bool, file_named: bool) -> list[str]:
    if kek.strip():
        if not _decodes_to_keys(kek):
            return ["UAA_KEK must be one or more base64url-encoded 32-byte keys, comma separated."]
        if not file_named:
            return []
    if not kek_file:
        return ["Set UAA_KEK (or UAA_KEK_FILE): the key-encryption key for signing keys."]
    path = Path(kek_file)
    if debug and not path.exists() and not file_named:
        return []  # the local development KEK, made on first use (tokens/keys.py)
    try:
        text = path.read_text()
    except OSError:
        return [f"UAA_KEK_FILE {kek_file} does not exist or cannot be read."]
    if not kek.strip() and not _decodes_to_keys(text):
        return [f"UAA_KEK_FILE {kek_file} must hold base64url-encoded 32-byte keys, one per line or comma."]
    return []


def problems(
    *,
    debug: bool,
    secret_key: str,
    issuer: str,
    allow_http_issuer: bool,
    kek: str,
    kek_file: str,
    kek_file_named: bool,
) -> list[str]:
    """Everything wrong with these values for a process to start with (empty: nothing)."""
    found = []
    if not debug and len(secret_key.strip()) < SECRET_KEY_MIN_LENGTH:
        found.append(
            f"SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters (it is "
            f"{'empty' if not secret_key.strip() else f'{len(secret_key)}'}): "
            'python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )
    found += _issuer_problems(issuer, debug=debug, allow_http=allow_http_issuer)
    found += _kek_problems(kek, kek_file, debug=debug, file_named=kek_file_named)
    return found


def _secret_key(settings: Any) -> str:
    try:
        return str(settings.SECRET_KEY or "")
    except ImproperlyConfigured:  # django.conf refuses to hand out an empty one: say which rule it breaks
        return ""


def _from_settings(settings: Any) -> list[str]:
    return problems(
        debug=bool(settings.DEBUG),
        secret_key=_secret_key(settings),
        issuer=str(settings.UAA_ISSUER or ""),
        allow_http_issuer=bool(getattr(settings, "UAA_ALLOW_HTTP_ISSUER", False)),
        kek=str(settings.UAA_KEK or ""),
        kek_file=str(settings.UAA_KEK_FILE or ""),
        kek_file_named=bool(getattr(settings, "UAA_KEK_FILE_NAMED", False)),
    )


def configuration_errors(settings: Any) -> list[checks.CheckMessage]:
    """What no process may start with: ``uaa.E001`` to ``uaa.E007``."""
    found: list[checks.CheckMessage] = [
        checks.Error(problem, id="uaa.E001") for problem in _from_settings(settings)
    ]
    if settings.UAA_ACCESS_TOKEN_ALG not in ACCESS_TOKEN_ALGORITHMS:
        found.append(checks.Error("UAA_ACCESS_TOKEN_ALG must be RS256, ES256 or EdDSA.", id="uaa.E003"))
    if settings.UAA_KEY_PREPUBLISH_SECONDS < settings.UAA_JWKS_MAX_AGE:
        found.append(
            checks.Error("UAA_KEY_PREPUBLISH_SECONDS must be at least UAA_JWKS_MAX_AGE.", id="uaa.E004")
        )
    try:
        parse_trusted_proxies(settings.UAA_TRUSTED_PROXIES)
    except ImproperlyConfigured as exc:
        found.append(checks.Error(str(exc), id="uaa.E005"))
    if not 0 <= settings.UAA_CLIENT_SECRET_GRACE_SECONDS <= MAX_SECRET_GRACE_SECONDS:
        found.append(
            checks.Error(
                f"UAA_CLIENT_SECRET_GRACE_SECONDS must be from 0 to {MAX_SECRET_GRACE_SECONDS} (30 days).",
                id="uaa.E007",
            )
        )
    removed = [message for name, message in REMOVED_VARIABLES.items() if name in os.environ]
    found += [checks.Error(message, id="uaa.E006") for message in removed]
    off_loopback = http_issuer_off_loopback(str(settings.UAA_ISSUER or ""))
    if off_loopback:
        found.append(checks.Error(off_loopback, id="uaa.E002"))
    return found


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The system check (registered by uaa/apps.py): every configuration error."""
    from django.conf import settings

    return configuration_errors(settings)


def refuse_to_start() -> None:
    """Stop the process (``ImproperlyConfigured``) naming every configuration error at once; called by
    ``UAAConfig.ready``, so by ``django.setup()`` in every process."""
    from django.conf import settings

    found = configuration_errors(settings)
    if found:
        raise ImproperlyConfigured("Refusing to start: " + " ".join(f"[{e.id}] {e.msg}" for e in found))
