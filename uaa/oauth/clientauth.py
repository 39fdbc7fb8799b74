"""RFC 6749 §2.3 client authentication at the token, revocation and introspection endpoints.

The validator's ``authenticate_client``/``authenticate_client_id`` hooks (and the introspection view,
through ``authenticate_caller``) run every attempt through here:

1. ``begin``: one method per request (§2.3: "MUST NOT use more than one authentication method in each
   request") — Basic, a secret in the body, or a client assertion (RFC 7523 §2.2) — else
   ``invalid_request``; then the throttle (accounts/throttling.py), before any credential is checked: a
   locked address or (client, address) pair gets 429 with Retry-After, no secret hashed, no signature
   verified, no ``jwks_uri`` fetched. A client-wide lock (failures from many addresses) refuses only
   what could guess a secret: a secret for a confidential client that has one, from an address the
   client has not authenticated from. A signature cannot be guessed, so assertions pass it (their
   cost stays limited per address), and so does the client at the addresses it works from.
2. ``succeeded``/``failed``: a failure counts against the address, and against the client from that
   address and from everywhere when it is registered; it is recorded as a counted summary
   (uaa/oauth/audit.py). A client-wide lock starting is an alarm (``oauth.client_under_attack``). A
   success forgives the client's failures from its address and remembers the address.

A secret authenticates as the client's current one or, while a rotation's grace window runs, as its
previous one (``previous_secret_matches``); both are hashed on every request, with stand-ins where a
client has no window or there is no client, so every attempt costs two hashes of the same kind.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from accounts import throttling
from accounts.models import ThrottleCounter
from tokens.clientip import client_address
from uaa import metrics
from uaa.oauth import audit, client_cache, rfc7523
from uaa.oauth.errors import ClientLockedOut, InvalidClient, InvalidRequest
from uaa.oauth.grant_context import grant_context
from uaa.oauth.hashers import UNKNOWN_CLIENT_SECRET, verify_client_secret
from uaa.oauth.http import storable_text
from uaa.oauth.models import Client

logger = logging.getLogger(__name__)

BASIC = "client_secret_basic"
POST = "client_secret_post"
JWT = Client.PRIVATE_KEY_JWT
NONE = "none"  # a public client identified by client_id alone (RFC 6749 §2.1, §3.2.1)

ONE_METHOD = "Use exactly one client authentication method per request (RFC 6749 section 2.3)."
MALFORMED_BASIC = "the Basic credentials are malformed"
UNKNOWN_CLIENT = "no client has this client_id"
WRONG_SECRET = "the client secret is wrong"
NO_SECRET = "no client credentials were sent"
USE_ASSERTION = "the client authenticates with private_key_jwt"
OTHER_CLIENT = "client_id names another client than the credentials"


class Throttled(oauthlib_errors.OAuth2Error):
    """oauthlib's form of ``uaa.oauth.errors.ClientLockedOut``: the grant and revocation endpoints render
    ``json``, ``status_code`` and ``headers`` of the errors raised in validator hooks."""

    error = "invalid_client"
    status_code = 429
    description = ClientLockedOut.description

    def __init__(self, *, retry_after: int, request: Any = None) -> None:
        super().__init__(request=request)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


SECRET_METHODS = frozenset({BASIC, POST})


@dataclass(frozen=True)
class Attempt:
    method: str
    claimed: str | None  # the client_id the request names (unverified)
    ip: str
    throttle: throttling.ClientThrottle


def auth_scheme(header: str) -> str:
    """The scheme of an ``Authorization`` header, lower-cased: RFC 9110 §11.1 "a case-insensitive token"."""
    return header.partition(" ")[0].lower()


def basic_credentials(header: str) -> str | None:
    """The token68 of ``Basic`` credentials (RFC 7617 §2), the scheme written in any case, or ``None``.
    RFC 9110 §11.4: ``credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]``."""
    if auth_scheme(header) != "basic":
        return None
    return header.partition(" ")[2].strip(" ") or None


def _basic_client_id(header: str) -> str | None:
    try:
        decoded = base64.b64decode(basic_credentials(header) or "", validate=False).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, _ = decoded.partition(":")
    return unquote_plus(client_id) if colon else None


def presented_secret(request: OAuthlibRequest, method: str) -> str:
    """The client secret the request carries by ``method``, Basic or the body; ``""`` if none or malformed."""
    if method != BASIC:
        return request.client_secret if isinstance(request.client_secret, str) else ""
    try:
        decoded = base64.b64decode(basic_credentials(_authorization(request)) or "", validate=False).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return ""
    return unquote_plus(decoded.partition(":")[2])


def _authorization(request: OAuthlibRequest) -> str:
    return (request.headers or {}).get("HTTP_AUTHORIZATION", "")


def _methods(request: OAuthlibRequest) -> list[str]:
    used = []
    if auth_scheme((request.headers or {}).get("HTTP_AUTHORIZATION", "")) == "basic":
        used.append(BASIC)
    if request.client_secret is not None:
        used.append(POST)
    if rfc7523.present(request):
        used.append(JWT)
    return used


def _claimed(request: OAuthlibRequest, method: str) -> str | None:
    if method == BASIC:
        claimed = _basic_client_id((request.headers or {}).get("HTTP_AUTHORIZATION", ""))
    elif method == JWT:
        claimed = rfc7523.claimed_client_id(request) or request.client_id
    else:
        claimed = request.client_id
    if not isinstance(claimed, str) or not claimed or len(claimed) > 255 or not storable_text(claimed):
        return None  # names no client: never looked up (NUL, a lone surrogate: the driver would refuse it)
    return claimed


def registered(client_id: str | None) -> Client | None:
    return Client.objects.filter(client_id=client_id).first() if client_id else None


def begin(request: OAuthlibRequest) -> Attempt:
    """Refuse two methods at once, then a throttled caller; else the attempt, to settle with
    ``succeeded`` or ``failed``."""
    used = _methods(request)
    if len(used) > 1:
        raise oauthlib_errors.InvalidRequestError(description=ONE_METHOD, request=request)
    method = used[0] if used else NONE
    claimed = _claimed(request, method)
    ip = client_address(request.headers or {})
    throttle = _read_counters(request, claimed=claimed, ip=ip)
    known = None
    retry_after = throttle.retry_after
    if not retry_after and throttle.client_retry_after and method in SECRET_METHODS:
        known = registered(claimed)  # read only while the client-wide lock runs
        retry_after = throttle.refuses(guessable=_has_guessable_secret(known))
    if retry_after:
        known = known or registered(claimed)
        client_id = known.client_id if known else ""
        audit.client_authentication_throttled(client_id=client_id, method=method, headers=request.headers)
        metrics.client_authentication_failed(method=method, reason="throttled")
        logger.debug("oauth.client_authentication_throttled", extra={"client_id": client_id})
        raise Throttled(retry_after=retry_after, request=request)
    return Attempt(method=method, claimed=claimed, ip=ip, throttle=throttle)


def _read_counters(request: OAuthlibRequest, *, claimed: str | None, ip: str) -> throttling.ClientThrottle:
    """The throttle counters (accounts/throttling.py) and, in the same query, the version of the client
    ``claimed`` names (uaa/oauth/client_cache.py), which the validator's client lookup then uses: one
    round trip for both on every client authentication."""
    now = timezone.now()
    keys = throttling.client_counter_keys(client_id=claimed, ip=ip)
    with connection.cursor() as cursor:
        cursor.execute(_counters_sql(len(keys)), [*keys, claimed or ""])
        rows = cursor.fetchall()
    counters = [
        (key, failures, _aware(locked), _aware(started))
        for key, failures, locked, started, _, _ in rows
        if key
    ]
    versions = [
        (int(pk), int(generation), str(row or "")) for key, pk, _, _, generation, row in rows if key is None
    ]
    if claimed:
        grant_context(request).client_version = (claimed, versions[0] if versions else None)
    return throttling.client_throttle(keys=keys, rows=counters, now=now)


@cache
def _counters_sql(count: int) -> str:
    quote = connection.ops.quote_name
    counters, clients = ThrottleCounter._meta.db_table, Client._meta.db_table
    columns = ", ".join(quote(name) for name in ("key", "failures", "locked_until", "window_started_at"))
    return (
        f"SELECT {columns}, NULL, NULL FROM {quote(counters)}"  # noqa: S608 - our own tables  # nosec B608
        f" WHERE {quote('key')} IN ({', '.join(['%s'] * count)})"
        f" UNION ALL SELECT NULL, {quote('id')}, NULL, NULL, {quote('generation')},"
        f" {client_cache.row_version_sql(connection.vendor)} FROM {quote(clients)}"
        f" WHERE {quote('client_id')} = %s"
    )


def _aware(value: Any) -> Any:
    """A timestamp as the ORM would give it: SQLite's driver answers a raw query with text or a naive
    datetime (stored in UTC, USE_TZ), PostgreSQL's with an aware one."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if isinstance(value, datetime) and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def _has_guessable_secret(client: Client | None) -> bool:
    """Whether a right secret would authenticate ``client``: a confidential client that is not
    private_key_jwt (a public client's secret and a private_key_jwt client's authenticate nothing)."""
    return (
        client is not None
        and client.client_type == Client.CLIENT_CONFIDENTIAL
        and client.token_endpoint_auth_method != Client.PRIVATE_KEY_JWT
    )


