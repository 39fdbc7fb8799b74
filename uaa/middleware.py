"""Request ids, request hygiene before any view runs, and the security headers every response carries."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver, resolve

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


def is_oauth_endpoint(request: HttpRequest) -> bool:
    """Whether the path is one of the JSON OAuth endpoints (``uaa.oauth.http.oauth_endpoint``), whose
    errors are RFC 6749 §5.2 JSON rather than HTML pages."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    return bool(getattr(match.func, "oauth_endpoint", False))


def bad_request(request: HttpRequest) -> HttpResponse:
    """A 400 in the form the endpoint speaks: the §5.2 JSON ``invalid_request``, or the 400 page."""
    if is_oauth_endpoint(request):
        from uaa.oauth.errors import InvalidRequest, error_response

        return error_response(InvalidRequest(), request)
    return get_resolver().resolve_error_handler(400)(request, exception=None)


class RequestHygieneMiddleware:
    """What no view can cope with is refused before any view runs: a ``Content-Length`` that is not a
    number (RFC 9110 §8.6: ``1*DIGIT``) would otherwise surface as a ValueError (a 500) wherever the body
    is first read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH", "")
        if length and not (length.isascii() and length.isdigit()):
            return bad_request(request)
        return self.get_response(request)
