"""The admin API's request bodies and error responses.

Bodies are JSON objects in UTF-8, at most ``MAX_BODY`` bytes, without NaN/Infinity or a repeated member
name. Errors have the RFC 6749 §5.2 shape the OAuth endpoints use, ``{"error", "error_description"}``, and
for a 400 ``fields``: each field's messages. 401 and 403 carry RFC 6750 §3 challenges. An unexpected
exception is logged with its traceback and answered ``server_error`` with the request id, nothing more.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler

from uaa.api.auth import REALM, InsufficientScope, InvalidToken
from uaa.outage import is_database_unavailable, note_outage, retry_after

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("a member name is repeated")
    return dict(pairs)


def storable(text: str) -> bool:
    """Text the database can hold: no NUL (PostgreSQL refuses it) and no lone surrogate (a JSON "\\ud800"
    escape decodes to one, which no driver encodes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _all_storable(value: Any) -> bool:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(storable(key) and _all_storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_all_storable(item) for item in value)
    return True


def _finite(text: str) -> float:
    """A number that overflows a double (``1e999``) parses as infinity, which no database column holds."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


class StrictJSONParser(JSONParser):
    """RFC 8259 JSON, bounded: nothing past ``MAX_BODY`` is read; no string with NUL or a lone surrogate."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read(MAX_BODY + 1) if stream is not None else b""
        if len(raw) > MAX_BODY:
            raise exceptions.ParseError(f"The body is larger than {MAX_BODY} bytes.")
        try:
            text = raw.decode("utf-8")
            document = json.loads(
                text,
                parse_constant=_refuse_constant,
                parse_float=_finite,
                object_pairs_hook=_no_duplicates,
            )
            clean = _all_storable(document)
        except (ValueError, RecursionError):
            raise exceptions.ParseError("The body is not a JSON document in UTF-8.") from None
        if not clean:
            raise exceptions.ParseError("The body has a string with NUL or a lone surrogate.")
        return document


def _messages(detail: Any) -> Any:
    """DRF's error detail as plain strings (lists and objects kept)."""
    if isinstance(detail, Mapping):
        return {str(key): _messages(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_messages(value) for value in detail]
    return str(detail)


def _challenge(error: str | None, description: str, scope: str | None = None) -> str:
    parts = [f'realm="{REALM}"']
    if error:
        parts += [f'error="{error}"', f'error_description="{description}"']
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


def _response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, headers={**NO_STORE, **(headers or {})})


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's ``EXCEPTION_HANDLER`` for the API views (``ApiView.get_exception_handler``)."""
    request = context.get("request")
    request_id = getattr(request, "request_id", "") if request is not None else ""
    if isinstance(exc, RequestDataTooBig):
        exc = exceptions.ParseError(f"The body is larger than {MAX_BODY} bytes.")
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("The request is malformed.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.NotAuthenticated):
        body = {"error": "invalid_token", "error_description": "This request needs an access token."}
        return _response(HTTPStatus.UNAUTHORIZED, body, {"WWW-Authenticate": _challenge(None, "")})
    if isinstance(exc, InvalidToken | exceptions.AuthenticationFailed):
        description = InvalidToken.default_detail
        body = {"error": "invalid_token", "error_description": description}
        headers = {"WWW-Authenticate": _challenge("invalid_token", description)}
        return _response(HTTPStatus.UNAUTHORIZED, body, headers)
    if isinstance(exc, InsufficientScope):
        description = f"This request needs the scope {exc.scope}."
        body = {"error": "insufficient_scope", "error_description": description, "scope": exc.scope}
        headers = {"WWW-Authenticate": _challenge("insufficient_scope", description, exc.scope)}
        return _response(HTTPStatus.FORBIDDEN, body, headers)
    if isinstance(exc, exceptions.ValidationError):
        fields = _messages(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields if isinstance(fields, list) else [fields]}
        invalid: dict[str, Any] = {
            "error": "invalid_request",
            "error_description": "Some fields are invalid.",
            "fields": fields,
        }
        return _response(HTTPStatus.BAD_REQUEST, invalid)
    if isinstance(exc, exceptions.APIException):
        response = exception_handler(exc, context)
        status = response.status_code if response is not None else HTTPStatus.BAD_REQUEST
        codes = {
            HTTPStatus.BAD_REQUEST: "invalid_request",
            HTTPStatus.FORBIDDEN: "access_denied",
            HTTPStatus.NOT_FOUND: "not_found",
            HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
            HTTPStatus.NOT_ACCEPTABLE: "not_acceptable",
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
            HTTPStatus.CONFLICT: "conflict",
        }
        body = {
            "error": codes.get(HTTPStatus(status), "invalid_request"),
            "error_description": str(exc.detail),
        }
        headers = {"Allow": response["Allow"]} if response is not None and "Allow" in response else {}
        return _response(status, body, headers)
    if is_database_unavailable(exc):
        note_outage(exc, request=request)
        body = {"error": "temporarily_unavailable", "error_description": "Try again later."}
        return _response(HTTPStatus.SERVICE_UNAVAILABLE, body, {"Retry-After": str(retry_after())})
    logger.error(
        "api.unexpected_error",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"request_id": request_id},
    )
    body = {
        "error": "server_error",
        "error_description": "The server met an unexpected condition.",
        "request_id": request_id,
    }
    return _response(HTTPStatus.INTERNAL_SERVER_ERROR, body)