def succeeded(attempt: Attempt, *, client: Client) -> None:
    throttling.record_client_success(client_id=client.client_id, ip=attempt.ip, throttle=attempt.throttle)


def _named_client(request: OAuthlibRequest, claimed: str | None) -> Client | None:
    """The registered client ``claimed`` names, as this request has already found it: the client it
    loaded, or by the version read with the counters (``_read_counters``): no further query for an unknown
    client_id nor, from the client cache, for a registered one (issue 12: a failure's cost does not depend
    on which it is)."""
    if not claimed:
        return None
    held = request.client
    if isinstance(held, Client) and held.client_id == claimed:
        return held
    prefetched = grant_context(request).client_version
    if prefetched is not None and prefetched[0] == claimed:
        return client_cache.get_client(claimed, version=prefetched[1])
    return registered(claimed)


def failed(
    attempt: Attempt, *, request: OAuthlibRequest, reason: str | None = None, assertion: str = ""
) -> None:
    """Count and record a failed attempt; ``reason`` defaults to what the request and registry show."""
    known = _named_client(request, attempt.claimed)
    if reason is None:
        reason = _reason(attempt, known)
    client_id = known.client_id if known else ""
    if throttling.record_client_failure(client_id=client_id or None, ip=attempt.ip):
        logger.warning(
            "oauth.client_under_attack",
            extra={"client_id": client_id, "lockout_seconds": settings.UAA_CLIENT_LOCKOUT_SECONDS},
        )
    metrics.client_authentication_failed(method=attempt.method, reason=reason)
    audit.client_authentication_failed(
        client_id=client_id,
        method=attempt.method,
        reason=reason,
        headers=request.headers,
        assertion=assertion,
    )
    logger.info(
        "oauth.client_authentication_failed",
        extra={"client_id": client_id, "method": attempt.method, "reason": reason},
    )


