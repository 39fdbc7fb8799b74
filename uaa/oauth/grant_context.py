"""What UAA carries from hook to hook of one grant: a typed ``GrantContext`` on oauthlib's request.

django-oauth-toolkit hands one oauthlib ``Request`` through the validator's hooks, the access token
generator and the audit records of a request. What UAA learns on the way (the sign-in a code was issued
in, the code being redeemed, the checksum and family of the tokens just made, the client's assertion) is
kept in one ``GrantContext``, attached once by ``grant_context(request)`` and read through it everywhere.

Never as loose attributes: oauthlib's ``Request.__getattr__`` answers an attribute it was not given with
the request parameter of that name, so reading an unset attribute would read what the client sent.
``grant_context`` looks only at what was attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from oauthlib.common import Request as OAuthlibRequest

if TYPE_CHECKING:
    from uaa.oauth.models import AuthorizationCode

# One attribute on the request; oauthlib sets it from the credentials of an authorization response too.
ATTRIBUTE = "_uaa_grant_context"


@dataclass
class GrantContext:
    """One grant's state between django-oauth-toolkit's hooks. Every field has its "not known" default."""

    # The authorization endpoint, for the code about to be issued (uaa.oauth.views.AuthorizeView):
    # the SSO session's authentication context (accounts.sessions.auth_context: auth_time as ISO 8601,
    # amr, acr, sid), and whether the user answered the consent page ("given") or it was "skipped".
    session_auth: dict[str, Any] | None = None
    consent: str = ""
    # The token endpoint: the code being redeemed (uaa/oauth/codes.py), and the sign-in that the code,
    # or the code that began the refresh token's family, was issued in.
    code: AuthorizationCode | None = None
    auth_time: datetime | None = None
    amr: list[str] = field(default_factory=list)
    acr: str = ""
    sid: str = ""
    # What the token request produced, noted as it is made: the access token's ``exp`` (its stored record
    # expires then, RFC 9068 §2.2), its checksum and the refresh token's family (for RedeemedCode).
    access_token_exp: int | None = None
    access_token_checksum: str = ""
    refresh_token_family: UUID | None = None
    # The private_key_jwt assertion that authenticated the client (RFC 7523): the client's own signature
    # over the request, kept with the audit record as evidence.
    client_assertion: str = ""
    # The client the request names and its row's (id, generation), read with the throttle counters
    # (uaa/oauth/clientauth.py) for the client lookup (uaa/oauth/client_cache.py); None: no such client.
    client_version: tuple[str, tuple[int, int, str] | None] | None = None


def grant_context(request: OAuthlibRequest) -> GrantContext:
    """The request's ``GrantContext``, attached on first use; the same one on every later call."""
    context = vars(request).get(ATTRIBUTE)  # never Request.__getattr__, which reads request parameters
    if not isinstance(context, GrantContext):
        context = GrantContext()
        setattr(request, ATTRIBUTE, context)
    return context


def for_authorization(credentials: dict[str, Any], *, session_auth: dict[str, Any], consent: str) -> None:
    """Give the authorization response its context: oauthlib copies every credential onto the request
    it builds (``AuthorizationEndpoint.create_authorization_response``), where ``grant_context`` finds it."""
    credentials[ATTRIBUTE] = GrantContext(session_auth=session_auth, consent=consent)
