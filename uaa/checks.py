"""Settings a production process must refuse to start with, even when each one is set (issue 8 item 13).

A variable that is set but empty passes ``env(..., default=REQUIRED)``: ``UAA_ISSUER=`` (or ``/``) served
discovery with issuer "" and issued tokens for it; ``SECRET_KEY=`` started and answered 500 on every page;
a junk ``UAA_KEK``, or a ``UAA_KEK_FILE`` naming a missing file, started and answered 500 on every token
request (the KEK is read on first use). ``problems`` finds all of these from the values alone, so that:

- uaa/settings.py calls ``refuse_to_start`` at import: every process (gunicorn's workers, Celery, every
  ``manage.py`` command) stops with ``ImproperlyConfigured`` before it serves anything;
- the system check ``uaa.E001`` reports the same on ``manage.py check`` (and ``migrate``, which runs the
  checks) for settings changed after import, and adds what only makes sense there: an http issuer allowed
  by ``UAA_ALLOW_HTTP_ISSUER`` for a host that is not this machine (``uaa.E002``).

The rules: the issuer is an absolute ``https`` URL with a host and no query, fragment or user information
(OpenID Connect Discovery 1.0 §3, RFC 8414 §2); ``http`` only with ``DEBUG`` or ``UAA_ALLOW_HTTP_ISSUER``
(a laptop, a test). ``SECRET_KEY`` is at least 50 characters without ``DEBUG`` (Django's own
``security.W009`` length). ``UAA_KEK`` is one or more base64url 32-byte keys, comma separated (what
tokens/keys.py decodes); ``UAA_KEK_FILE``, when it is what is used or is named, exists and holds the same.
Imports nothing from UAA, so that the settings module can.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

SECRET_KEY_MIN_LENGTH = 50
LOOPBACK_NAMES = frozenset({"localhost"})
# Django's test client's host: no resolver answers for it, so an issuer there reaches nobody else either.
TEST_HOSTS = frozenset({"testserver"})


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
    return found


def is_loopback_host(host: str) -> bool:
    host = host.lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def refuse_to_start(found: Sequence[str]) -> None:
    """Stop the process (``ImproperlyConfigured``) naming every problem at once."""
    if found:
        raise ImproperlyConfigured("Refusing to start: " + " ".join(found))


def _from_settings(settings: Any) -> list[str]:
    return problems(
        debug=bool(settings.DEBUG),
        secret_key=str(settings.SECRET_KEY or ""),
        issuer=str(settings.UAA_ISSUER or ""),
        allow_http_issuer=bool(getattr(settings, "UAA_ALLOW_HTTP_ISSUER", False)),
        kek=str(settings.UAA_KEK or ""),
        kek_file=str(settings.UAA_KEK_FILE or ""),
        kek_file_named=bool(getattr(settings, "UAA_KEK_FILE_NAMED", False)),
    )


@checks.register(checks.Tags.security)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``uaa.E001``: what ``refuse_to_start`` refuses; ``uaa.E002``: an http issuer that is not loopback."""
    from django.conf import settings

    found: list[checks.CheckMessage] = [
        checks.Error(problem, id="uaa.E001") for problem in _from_settings(settings)
    ]
    issuer = urlsplit(str(settings.UAA_ISSUER or ""))
    if (
        issuer.scheme == "http"
        and not settings.DEBUG
        and issuer.hostname
        and not is_loopback_host(issuer.hostname)
        and issuer.hostname.lower() not in TEST_HOSTS
    ):
        found.append(
            checks.Error(
                "UAA_ALLOW_HTTP_ISSUER allows an http issuer on a loopback address only (a laptop, a test); "
                f"{issuer.hostname} is not one: use https.",
                id="uaa.E002",
            )
        )
    return found
