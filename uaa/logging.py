"""JSON log formatter and a filter that redacts secret-bearing keys (a second line of defence)."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

SECRET_KEYS = frozenset(
    {
        "password",
        "client_secret",
        "code",
        "code_verifier",
        "access_token",
        "refresh_token",
        "id_token",
        "id_token_hint",
        "token",
        "authorization",
        "cookie",
        "secret",
        "assertion",
        "client_assertion",
        "otp",
    }
)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_INLINE_SECRET = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_KEYS, key=len, reverse=True)) + r")=([^&\s'\"]+)"
)
# A JWT anywhere in free text (three base64url parts starting with a JSON header).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/=]+")


def redact_text(text: str) -> str:
    """Mask ``key=value`` pairs of known secret keys and Authorization credentials in free text."""
    text = _INLINE_SECRET.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    text = _JWT.sub("[redacted-jwt]", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)


def describe_request(request: HttpRequest) -> str:
    """A request as logs may show it: method and path, never the query string, body or headers."""
    return f"{request.method} {request.path}"


def redact_value(key: str, value: Any) -> Any:
    if key.lower() in SECRET_KEYS:
        return "[redacted]"
    if isinstance(value, HttpRequest):  # Django's django.request logger passes the request itself
        return describe_request(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactSecretsFilter(logging.Filter):
    """Redact secret-bearing extra fields and inline ``key=value`` secrets in messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = redact_value(key, value)
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: redact_value(str(k), v) for k, v in record.args.items()}
            else:
                record.args = tuple(redact_value("", a) for a in record.args)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, and every ``extra=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = (
                    value
                    if isinstance(value, str | int | float | bool | None | list | dict)
                    else redact_text(str(value))
                )
        if record.exc_info:
            body["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


class ClientFaultFilter(logging.Filter):
    """Django's ``django.security.*`` refusals of malformed requests (a body over the size limit, too many
    fields, a foreign Host header) are the client's fault, not a surprise of ours: log them as warnings,
    without a traceback, so that a flood of bad requests cannot fill the ERROR log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True
