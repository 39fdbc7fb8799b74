"""OpenID Connect Core 1.0 §5: the claims about the user that the ID token and userinfo release.

One home for what is released, where and why:

- §5.4 scope values stand for claims (``SCOPE_CLAIMS``): ``profile`` for every profile claim the user
  has (§5.1), ``email``, ``address`` (the §5.1.1 structured claim) and ``phone``. A granted scope's claims
  go to userinfo and, as UAA has always done, into the ID token. A claim the user has no value for is
  left out, never sent empty (§5.3.2).
- §5.5 the ``claims`` request parameter asks for claims one by one, for the ID token, userinfo or both
  (placement: a claim named only under ``userinfo`` is not put in the ID token, and the other way round).
  §5.5 lets a client ask for a claim without its scope; UAA releases such a claim only where the user
  allowed it: on a consent page that listed it (``individually_requested``), or for a trusted
  (first-party) client, whose consent an admin gave. When the consent page is skipped because the scopes
  were allowed before, claims outside them are dropped from the grant (``granted_request``), never
  released unseen. What the grant keeps is stored with the code (django-oauth-toolkit's
  ``AuthorizationCode.claims``) and then with the spent code (``RedeemedCode.claims``), so the token
  endpoint and userinfo release exactly it; another client's request never touches it.
- ``essential`` (§5.5.1) changes nothing about what is released: an essential claim the user has no
  value for is left out, which the spec allows. ``value``/``values`` are checked for shape; they are
  honoured for ``sub`` only (§5.5.1: a ``sub`` that is not the signed-in user's MUST fail the request:
  ``login_required``, ``sub_mismatch``), the other claims are released with the values UAA holds.
- A malformed ``claims`` parameter (not a JSON object, members that are not objects, a request of the
  wrong shape) is ``invalid_request`` on the redirect (``parse_claims_request``); claim names UAA does not
  know are ignored (§5.5: "MUST be ignored").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from accounts.models import User
from uaa.oauth.http import storable_text

ID_TOKEN = "id_token"
USERINFO = "userinfo"
TARGETS = (ID_TOKEN, USERINFO)

PROFILE_CLAIMS = (
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "updated_at",
)
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": PROFILE_CLAIMS,
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}
CLAIM_SCOPE = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}
USER_CLAIMS = ("sub", *CLAIM_SCOPE)  # what discovery's claims_supported lists about the user
# What an ID token carries besides (OIDC Core §2, §3.1.3.6; OIDC Front-Channel Logout §3: sid).
ID_TOKEN_CLAIMS = ("iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "sid", "at_hash", "jti")
# What a person would read on the consent page for a claim asked for on its own.
CLAIM_DESCRIPTIONS = {
    "name": "your full name",
    "given_name": "your given name",
    "family_name": "your family name",
    "middle_name": "your middle name",
    "nickname": "your nickname",
    "preferred_username": "your preferred username",
    "profile": "your profile page",
    "picture": "your picture",
    "website": "your website",
    "gender": "your gender",
    "birthdate": "your date of birth",
    "zoneinfo": "your time zone",
    "locale": "your language",
    "updated_at": "when your profile last changed",
    "email": "your e-mail address",
    "email_verified": "whether your e-mail address is verified",
    "address": "your postal address",
    "phone_number": "your phone number",
    "phone_number_verified": "whether your phone number is verified",
}
MAX_CLAIMS = len(USER_CLAIMS) + len(ID_TOKEN_CLAIMS)  # per member; the parameter is ≤ 4096 characters
SUB_MISMATCH = "The signed-in user is not the sub the claims parameter asks for."
MALFORMED = "The claims parameter must be a JSON object as OpenID Connect Core 1.0 §5.5 describes."

ClaimsRequest = dict[str, dict[str, dict[str, Any] | None]]  # target → claim → its request (None: default)


class MalformedClaimsRequest(ValueError):
    """The ``claims`` parameter is not what §5.5 describes: ``invalid_request``."""

    def __init__(self) -> None:
        super().__init__(MALFORMED)


# --- what the user has ------------------------------------------------------------------------------
def _address(user: User) -> dict[str, str] | None:
    """§5.1.1: the parts UAA holds, and ``formatted`` made from them (lines joined by newlines)."""
    parts = {
        "street_address": user.street_address.strip(),
        "locality": user.locality.strip(),
        "region": user.region.strip(),
        "postal_code": user.postal_code.strip(),
        "country": user.country.strip(),
    }
    parts = {name: value for name, value in parts.items() if value}
    if not parts:
        return None
    city = " ".join(part for part in (parts.get("postal_code"), parts.get("locality")) if part)
    lines = [parts.get("street_address"), city, parts.get("region"), parts.get("country")]
    return {"formatted": "\n".join(line for line in lines if line), **parts}


def user_claims(user: User) -> dict[str, Any]:
    """Every standard claim UAA holds a value for about ``user`` (not ``sub``), by §5.1's names and types:
    ``updated_at`` a number of seconds, the ``*_verified`` claims booleans, ``address`` an object."""
    phone = user.phone_number
    values: dict[str, Any] = {
        "name": user.get_full_name(),
        "given_name": user.given_name,
        "family_name": user.family_name,
        "middle_name": user.middle_name,
        "nickname": user.nickname,
        "preferred_username": user.preferred_username,
        "profile": user.profile,
        "picture": user.picture,
        "website": user.website,
        "gender": user.gender,
        "birthdate": user.birthdate,
        "zoneinfo": user.zoneinfo,
        "locale": user.locale,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        "email_verified": bool(user.email_verified) if user.email else None,
        "address": _address(user),
        "phone_number": phone,
        "phone_number_verified": bool(user.phone_number_verified) if phone else None,
    }
    return {name: value for name, value in values.items() if value not in (None, "")}


# --- the claims request parameter (§5.5) ------------------------------------------------------------
def _scalar(value: object) -> bool:
    """A ``value`` a database can hold as it is kept (``RedeemedCode.claims`` is jsonb on PostgreSQL): no
    NaN or infinity (``1e400`` parses as one), no NUL or lone surrogate in a string."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return storable_text(value)
    return isinstance(value, int | bool)