def _reason(attempt: Attempt, known: Client | None) -> str:
    if attempt.claimed is None:
        return MALFORMED_BASIC if attempt.method == BASIC else UNKNOWN_CLIENT
    if known is None:
        return UNKNOWN_CLIENT
    if known.token_endpoint_auth_method == Client.PRIVATE_KEY_JWT:
        return USE_ASSERTION
    if attempt.method == NONE:
        return NO_SECRET
    return WRONG_SECRET


def previous_secret_matches(request: OAuthlibRequest, *, presented: str) -> bool:
    """Whether ``presented`` is the previous secret of the client this request loaded, in its grace window
    (uaa/oauth/services.py ``rotate_client_secret``). Always exactly one hash and one constant-time
    comparison: against that hash, or, for a client with no window running (ended, run out, never opened)
    and for no client at all, against ``hashers.UNKNOWN_CLIENT_SECRET`` (same hasher, same salt length),
    so the time tells no prober whether a window runs or whether the secret they hold is the old one. The
    end is compared with the clock here, on every request: a cached copy of the row cannot outlive it."""
    client = request.client if isinstance(request.client, Client) else None
    previous = client.previous_secret_at(timezone.now()) if client is not None else ""
    matches = verify_client_secret(provided=presented, stored=previous or UNKNOWN_CLIENT_SECRET)
    if matches and previous and client is not None:
        logger.info(
            "oauth.previous_client_secret_used",
            extra={"client_id": client.client_id, "until": str(client.previous_secret_expires)},
        )
    return matches and bool(previous)


def authenticate_caller(request: HttpRequest) -> Client:
    """The introspection endpoint's client authentication (RFC 7662 §2.1), by the same validator hook as
    the token endpoint: the authenticated client, which must be a confidential one (a resource server),
    or a uaa ``OAuthError`` (401, 400 or 429)."""
    from oauth2_provider.oauth2_backends import get_oauthlib_core

    core = get_oauthlib_core()
    uri, method, body, headers = core._extract_params(request)
    oauth_request = OAuthlibRequest(uri, method, body, headers)
    try:
        authenticated = core.server.request_validator.authenticate_client(oauth_request)
    except Throttled as exc:
        raise ClientLockedOut(exc.retry_after) from exc
    except oauthlib_errors.InvalidRequestError as exc:
        raise InvalidRequest(exc.description) from exc
    if not authenticated or not isinstance(oauth_request.client, Client):
        raise InvalidClient()
    if oauth_request.client.client_type != Client.CLIENT_CONFIDENTIAL:
        raise InvalidClient()
    return oauth_request.client
