"""The SSO session's authentication context: when and how the user signed in (auth_time, amr, acr, sid)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

AUTH_TIME = "uaa_auth_time"
AMR = "uaa_amr"
ACR = "uaa_acr"
SID = "uaa_sid"


def start(request: HttpRequest, *, amr: list[str], acr: str = "") -> None:
    """Record a completed sign-in on the (already rotated) session."""
    request.session[AUTH_TIME] = timezone.now().isoformat()
    request.session[AMR] = list(amr)
    request.session[ACR] = acr
    request.session[SID] = secrets.token_urlsafe(16)


def auth_time(request: HttpRequest) -> datetime | None:
    value = request.session.get(AUTH_TIME)
    return parse_datetime(value) if isinstance(value, str) else None


def session_is_fresh(request: HttpRequest, *, max_age: int | None) -> bool:
    """OIDC Core §3.1.2.1 ``max_age``: the last active authentication is at most ``max_age`` seconds old."""
    if max_age is None:
        return True
    signed_in = auth_time(request)
    return signed_in is not None and (timezone.now() - signed_in).total_seconds() <= max_age


def auth_context(request: HttpRequest) -> dict[str, Any]:
    signed_in = auth_time(request)
    return {
        "auth_time": signed_in.isoformat() if signed_in else None,
        "amr": list(request.session.get(AMR, [])),
        "acr": request.session.get(ACR, ""),
        "sid": request.session.get(SID, ""),
    }