def _no_constants(name: str) -> Any:
    """``json.loads`` takes ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON (RFC 8259 §6)."""
    raise ValueError(f"{name} is not JSON")


def _claim_request(spec: object) -> dict[str, Any] | None:
    """One claim's request (§5.5.1): null, or an object with ``essential``, ``value`` and ``values``."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise MalformedClaimsRequest()
    kept: dict[str, Any] = {}
    if "essential" in spec:
        if not isinstance(spec["essential"], bool):
            raise MalformedClaimsRequest()
        kept["essential"] = spec["essential"]
    if "value" in spec:
        if not _scalar(spec["value"]):
            raise MalformedClaimsRequest()
        kept["value"] = spec["value"]
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values or not all(_scalar(value) for value in values):
            raise MalformedClaimsRequest()
        kept["values"] = list(values)
    return kept or None


def parse_claims_request(value: object) -> ClaimsRequest:
    """§5.5 ``claims``, as sent (a JSON text) or as oauthlib decoded it, reduced to the claims UAA knows.

    Raises ``MalformedClaimsRequest``: not a JSON object (or not JSON at all), a ``userinfo`` or
    ``id_token`` member that is not an object, a claim's request that is not null or an object of the
    §5.5.1 members with their types (nested structures in ``value`` included), too many claims.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            raise MalformedClaimsRequest() from None
    if not isinstance(value, dict):
        raise MalformedClaimsRequest()
    known = set(USER_CLAIMS) | set(ID_TOKEN_CLAIMS)
    parsed: ClaimsRequest = {}
    for target in TARGETS:
        member = value.get(target)
        if member is None:
            continue
        if not isinstance(member, dict) or len(member) > MAX_CLAIMS:
            raise MalformedClaimsRequest()
        entries = {str(name): _claim_request(spec) for name, spec in member.items()}
        parsed[target] = {name: spec for name, spec in entries.items() if name in known}
    return {target: entries for target, entries in parsed.items() if entries}


