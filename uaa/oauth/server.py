"""The oauthlib server django-oauth-toolkit runs for UAA (``OAUTH2_SERVER_CLASS``): the grant types offered.

RFC 6749 §5.2 ``unsupported_grant_type``: oauthlib's OpenID Connect server routes the password grant too
(RFC 9700 §2.4: it MUST NOT be used) and the device grant (RFC 8628). UAA's token endpoint routes only the
grant types of ``OAUTH2_GRANT_TYPES_SUPPORTED`` and refuses any other, or none, before anything else: no
client is authenticated and no password read for a grant UAA does not offer. Which of the offered grants a
client may use is the validator's ``validate_grant_type`` (django-oauth-toolkit's
``Client.allows_grant_type``): ``unauthorized_client``.

At the authorization endpoint, two checks run first of all, once the client and redirect URI are valid
(oauthlib's ``pre_auth`` validators), on the request and again when its code is created: ``request`` and
``request_uri`` are refused (OIDC Core §6: ``request_not_supported``, ``request_uri_not_supported``) whatever
else the request gets wrong, then a ``response_type`` outside ``OAUTH2_RESPONSE_TYPES_SUPPORTED`` (RFC 6749
§4.1.2.1 ``unsupported_response_type``: discovery lists only those; oauthlib routed ``code token`` and
``code id_token`` to its hybrid grant, whose answer was ``unauthorized_client``, as if another client could
have it), then PKCE (uaa/oauth/rfc7636.py: the client's policy, with the scopes asked for or granted and the
``nonce``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors
from oauthlib.openid import Server as OpenIDServer

from uaa.oauth import rfc7636

GRANT_TYPE_REQUIRED = "The grant_type parameter is required."
GRANT_TYPE_UNSUPPORTED = "The grant type is not supported."
REQUEST_OBJECTS = ("request", "request_uri")  # OIDC Core §6: not supported, so MUST be refused


def refuse_request_objects(request: OAuthlibRequest) -> dict[str, Any]:
    """OIDC Core §6.1, §6.2: an OP that does not support ``request``/``request_uri`` answers
    ``request_not_supported``/``request_uri_not_supported``, before any other error of the request."""
    named = {name for name, _ in [*(request.uri_query_params or []), *(request.decoded_body or [])]}
    for parameter in REQUEST_OBJECTS:
        if parameter in named:
            raise oauthlib_errors.CustomOAuth2Error(
                error=f"{parameter}_not_supported",
                description=f"The {parameter} parameter is not supported.",
                request=request,
            )
    return {}


def refuse_unoffered_response_types(request: OAuthlibRequest) -> dict[str, Any]:
    """RFC 6749 §4.1.2.1 ``unsupported_response_type``: "The authorization server does not support obtaining
    an authorization code using this method", for every ``response_type`` UAA does not offer, whichever
    oauthlib grant it was routed to."""
    offered = settings.OAUTH2_PROVIDER["OAUTH2_RESPONSE_TYPES_SUPPORTED"]
    if request.response_type is not None and request.response_type not in offered:
        raise oauthlib_errors.UnsupportedResponseTypeError(request=request)
    return {}


def check_pkce(request: OAuthlibRequest) -> dict[str, Any]:
    """RFC 7636 §4.4.1 by the client's policy (uaa/oauth/rfc7636.py): ``request.scopes`` are those asked
    for, and on the code's creation those granted; the method is the request's own, before oauthlib
    defaults it to ``plain``."""
    rfc7636.check_authorization_request(
        method=request.code_challenge_method,
        challenge=request.code_challenge,
        client=request.client,
        scopes=list(request.scopes or []),
        nonce=request.nonce,
        request=request,
    )
    return {}


class Server(OpenIDServer):
    _grant_types: dict[str, Any]  # oauthlib's TokenEndpoint: grant type → the grant that answers it

    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        offered = settings.OAUTH2_PROVIDER["OAUTH2_GRANT_TYPES_SUPPORTED"]
        self._grant_types = {name: grant for name, grant in self.grant_types.items() if name in offered}
        for grant in (self.auth_grant, self.openid_connect_auth, self.openid_connect_hybrid):
            grant.custom_validators.pre_auth[:0] = [
                refuse_request_objects,
                refuse_unoffered_response_types,
                check_pkce,
            ]
        for grant in (self.implicit_grant, self.openid_connect_implicit):
            grant.custom_validators.pre_auth[:0] = [refuse_request_objects, refuse_unoffered_response_types]

    def validate_token_request(self, request: OAuthlibRequest) -> None:
        """RFC 6749 §4.1.3, §4.4.2, §6: ``grant_type`` is REQUIRED (``invalid_request``), and one this
        server does not route is ``unsupported_grant_type``; read from the form body, as the client sent it.
        The errors are made without the request: oauthlib would copy its ``state`` into them."""
        # oauthlib's Request starts with ``user = None`` and lets a parameter of that name take its place; the
        # user of a token is the one its grant names (validate_code, validate_refresh_token), never a
        # ``user=`` the client posted (a client_credentials token would have had it as ``sub``, or a 500).
        request.user = None
        grant_type = dict(request.decoded_body or []).get("grant_type")
        if not grant_type:
            raise oauthlib_errors.InvalidRequestError(description=GRANT_TYPE_REQUIRED)
        if grant_type not in self.grant_types:
            raise oauthlib_errors.UnsupportedGrantTypeError(description=GRANT_TYPE_UNSUPPORTED)
        super().validate_token_request(request)
