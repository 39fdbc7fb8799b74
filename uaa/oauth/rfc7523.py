"""RFC 7523 §2.2 and §3: JWT client assertions, the ``private_key_jwt`` method of OIDC Core §9.

The client signs a short-lived JWT with a key it registered (an inline JWK Set or a ``jwks_uri``), and
sends it as ``client_assertion`` with ``client_assertion_type`` =
``urn:ietf:params:oauth:client-assertion-type:jwt-bearer``. UAA checks, cheapest first: that it is a
JWT, i.e. a JWS in compact serialization (RFC 7519 §1; a JWS JSON serialization's unprotected header is
not signed, and the assertion is kept as evidence), the algorithm,
``iss`` = ``sub`` = the client, ``aud`` = the issuer identifier as its sole value
(draft-ietf-oauth-rfc7523bis §4: an endpoint URL is refused unless
``UAA_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUD``), ``exp`` (and ``nbf``/``iat`` when present), ``jti``; only
then the client's keys (a ``jwks_uri`` is fetched by uaa/oauth/remote_jwks.py) and the signature; last,
that the ``jti`` was never used before. A valid assertion is kept with the grant's audit record: it is
the client's own signature over the request. A rejection raises ``AssertionRejected`` with the reason
the validator records (uaa/oauth/clientauth.py: throttled, and summarised in the ledger).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from uaa.oauth import remote_jwks
from uaa.oauth.grant_context import grant_context
from uaa.oauth.http import storable_text
from uaa.oauth.models import Client, SpentAssertion

logger = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]  # asymmetric only: never "none", never HS*
LEEWAY = timedelta(seconds=30)
MAX_LIFETIME = timedelta(minutes=10)  # bounds how long a jti must be remembered
MAX_ASSERTION_BYTES = 8192
# RFC 7519 §2 NumericDate: seconds since the epoch. What datetime can hold (years 1-9999) bounds it; a value
# outside is no date at all (datetime.fromtimestamp raised OverflowError/OSError on it: a 500).
NUMERIC_DATE_RANGE = (-62135596800, 253402300799)
WRONG_AUDIENCE = "aud is not the issuer identifier"
NOT_COMPACT = "not a JWT in compact serialization"
# RFC 7519 §1 / RFC 7515 §7.1: BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature). A JWS JSON
# Serialization (RFC 7515 §7.2) is no JWT, and its unprotected "header" is not covered by the signature.
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class AssertionRejected(Exception):
    """Why an assertion does not authenticate its client (recorded; the client only sees invalid_client).
    The message is one of a fixed set of sentences: nothing the caller wrote is copied into it."""


@dataclass(frozen=True)
class AuthenticatedAssertion:
    client: Client
    assertion: str
    jti: str


def present(request: Any) -> bool:
    """Whether an oauthlib request authenticates with a client assertion (either parameter counts)."""
    return bool(getattr(request, "client_assertion", None) or getattr(request, "client_assertion_type", None))


def authenticate_request(request: Any) -> None:
    """The validator's hook: authenticate an oauthlib request by its assertion (``request.client`` is set),
    or raise ``AssertionRejected``."""
    result = authenticate(
        assertion=str(getattr(request, "client_assertion", None) or ""),
        assertion_type=str(getattr(request, "client_assertion_type", None) or ""),
        client_id=request.client_id,
        audiences=accepted_audiences(request.uri),
    )
    request.client = result.client
    grant_context(request).client_assertion = result.assertion


def claimed_client_id(request: Any) -> str | None:
    """The client an assertion says it is (its unverified ``iss``), for throttling and the audit record.

    It runs before the throttle, for anyone: an assertion over ``MAX_ASSERTION_BYTES`` is never decoded
    (``authenticate`` refuses it as it is), and what is decoded is parsed safely (``_unverified``)."""
    assertion = str(getattr(request, "client_assertion", None) or "")
    if len(assertion) > MAX_ASSERTION_BYTES:
        return None
    try:
        issuer = _unverified(assertion)[1].get("iss")
    except AssertionRejected:
        return None
    return issuer if isinstance(issuer, str) and storable_text(issuer) else None


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any], jws.JWS]:
    """Header, claims and the parsed JWS of a compact JWS: every byte of it either signed or the signature,
    so the assertion kept as evidence holds nothing the client did not sign. JSON nested deeper than the
    interpreter's recursion limit (3000 ``[``) is as malformed as any other (RecursionError)."""
    if not COMPACT_JWS.fullmatch(assertion):
        raise AssertionRejected(NOT_COMPACT)
    parsed = jws.JWS()
    try:
        parsed.deserialize(assertion)
        header = parsed.jose_header
        payload = json.loads(parsed.objects["payload"])
    except (JWException, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise AssertionRejected("not a signed JWT") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AssertionRejected("not a signed JWT")
    return header, payload, parsed


def registered_keys(client: Client) -> jwk.JWKSet:
    """The client's public keys: its inline JWK Set, else the one at its ``jwks_uri`` (fetched safely)."""
    try:
        document = client.jwks or (remote_jwks.fetch_jwks(client.jwks_uri) if client.jwks_uri else {})
    except remote_jwks.FetchFailed as exc:
        raise AssertionRejected("the client's jwks_uri could not be read") from exc
    try:
        return jwk.JWKSet.from_json(json.dumps(document))
    except (JWException, ValueError, TypeError, RecursionError) as exc:
        raise AssertionRejected("the client's registered JWK Set is unusable") from exc


def _check_algorithm(header: dict[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        known = isinstance(alg, str) and alg in ("none", "HS256", "HS384", "HS512", "RS384", "RS512", "ES384")
        raise AssertionRejected(
            f"algorithm {alg!r} is not accepted" if known else "the algorithm is not accepted"
        )
    return alg


def _verify_signature(parsed: jws.JWS, header: dict[str, Any], keys: jwk.JWKSet) -> None:
    alg = _check_algorithm(header)
    kid = header.get("kid")
    candidates = [keys.get_key(kid)] if kid else list(keys)
    for key in candidates:
        if key is None or key.has_private:
            continue
        try:
            parsed.verify(key, alg=alg)
            return
        except JWException:
            continue
    raise AssertionRejected("not signed by a key the client registered")


def _instant(claims: dict[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise AssertionRejected(f"{name} is not a NumericDate")
    low, high = NUMERIC_DATE_RANGE
    if not low <= value <= high:
        raise AssertionRejected(f"{name} is out of range")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:  # a platform's time_t may hold less
        raise AssertionRejected(f"{name} is out of range") from exc


def _check_claims(claims: dict[str, Any], *, audiences: set[str], now: datetime) -> None:
    aud = claims.get("aud")
    sole = aud if isinstance(aud, str) else aud[0] if isinstance(aud, list) and len(aud) == 1 else None
    if not isinstance(sole, str) or sole not in audiences:
        raise AssertionRejected(WRONG_AUDIENCE)  # rfc7523bis §4: the issuer, as the only audience
    expires = _instant(claims, "exp")
    if expires is None:
        raise AssertionRejected("exp is missing")
    if expires <= now - LEEWAY:
        raise AssertionRejected("the assertion has expired")
    if expires > now + MAX_LIFETIME:
        raise AssertionRejected("exp is too far in the future")
    not_before = _instant(claims, "nbf")
    if not_before is not None and not_before > now + LEEWAY:
        raise AssertionRejected("the assertion is not valid yet (nbf)")
    issued = _instant(claims, "iat")
    if issued is not None and issued > now + LEEWAY:
        raise AssertionRejected("iat is in the future")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise AssertionRejected("jti is missing")
    if not storable_text(claims["jti"]):
        raise AssertionRejected("jti is not text that can be stored")


def _spend(*, client: Client, jti: str, expires: datetime) -> None:
    """Remember ``jti`` until the assertion expires; a second use is a replay (a unique constraint,
    so two concurrent requests with one assertion cannot both pass)."""
    try:
        with transaction.atomic():
            SpentAssertion.objects.create(
                client_id=client.client_id,
                jti_sha256=hashlib.sha256(jti.encode()).hexdigest(),
                expires=expires + LEEWAY,
            )
    except IntegrityError as exc:
        raise AssertionRejected("the assertion was used before (jti replayed)") from exc


def accepted_audiences(request_uri: str) -> set[str]:
    """What ``aud`` may be: the issuer identifier (draft-ietf-oauth-rfc7523bis §4). Where
    ``UAA_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUD`` says so, also the token endpoint URL (OIDC Core §9) and
    the URL of the endpoint called, for clients not yet updated to the advisory."""
    accepted = {settings.UAA_ISSUER}
    if settings.UAA_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUD:
        path = request_uri.split("?", 1)[0].split("://", 1)[-1].partition("/")[2]
        accepted |= {settings.UAA_ISSUER + reverse("oauth:token"), f"{settings.UAA_ISSUER}/{path}"}
    return accepted


def authenticate(
    *, assertion: str, assertion_type: str, client_id: str | None, audiences: set[str]
) -> AuthenticatedAssertion:
    """The client a valid assertion authenticates; ``AssertionRejected`` says why not."""
    if assertion_type != ASSERTION_TYPE:
        raise AssertionRejected("client_assertion_type is not jwt-bearer")
    if not assertion or len(assertion) > MAX_ASSERTION_BYTES:
        raise AssertionRejected("client_assertion is missing or too long")
    header, claims, parsed = _unverified(assertion)
    _check_algorithm(header)
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or issuer != claims.get("sub"):
        raise AssertionRejected("iss and sub must both be the client_id")
    if not storable_text(issuer):  # NUL or a lone surrogate ("\ud800"): no client_id, never queried
        raise AssertionRejected("no client registered for private_key_jwt has this client_id")
    if client_id and client_id != issuer:
        raise AssertionRejected("client_id does not match the assertion")
    now = timezone.now()
    _check_claims(claims, audiences=audiences, now=now)  # before any key is read or fetched
    client = Client.objects.filter(client_id=issuer).first()
    if client is None or client.token_endpoint_auth_method != Client.PRIVATE_KEY_JWT:
        raise AssertionRejected("no client registered for private_key_jwt has this client_id")
    _verify_signature(parsed, header, registered_keys(client))
    _spend(client=client, jti=claims["jti"], expires=_instant(claims, "exp") or now)
    return AuthenticatedAssertion(client=client, assertion=assertion, jti=claims["jti"])
