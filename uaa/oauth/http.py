"""Request hygiene for the JSON endpoints (token, revocation, introspection, userinfo).

RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once; the token endpoint takes
``application/x-www-form-urlencoded`` bodies in UTF-8 (Appendix B). Anything else is a clean 4xx,
and nothing on these endpoints becomes a 500 page or a stack trace.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.http import parse_header_parameters

from uaa.oauth.errors import (
    NO_STORE,
    InvalidClient,
    InvalidRequest,
    InvalidToken,
    MethodNotAllowed,
    OAuthError,
    PayloadTooLarge,
    challenge,
    error_response,
)

FORM = "application/x-www-form-urlencoded"
NOT_A_FORM = f"The request body must be {FORM} in UTF-8."
REPEATABLE = frozenset({"resource"})  # RFC 8707 §2 allows several resource parameters

View = Callable[..., HttpResponse]


# The longest value each parameter of the authorization and logout endpoints may have (docs/endpoints.md).
# What is stored has its column's length (django-oauth-toolkit: nonce varchar(255), code_challenge
# varchar(128), client_id varchar(100)); what comes back in the redirect is bounded so that the answer's
# Location header stays well inside a proxy's buffer (deploy/nginx/uaa.conf.template: proxy_buffer_size).
# PostgreSQL refuses a longer value with DataError (a 500 after consent); SQLite does not check at all.
# Anything not listed: MAX_PARAMETER_LENGTH.
PARAMETER_LENGTHS = {
    "client_id": 100,
    "nonce": 255,
    "state": 2048,
    "code_challenge": 128,
    "code_challenge_method": 16,
    "response_type": 64,
    "response_mode": 64,
    "redirect_uri": 2048,
    "post_logout_redirect_uri": 2048,
    "scope": 2048,
    "resource": 2048,
    "prompt": 128,
    "max_age": 32,
    "acr_values": 1024,
    "ui_locales": 256,
    "login_hint": 256,
    "id_token_hint": 8192,
    "claims": 4096,
}
MAX_PARAMETER_LENGTH = 2048
TOO_LONG = "A parameter is longer than this server accepts."


def storable_text(value: str) -> bool:
    """Whether ``value`` can be a database value: no NUL (PostgreSQL refuses it in text) and valid Unicode
    (JSON's "\\ud800" escape decodes to a lone surrogate, which no driver can encode as UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _pairs(raw: bytes | str) -> list[tuple[str, str]]:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8", errors="strict")


def check_parameters(pairs: Iterable[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest("Parameters must not contain NUL characters.")
        if name in seen and name not in REPEATABLE:
            raise InvalidRequest("Parameters must not be repeated.")
        seen.add(name)


def check_lengths(pairs: Iterable[tuple[str, str]]) -> None:
    """RFC 6749 §4.1.2.1 ``invalid_request``: a value longer than ``PARAMETER_LENGTHS`` allows for it."""
    for name, value in pairs:
        if len(value) > PARAMETER_LENGTHS.get(name, MAX_PARAMETER_LENGTH):
            raise InvalidRequest(TOO_LONG)


def check_form(data: QueryDict) -> None:
    """``check_parameters`` and ``check_lengths`` over parameters Django has already parsed (the browser
    endpoints: authorization, consent, logout)."""
    pairs = [(name, value) for name, values in data.lists() for value in values]
    check_parameters(pairs)
    check_lengths(pairs)


def _printable_ascii(value: str) -> bool:
    return all(" " <= char <= "~" for char in value)


def check_authorization(request: HttpRequest) -> None:
    """RFC 9110 §11.4 / RFC 7617 §2: credentials are an ASCII token68 (base64 for Basic). Anything else
    cannot name a client or a token: ``invalid_token`` for a Bearer header, else ``invalid_client``."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if _printable_ascii(header):
        return
    if header.split(" ", 1)[0].lower() == "bearer":
        raise InvalidToken()
    raise InvalidClient()


def check_content_type(request: HttpRequest, *, form_body: bool, has_body: bool) -> None:
    """RFC 6749 §3.2 and Appendix B: a POST body is ``application/x-www-form-urlencoded`` in UTF-8; a
    ``charset`` parameter other than UTF-8 (latin-1, utf-16, ...) is refused, whatever the body."""
    if request.method != "POST":
        return
    raw = request.META.get("CONTENT_TYPE", "")
    content_type, params = parse_header_parameters(raw)
    if (has_body or form_body) and content_type != FORM:
        raise InvalidRequest(NOT_A_FORM)
    if content_type == FORM and ("charset" in params or "charset" in raw.lower()):
        if params.get("charset", "").strip().lower() != "utf-8":
            raise InvalidRequest(NOT_A_FORM)


def check_request(request: HttpRequest, *, methods: tuple[str, ...], form_body: bool) -> None:
    if request.method not in methods:
        raise MethodNotAllowed()
    check_authorization(request)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise InvalidRequest("Content-Length is malformed.") from exc
    if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise PayloadTooLarge()
    try:
        body = request.body
        query = _pairs(request.META.get("QUERY_STRING", ""))
        form = _pairs(body) if body else []
    except RequestDataTooBig as exc:
        raise PayloadTooLarge() from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("The request must be UTF-8 encoded.") from exc
    check_content_type(request, form_body=form_body, has_body=bool(body))
    if max(len(query), len(form)) > settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:
        raise InvalidRequest("The request has too many parameters.")
    check_parameters(query)
    check_parameters(form)
    if request.method == "POST" and query and form_body:
        names = {name for name, _ in form}
        if any(name in names for name, _ in query):
            raise InvalidRequest("Parameters must not be repeated.")


TOKEN_IN_QUERY = "Send the access token in the Authorization header or a POST form body, not the URL."
TWO_TOKENS = "Send the access token one way only."


def bearer_from_form(request: HttpRequest) -> None:
    """RFC 6750 §2 at a protected resource (userinfo). A token in the query string (§2.3) is refused:
    URLs end up in logs and browser history (§5.3, RFC 9700 §4.3.2). A token in a POST form body (§2.2,
    the body already checked to be ``application/x-www-form-urlencoded`` in UTF-8) moves into the
    ``Authorization`` header (§2.1), the one place ``UAAOAuth2Validator.validate_bearer_token`` reads one.
    Both a header and a body token is ``invalid_request`` (§2: "MUST NOT use more than one method")."""
    if "access_token" in request.GET:
        raise InvalidRequest(TOKEN_IN_QUERY)
    if request.method != "POST" or "access_token" not in request.POST:
        return
    if request.META.get("HTTP_AUTHORIZATION"):
        raise InvalidRequest(TWO_TOKENS)
    form = request.POST.copy()
    token = form.pop("access_token")[-1]
    if not token or not _printable_ascii(token):
        raise InvalidToken()
    request.POST = form  # type: ignore[assignment]  # django-stubs: POST is never reassigned; here it is
    request.META["HTTP_AUTHORIZATION"] = f"Bearer {token}"


def _finish(response: HttpResponse) -> HttpResponse:
    for header, value in NO_STORE.items():
        response[header] = value
    if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return response
    untyped = response.get("Content-Type", "").startswith("text/html")
    if response.status_code >= HTTPStatus.BAD_REQUEST and untyped:
        response["Content-Type"] = "application/json"  # oauthlib's error bodies, which DOT sends untyped
    if response.status_code == HTTPStatus.UNAUTHORIZED and response.get("Content-Type", "").startswith(
        "application/json"
    ):
        try:
            code = json.loads(response.content or b"{}").get("error")
        except ValueError:
            code = None
        challenge(response, code)
    return response


class Limiter(Protocol):
    """An endpoint's rate limits (uaa/oauth/ratelimit.py ``limiter``; passed in, so that this module, which
    the limiter's own imports use, never imports it)."""

    def admit(self, request: HttpRequest) -> object: ...

    def settle(self, admission: object, response: HttpResponse) -> None: ...


def oauth_endpoint(
    *,
    methods: tuple[str, ...] = ("POST",),
    form_body: bool = True,
    bearer: bool = False,
    rate_limit: Limiter | None = None,
) -> Callable[[View], View]:
    """Wrap a JSON OAuth endpoint: hygiene checks first, RFC-shaped errors always, ``no-store`` on all.
    ``bearer``: a protected resource, which takes a form-body access token too (``bearer_from_form``).
    ``rate_limit``: the endpoint's limits (uaa/oauth/ratelimit.py ``limiter``), checked after the hygiene
    checks and before the view; a success is counted against its client after the view."""

    def decorate(view: View) -> View:
        limited = rate_limit

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            admission = None
            try:
                check_request(request, methods=methods, form_body=form_body)
                if bearer:
                    bearer_from_form(request)
                if limited is not None:
                    admission = limited.admit(request)
                response = view(request, *args, **kwargs)
            except MethodNotAllowed as exc:
                response = error_response(exc, request)
                response["Allow"] = ", ".join(methods)  # RFC 9110 §15.5.6
                return response
            except OAuthError as exc:
                return error_response(exc, request)
            except (BadRequest, SuspiciousOperation):  # Django's own refusals of malformed input
                return error_response(InvalidRequest(), request)
            except Exception as exc:
                return error_response(exc, request)
            if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
                return error_response(RuntimeError("endpoint answered 5xx"), request)
            if limited is not None:
                limited.settle(admission, response)
            return _finish(response)

        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        wrapper.oauth_endpoint = True  # type: ignore[attr-defined]  # errors in JSON (uaa/middleware.py)
        return wrapper

    return decorate
