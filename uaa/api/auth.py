"""Who calls the admin API, and with which scopes (RFC 6750 §2.1, §3; RFC 9068 §4).

The token is checked by the validator the OAuth endpoints use (``UAAOAuth2Validator.validate_bearer_token``,
as for userinfo): a JWT access token (``typ`` at+jwt) signed with its key's own algorithm by a key this
server publishes now, stored, not expired, not revoked, its user (if any) active and not cut off. Its
audience must be this server *alone* (``aud`` exactly the issuer, as signed and as stored): a token that
also names another resource server was handed to that server too, which could replay it here (RFC 9068
§4, RFC 8707 §1, RFC 9700 §2.3); it is ``invalid_token`` (RFC 6750 §3.1), as one for another audience.
Its scopes count only while its client may still be granted them (uaa/oauth/scopes.py): a client whose
admin scope was taken away, and a user's token, hold none.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthlibRequest
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from uaa.oauth.models import Client
from uaa.oauth.scopes import scopes_for_client

REALM = "uaa"
# The scopes the admin API's views ask for (settings.UAA_ADMIN_SCOPES may hold others, e.g. for /metrics).
API_SCOPES = (
    "uaa.clients.read",
    "uaa.clients.write",
    "uaa.users.read",
    "uaa.users.write",
    "uaa.keys.read",
    "uaa.keys.write",
    "uaa.audit.read",
)
MAX_TOKEN_LENGTH = 8192  # far above any token this server signs; longer is not ours


@dataclass(frozen=True)
class ApiCaller:
    """The authenticated caller: the client the token was issued to, and its admin scopes now."""

    client: Client
    scopes: frozenset[str] = field(default_factory=frozenset)

    is_authenticated = True
    is_anonymous = False

    @property
    def actor(self) -> str:
        """What the ledger records as ``sub`` of its changes: the token's own ``sub`` (RFC 9068 §2.2 for a
        client acting for itself: its client_id)."""
        return self.client.client_id

    @property
    def pk(self) -> str:  # what DRF's throttles and logging read from request.user
        return self.client.client_id


class InvalidToken(exceptions.AuthenticationFailed):
    """RFC 6750 §3.1 ``invalid_token``: expired, revoked, malformed, or not this server's."""

    default_detail = "The access token is invalid, expired or revoked."
    default_code = "invalid_token"


class InsufficientScope(exceptions.PermissionDenied):
    """RFC 6750 §3.1 ``insufficient_scope``, naming the scope the request needs."""

    default_detail = "The access token lacks the scope this request needs."
    default_code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope


def _bearer(header: str) -> str:
    """The token of ``Authorization: Bearer <token>`` (the scheme is case-insensitive, RFC 9110 §11.1)."""
    scheme, _, token = header.partition(" ")
    token = token.strip(" ")
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken()
    if not token.isascii() or not token.isprintable():
        raise InvalidToken()
    return token


def signed_audiences(token: str) -> list[str] | None:
    """The ``aud`` of a JWT whose signature was already verified, as a list (RFC 7519 §4.1.3: a string or
    an array of strings); ``None`` when it is neither."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    aud = claims.get("aud") if isinstance(claims, dict) else None
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(value, str) for value in aud):
        return aud
    return None


def for_this_api_alone(token: str, access_token: Any) -> bool:
    """RFC 9068 §4 and RFC 9700 §2.3: the token's audience is UAA and nothing else, both in the signed
    ``aud`` and in the stored record (its RFC 8707 resources; empty for a token of no known audience)."""
    own = [settings.UAA_ISSUER]
    return signed_audiences(token) == own and list(access_token.resource or []) == own


class AccessTokenAuthentication(BaseAuthentication):
    """RFC 6750 §2.1: the token in the ``Authorization`` header only (never the query or the body)."""

    def authenticate(self, request: Request) -> tuple[ApiCaller, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # NotAuthenticated: 401 with a challenge and no error code (§3.1)
        token = _bearer(header)
        checked = OAuthlibRequest(
            uri=settings.UAA_ISSUER + request.path,  # tokens for UAA itself (aud), as at userinfo
            http_method=request.method,
            headers={"Authorization": f"Bearer {token}"},
        )
        validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
        if not validator.validate_bearer_token(token, [], checked):
            raise InvalidToken()
        access_token = checked.access_token
        client = access_token.application
        if client is None or not for_this_api_alone(token, access_token):
            raise InvalidToken()
        admin = set(settings.UAA_ADMIN_SCOPES)
        scopes = set(access_token.scope.split()) & set(scopes_for_client(client)) & admin
        return ApiCaller(client=client, scopes=frozenset(scopes)), access_token

    def authenticate_header(self, request: Request) -> str:
        return f'Bearer realm="{REALM}"'


class HasAdminScope(BasePermission):
    """The view's ``read_scope`` for GET/HEAD/OPTIONS, its ``write_scope`` for everything else; a view may
    name one scope per action in ``action_scopes``. Write does not imply read."""

    def has_permission(self, request: Request, view: Any) -> bool:
        caller = request.user
        if not isinstance(caller, ApiCaller):
            raise exceptions.NotAuthenticated()
        scope = required_scope(request, view)
        if scope not in caller.scopes:
            raise InsufficientScope(scope)
        return True


def required_scope(request: Request, view: Any) -> str:
    action = getattr(view, "action", None)
    named = getattr(view, "action_scopes", {}).get(action)
    if named:
        return str(named)
    return str(view.read_scope if request.method in SAFE_METHODS else view.write_scope)
