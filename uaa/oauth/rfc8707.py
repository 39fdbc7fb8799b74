"""RFC 8707 Resource Indicators for OAuth 2.0: which resources (the ``aud`` of access tokens) a client gets.

A resource server that checks ``aud`` (RFC 9068 §4) accepts any token naming it, whichever client holds
it; so a client must get tokens only for the resource servers it was registered to call. RFC 8707 §2:
if the authorization server "does not consider the resource(s) acceptable, it should reject the request
with an error response using the error code invalid_target". UAA's policy, the same at the authorization
endpoint (§2.1) and at the token endpoint for every grant (§2.2):

- a client may name only the resources registered for it (``Client.allowed_resources``, "resources this
  client may request"), compared exactly, and its default audience (``Client.default_audience``, else
  UAA itself, the issuer, where userinfo is): "the authorization server MAY ... [use] a predefined
  default resource value" when the request names none (§2);
- a grant is stored with the resources it is for, its default when the request named none, so that a
  code exchange or refresh can only narrow them, never widen (§2.2);
- the allow-list is read on every request: a resource an admin removed is refused on the next refresh.

Not to be confused with ``Client.introspection_resources`` ("resources this client serves"): the
resources a client *is*, as a resource server, for introspection (RFC 7662 §4; tokens/introspection.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from oauth2_provider.oauth2_validators import is_valid_resource_uri
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from uaa.oauth.grant_context import grant_context

INVALID_TARGET = (
    "The resource must be an absolute URI without a fragment, registered for this client, "
    "and within what was granted."
)
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"


def default_resources(client: Any) -> list[str]:
    """The resources of a request that names none: the client's default audience, else the issuer."""
    return list(client.audiences) or [settings.UAA_ISSUER]


def allowed_resources(client: Any) -> set[str]:
    """Every resource ``client`` may get a token for: its registered resources and its default."""
    return {*client.requestable_resources, *default_resources(client)}


def requested_resources(request: OAuthlibRequest) -> list[str]:
    """The ``resource`` parameters of ``request`` (§2: "MAY be used multiple times"), in order.

    oauthlib keeps the last value of a repeated parameter; django-oauth-toolkit puts a list on the
    request when the consent form was posted. Body values win over query values, as in oauthlib.
    A resource named twice is one resource: an ``aud`` lists each audience once (a red team sent one
    resource fifty times and got a token, and every refresh after it, with fifty copies).
    """
    value = getattr(request, "resource", None)
    if isinstance(value, list | tuple):
        return _once(list(value))
    if not value:
        return []
    from_body = [v for k, v in (getattr(request, "decoded_body", None) or []) if k == "resource"]
    from_query = [v for k, v in (getattr(request, "uri_query_params", None) or []) if k == "resource"]
    return _once(from_body or from_query or [value])


def _once(values: list[Any]) -> list[Any]:
    """``values`` in order, each first occurrence only (compared by ``==``: a value refused later may be
    unhashable)."""
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def refuse(request: OAuthlibRequest) -> oauthlib_errors.CustomOAuth2Error:
    """``invalid_target`` with a fixed description that never echoes the resource (§2)."""
    return oauthlib_errors.CustomOAuth2Error(
        error="invalid_target", description=INVALID_TARGET, request=request
    )


def is_resource_uri(resource: object) -> bool:
    """django-oauth-toolkit's check, for text it can split at all: urllib raises ValueError for some
    (``http://[::1``: "Invalid IPv6 URL", a port out of range), which is no absolute URI either."""
    if not isinstance(resource, str):
        return False
    try:
        return bool(is_valid_resource_uri(resource))
    except ValueError:
        return False


def _check_named(request: OAuthlibRequest, named: list[Any]) -> None:
    """§2: each named resource "MUST be an absolute URI" and "MUST NOT include a fragment component"."""
    if not all(is_resource_uri(resource) for resource in named):
        raise refuse(request)


def _check_within(request: OAuthlibRequest, resources: list[str], within: set[str]) -> None:
    if not set(resources) <= within:
        raise refuse(request)


def _storable(resources: list[str]) -> list[str]:
    """What the grant or token keeps. A default audience registered before URIs were checked (not a
    URI) cannot be stored (django-oauth-toolkit refuses it); such a grant keeps none, as before."""
    return resources if all(is_resource_uri(resource) for resource in resources) else []


def check_authorization_request(request: OAuthlibRequest) -> list[str]:
    """§2.1: every resource an authorization request names must be one the client may request."""
    named = requested_resources(request)
    _check_named(request, named)
    _check_within(request, named, allowed_resources(request.client))
    return named


def resources_for_new_code(request: OAuthlibRequest) -> list[str]:
    """The resources an authorization code is for: those named (checked again: the consent form's
    hidden field may have been edited), else the client's default."""
    named = check_authorization_request(request)
    return _storable(named or default_resources(request.client))


def _granted(request: OAuthlibRequest) -> list[str] | None:
    """What the code or refresh token was granted for (its default if it stored none); None for a
    grant with nothing before it (client credentials)."""
    if request.grant_type == AUTHORIZATION_CODE:
        grant = grant_context(request).code
        stored = list(getattr(grant, "resource", None) or [])
    elif request.grant_type == REFRESH_TOKEN:
        stored = list(getattr(request.refresh_token_instance, "resource", None) or [])
    else:
        return None
    return stored or default_resources(request.client)


def settle_token_request(request: OAuthlibRequest) -> None:
    """§2.2: the resources of the token about to be issued, on ``request.resource``.

    Those named, else those granted (else the client's default); never beyond what was granted, never
    beyond what the client may request now. Raises ``invalid_target`` otherwise.
    """
    named = requested_resources(request)
    _check_named(request, named)
    granted = _granted(request)
    if granted is not None:
        _check_within(request, named, set(granted))
    resources = named or granted or default_resources(request.client)
    _check_within(request, resources, allowed_resources(request.client))
    request.resource = _storable(resources)


def own_resource_uri(uri: str) -> str:
    """RFC 9068 §4 at UAA's own protected endpoints (userinfo): the request's URI under the issuer, the
    audience of tokens for UAA itself, so that only such tokens are accepted there. django-oauth-toolkit
    hands userinfo a relative URI, which matches no audience at all."""
    parts = urlsplit(uri)
    if parts.scheme:
        return uri
    return settings.UAA_ISSUER + (parts.path if parts.path.startswith("/") else "/" + parts.path)