def individually_requested(requested: ClaimsRequest, *, scopes: Iterable[str]) -> list[str]:
    """The user claims ``requested`` names outside the claims of ``scopes``: what a consent page lists
    besides the scopes, in ``USER_CLAIMS`` order."""
    granted = set(scopes)
    named = {name for entries in requested.values() for name in entries}
    return [name for name in CLAIM_SCOPE if name in named and CLAIM_SCOPE[name] not in granted]


def consent_items(requested: object, *, scopes: Iterable[str]) -> list[tuple[str, str]]:
    """The consent page's list of claims asked for on their own (name, what a person reads)."""
    try:
        parsed = parse_claims_request(requested)
    except MalformedClaimsRequest:
        return []
    return [(name, CLAIM_DESCRIPTIONS[name]) for name in individually_requested(parsed, scopes=scopes)]


def granted_request(requested: ClaimsRequest, *, scopes: Iterable[str], shown: bool) -> ClaimsRequest:
    """What of ``requested`` a grant of ``scopes`` keeps: the claims of those scopes and the protocol
    claims; the claims outside them only if the user was ``shown`` them (the consent page listed them,
    or an admin consented for a trusted client)."""
    outside = set() if shown else set(individually_requested(requested, scopes=scopes))
    kept = {
        target: {name: spec for name, spec in entries.items() if name not in outside}
        for target, entries in requested.items()
    }
    return {target: entries for target, entries in kept.items() if entries}


def answered_request(
    raw: object, *, shown_scopes: Iterable[str], granted_scopes: Iterable[str]
) -> str | None:
    """The claims request a consent answer grants (JSON, or ``None`` for none): a claim outside the granted
    scopes stays only if the page listed it by itself (``individually_requested`` of the scopes shown). A
    claim whose scope the page showed and the user did not grant was never listed on its own, and goes."""
    requested = parse_claims_request(raw)  # checked when the page was shown
    listed = set(individually_requested(requested, scopes=shown_scopes))
    refused = set(individually_requested(requested, scopes=granted_scopes)) - listed
    kept = {
        target: {name: spec for name, spec in entries.items() if name not in refused}
        for target, entries in requested.items()
    }
    kept = {target: entries for target, entries in kept.items() if entries}
    return json.dumps(kept) if kept else None


def sub_mismatch(requested: ClaimsRequest, *, user: User) -> bool:
    """§5.5.1: a ``sub`` asked for with a ``value`` or ``values`` the signed-in user's is not."""
    for entries in requested.values():
        spec = entries.get("sub") or {}
        if "value" in spec and spec["value"] != user.sub:
            return True
        if "values" in spec and user.sub not in spec["values"]:
            return True
    return False


def released(
    *, user: User, scopes: Iterable[str], requested: Mapping[str, Any] | None, target: str
) -> dict[str, Any]:
    """The claims about ``user`` for ``target`` (``ID_TOKEN`` or ``USERINFO``): ``sub``, those of the
    granted ``scopes``, and those the grant's (already granted) request names for ``target``."""
    granted = set(scopes)
    names = {name for scope in granted for name in SCOPE_CLAIMS.get(scope, ())}
    try:
        for_target = parse_claims_request(requested or {}).get(target, {})
    except MalformedClaimsRequest:  # stored before it was checked: nothing beyond the scopes
        for_target = {}
    names |= {name for name in for_target if name in CLAIM_SCOPE}
    held = user_claims(user)
    return {"sub": user.sub, **{name: held[name] for name in CLAIM_SCOPE if name in names and name in held}}
