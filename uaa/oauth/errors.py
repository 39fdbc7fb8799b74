"""One class per RFC 6749 error code, plus the single error renderer.

Descriptions are fixed strings for client developers. Internals (tracebacks, SQL, library exception
text, whether a user exists) never reach a client: anything that is not an ``OAuthError`` becomes
``server_error`` with a request id the operator can search the logs for.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import ClassVar

from django.http import HttpRequest, HttpResponse, JsonResponse

from uaa.outage import is_database_unavailable, mark_unavailable, note_outage

logger = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 6749 §5.2 (a failed client authentication names the scheme the client may retry with) and RFC 6750
# §3 (a refused bearer token): the only WWW-Authenticate values UAA sets, by challenge() alone.
CHALLENGES = {
    "invalid_client": 'Basic realm="uaa", charset="UTF-8"',
    "invalid_token": 'Bearer realm="uaa", error="invalid_token"',
}


class OAuthError(Exception):
    code: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = HTTPStatus.BAD_REQUEST
    description: ClassVar[str] = "The request is missing a parameter or is otherwise malformed."

    def __init__(self, description: str | None = None) -> None:
        super().__init__(description or self.description)
        if description:
            self.description = description  # type: ignore[misc]


class InvalidRequest(OAuthError):
    pass


class PayloadTooLarge(OAuthError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    description = "The request body is too large."


class InvalidClient(OAuthError):
    code = "invalid_client"
    status = HTTPStatus.UNAUTHORIZED
    description = "Client authentication failed."


class ClientLockedOut(OAuthError):
    """Too many failed client authentications (accounts/throttling.py): RFC 6585 §4 429 with Retry-After,
    and the RFC 6749 §5.2 invalid_client code, since the client was not authenticated."""

    code = "invalid_client"
    status = HTTPStatus.TOO_MANY_REQUESTS
    description = "Too many failed client authentications. Try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class RateLimited(OAuthError):
    """Too many requests from one address or one client (uaa/oauth/ratelimit.py): RFC 6585 §4 429 with
    Retry-After. RFC 6749 §5.2 has no code for it. ``slow_down`` is a registered token-endpoint code (RFC
    8628 §7.3) whose meaning is what the client must do: send less often (§3.5: a device-flow client adds
    5 s to its polling interval). ``temporarily_unavailable`` is an authorization-endpoint code for an
    overloaded server (UAA's 503), and ``invalid_request`` would tell the client its request is malformed."""

    code = "slow_down"
    status = HTTPStatus.TOO_MANY_REQUESTS
    description = "Too many requests. Retry after the Retry-After delay."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class InvalidToken(OAuthError):
    code = "invalid_token"
    status = HTTPStatus.UNAUTHORIZED
    description = "The access token is invalid, expired or revoked."


class MethodNotAllowed(OAuthError):
    status = HTTPStatus.METHOD_NOT_ALLOWED
    description = "This endpoint does not accept that HTTP method."


class TemporarilyUnavailable(OAuthError):
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable``, as RFC 9110 §15.6.4 503 with Retry-After: the database
    cannot be reached (uaa/outage.py). Logged once per interval, without a traceback."""

    code = "temporarily_unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE
    description = "The server is temporarily unable to handle the request. Retry after the Retry-After delay."


class ServerError(OAuthError):
    code = "server_error"
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    description = "The server met an unexpected condition. Quote the request id when reporting it."


def challenge(response: HttpResponse, code: object) -> None:
    """``WWW-Authenticate`` on a 401 with the error ``code``: Basic for ``invalid_client`` (replacing the
    Bearer challenge oauthlib puts on every 401), Bearer for ``invalid_token`` unless one is set already
    (django-oauth-toolkit's userinfo sets its own)."""
    if response.status_code != HTTPStatus.UNAUTHORIZED or not isinstance(code, str) or code not in CHALLENGES:
        return
    if code == "invalid_client" or "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = CHALLENGES[code]


def error_response(exc: Exception, request: HttpRequest | None = None) -> JsonResponse:
    """Render any exception as an RFC 6749 §5.2 error body; unexpected ones become ``server_error``."""
    request_id = getattr(request, "request_id", None)
    logged = not isinstance(exc, OAuthError)  # here, once; Django need not log the 5xx again
    if not isinstance(exc, OAuthError) and is_database_unavailable(exc):
        note_outage(exc, request=request)
        exc = TemporarilyUnavailable()
    elif not isinstance(exc, OAuthError):
        logger.error(
            "oauth.unexpected_error",
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"request_id": request_id},
        )
        exc = ServerError()
    body: dict[str, str] = {"error": exc.code, "error_description": exc.description}
    if isinstance(exc, ServerError) and request_id:
        body["request_id"] = request_id
    response = JsonResponse(body, status=exc.status, headers=NO_STORE)
    challenge(response, exc.code)
    if isinstance(exc, ClientLockedOut | RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, TemporarilyUnavailable):
        mark_unavailable(response)
    if logged:
        response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log.log_response
    return response
