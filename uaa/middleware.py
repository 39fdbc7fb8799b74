"""Request ids, request hygiene before any view runs, the security headers every response carries, and what
a database outage looks like from outside (a 503, and the last good copy of the public documents)."""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import sys
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, Resolver404, get_resolver, resolve, reverse
from django.utils.module_loading import import_string

from tokens.clientip import Network, is_trusted_proxy, parse_trusted_proxies
from uaa.oauth.errors import InvalidRequest, TemporarilyUnavailable, error_response
from uaa.oauth.views import server_error as server_error_page
from uaa.outage import (
    is_database_unavailable,
    is_outage_response,
    last_good_copies,
    mark_unavailable,
    note_outage,
    retry_after,
)

logger = logging.getLogger(__name__)

# What a proxy makes: nginx's $request_id (32 hex digits), or a UUID. Anything else is made here.
_REQUEST_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@functools.lru_cache(maxsize=8)
def _proxies(value: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_trusted_proxies(value)


def from_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the peer is one of ``UAA_TRUSTED_PROXIES`` (tokens/clientip.py's rule for X-Forwarded-For)."""
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return is_trusted_proxy(peer, _proxies(tuple(settings.UAA_TRUSTED_PROXIES)))


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
    """Give every request an id and echo it back: the proxy's ``X-Request-ID`` (nginx's ``$request_id``, the
    same id in both logs) when the peer is a trusted proxy and the id has a proxy's form, else a new UUID.

    Error responses quote it so an operator can find the server-side log line; ledger records keep it. A
    client's own id (straight at gunicorn, from an address that is not a proxy) is never taken: it would
    choose what the audit ledger and the logs say about its request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        inbound = request.headers.get("X-Request-ID", "")
        believed = _REQUEST_ID.fullmatch(inbound) is not None and from_trusted_proxy(request)
        request.request_id = inbound if believed else uuid.uuid4().hex  # type: ignore[attr-defined]
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
        return error_response(InvalidRequest(), request)
    return get_resolver().resolve_error_handler(400)(request, None)  # type: ignore[call-arg]  # (request, exception)


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


# --- database outages (uaa/outage.py) ---------------------------------------------------------------------
PUBLIC_DOCUMENTS = ("tokens:jwks", "tokens:audit-keys", "openid-configuration", "oauth-authorization-server")
GENERATIONAL_DOCUMENT = "tokens:jwks"  # what it lists changes with the signing keys (``jwks_changed``)


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """RFC 9110 §15.6.4 503 with Retry-After: the §5.2 JSON ``temporarily_unavailable`` on the OAuth
    endpoints and the public documents, a plain page for people elsewhere."""
    if is_oauth_endpoint(request) or request.path_info.startswith("/.well-known/"):
        return error_response(TemporarilyUnavailable(), request)
    page = render_to_string(  # no request: its context processors would reach for the session (the database)
        "oauth/unavailable.html",
        {"retry_after": retry_after(), "request_id": getattr(request, "request_id", "")},
    )
    return mark_unavailable(HttpResponse(page, status=HTTPStatus.SERVICE_UNAVAILABLE))


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an exception saying the database is unreachable, raised by a view or a middleware (the
    session, throttling, the ledger), is a 503 logged once per interval; anything else is the 500 page."""
    exc = sys.exc_info()[1]
    if exc is not None and is_database_unavailable(exc):
        note_outage(exc, request=request)
        return unavailable_response(request)
    return server_error_page(request)


class LastGoodCopyMiddleware:
    """While the database is down, the public documents (JWKS, discovery, audit keys) are answered from their
    last good copy (uaa/outage.py), since resource servers refresh keys exactly when things go wrong. The
    JWKS is generational: a signing-key change makes its older copies unservable (``jwks_changed``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._paths: frozenset[str] | None = None
        self._jwks: str | None = None

    def paths(self) -> frozenset[str]:
        if self._paths is None:
            found = set()
            for name in PUBLIC_DOCUMENTS:
                try:
                    found.add(reverse(name))
                except NoReverseMatch:
                    continue
            self._paths = frozenset(found)
        return self._paths

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if request.method not in ("GET", "HEAD") or path not in self.paths():
            return self.get_response(request)
        if self._jwks is None:
            self._jwks = jwks_path()
        generational = path == self._jwks
        # Read before the keys are (a recent read will do: uaa/outage.py, LastGoodCopies.generation).
        generation = last_good_copies.generation(path, recent=True) if generational else None
        response = self.get_response(request)
        if response.status_code == HTTPStatus.OK and not response.streaming:
            # A generational copy is never kept untagged, nor in place of the shared copy if a key changed
            # while it was made (LastGoodCopies.remember).
            if not generational or generation is not None:
                last_good_copies.remember(path, response, generation=generation, generational=generational)
        elif is_outage_response(response):
            return last_good_copies.response(path, request, generational=generational) or response
        return response


def jwks_path() -> str:
    return reverse(GENERATIONAL_DOCUMENT)


def jwks_changed(sender: object = None, **kwargs: object) -> None:
    """``tokens.signals.signing_key_changed`` (sent inside the change's transaction): once it commits, every
    copy of the JWKS made before is unservable in every process, and the shared copy is the JWKS as it is
    now. Without this, an outage right after ``revoke_signing_key`` served the revoked key from a copy for
    up to ``UAA_LAST_GOOD_MAX_AGE`` (red team, issue 8 item 16)."""
    transaction.on_commit(refresh_jwks_copy, robust=True)  # never the change's failure


def refresh_jwks_copy() -> None:
    from tokens.views import jwks_response  # uaa imports tokens, never the other way

    path = jwks_path()
    request = HttpRequest()
    request.method, request.path, request.path_info = "GET", path, path
    try:
        response: HttpResponse | None = jwks_response(request, heal=False)  # reads only
    except Exception:  # the copies are invalidated all the same; the next good answer makes a new one
        logger.warning("uaa.jwks_copy_not_refreshed", exc_info=True)
        response = None
    if response is not None and response.status_code != HTTPStatus.OK:
        response = None
    last_good_copies.invalidate(path, replacement=response)


# --- what the JSON endpoints do without (issue 12 item 2) ------------------------------------------------
# The token, introspection, revocation and userinfo endpoints and the /.well-known/ documents are called by
# programs with credentials of their own (client authentication, a bearer token): no session, no CSRF token
# (they are csrf_exempt), no signed-in user, no messages. The middleware below is Django's (and the session
# timeout's), skipped on those paths only (CSRF's stays whole: on a csrf_exempt view it returns at once);
# every other page, the authorization and logout endpoints among them, has all of it as before. A session
# cookie sent to an API path is neither read nor refreshed.
API_URL_NAMES = ("oauth:token", "oauth:introspect", "oauth:revoke", "oauth:userinfo")
API_PREFIX = "/.well-known/"


@functools.cache
def _api_paths() -> frozenset[str]:
    return frozenset(reverse(name) for name in API_URL_NAMES)


def is_api_request(request: HttpRequest) -> bool:
    """Whether ``request`` is for one of the JSON endpoints or public documents (by its exact path)."""
    path = request.path_info
    return path.startswith(API_PREFIX) or path in _api_paths()


def browser_only(middleware: str) -> type:
    """``middleware`` (a dotted path) for every request but the API's (``is_api_request``), which go
    straight on: its ``__call__``, ``process_view`` and ``process_exception`` are skipped there."""
    base: Any = import_string(middleware)
    namespace: dict[str, Any] = {"__doc__": f"{middleware}, skipped on the API paths (uaa.middleware)."}

    def __call__(self: Any, request: HttpRequest) -> HttpResponse:
        if is_api_request(request):
            return self.get_response(request)  # type: ignore[no-any-return]
        return base.__call__(self, request)  # type: ignore[no-any-return]

    namespace["__call__"] = __call__
    for hook in ("process_view", "process_exception"):
        if hasattr(base, hook):

            def skipped(self: Any, request: HttpRequest, *args: Any, _hook: str = hook) -> Any:
                return None if is_api_request(request) else getattr(base, _hook)(self, request, *args)

            namespace[hook] = skipped
    return type(f"BrowserOnly{base.__name__}", (base,), namespace)


SessionMiddleware = browser_only("django.contrib.sessions.middleware.SessionMiddleware")
AuthenticationMiddleware = browser_only("django.contrib.auth.middleware.AuthenticationMiddleware")
OTPMiddleware = browser_only("django_otp.middleware.OTPMiddleware")
SessionTimeoutMiddleware = browser_only("accounts.middleware.SessionTimeoutMiddleware")
MessageMiddleware = browser_only("django.contrib.messages.middleware.MessageMiddleware")
