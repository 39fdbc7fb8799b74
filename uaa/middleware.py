"""Request ids and the security headers every response carries."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

_REQUEST_ID = re.compile(r"^[A-Za-z0-9\-]{8,64}$")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


class RequestIdMiddleware:
    """Give every request an id (a well-formed inbound ``X-Request-ID`` or a new UUID) and echo it back.

    Error responses quote it so an operator can find the server-side log line.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        inbound = request.headers.get("X-Request-ID", "")
        request.request_id = inbound if _REQUEST_ID.match(inbound) else uuid.uuid4().hex  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response


class SecurityHeadersMiddleware:
    """CSP, no framing, no referrer, no sniffing on every response; ``no-store`` on every HTML page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.setdefault("X-Frame-Options", "DENY")
        response.setdefault("Referrer-Policy", "same-origin")  # see SECURE_REFERRER_POLICY
        response.setdefault("X-Content-Type-Options", "nosniff")
        if response.get("Content-Type", "").startswith("text/html"):
            response["Cache-Control"] = "no-store"
            response["Pragma"] = "no-cache"
        return response
