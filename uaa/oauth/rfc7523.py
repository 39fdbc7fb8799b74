"""RFC 7523 §2.2 and §3: JWT client assertions, the ``private_key_jwt`` method of OIDC Core §9.

The client signs a short-lived JWT with a key it registered (an inline JWK Set or a ``jwks_uri``), and
sends it as ``client_assertion`` with ``client_assertion_type`` =
``urn:ietf:params:oauth:client-assertion-type:jwt-bearer``. UAA checks the signature, ``iss`` = ``sub`` =
the client, ``aud`` (the issuer or the endpoint's URL), ``exp`` (and ``nbf``/``iat`` when present), and
that its ``jti`` was never used before. A valid assertion is kept with the grant's audit record: it is
the client's own signature over the request. Every rejection is recorded too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from tokens import ledger
from tokens.models import LedgerRecord
from uaa.clientip import client_address
from uaa.oauth import remote_jwks
from uaa.oauth.models import Client, SpentAssertion

logger = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]  # asymmetric only: never "none", never HS*
LEEWAY = timedelta(seconds=30)
MAX_LIFETIME = timedelta(minutes=10)  # bounds how long a jti must be remembered
MAX_ASSERTION_BYTES = 8192


class AssertionRejected(Exception):
    """Why an assertion does not authenticate its client (recorded; the client only sees invalid_client)."""


@dataclass(frozen=True)
class AuthenticatedAssertion:
    client: Client
    assertion: str
    jti: str


def present(request: Any) -> bool:
    """Whether an oauthlib request authenticates with a client assertion (either parameter counts)."""
    return bool(getattr(request, "client_assertion", None) or getattr(request, "client_assertion_type", None))


def authenticate_request(request: Any) -> bool:
    """The validator's hook: authenticate an oauthlib request by its assertion, or record why not."""
    assertion = str(getattr(request, "client_assertion", None) or "")
    try:
        result = authenticate(
            assertion=assertion,
            assertion_type=str(getattr(request, "client_assertion_type", None) or ""),
            client_id=request.client_id,
            audiences=endpoint_audiences(request.uri),
        )
    except AssertionRejected as exc:
        record_rejection(assertion=assertion, reason=str(exc), request_headers=request.headers)
        return False
    request.client = result.client
    request.uaa_client_assertion = result.assertion
    return True


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any], jws.JWS]:
    parsed = jws.JWS()
    try:
        parsed.deserialize(assertion)
        header = parsed.jose_header
        payload = json.loads(parsed.objects["payload"])
    except (JWException, ValueError, TypeError, KeyError) as exc:
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
    except (JWException, ValueError, TypeError) as exc:
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
    return datetime.fromtimestamp(value, UTC)


def _check_claims(claims: dict[str, Any], *, audiences: set[str], now: datetime) -> None:
    aud = claims.get("aud")
    named = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
    if not named & audiences:
        raise AssertionRejected("aud names neither the issuer nor this endpoint")
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


def endpoint_audiences(request_uri: str) -> set[str]:
    """What ``aud`` may name: the issuer, the token endpoint (OIDC Core §9), the endpoint called."""
    base = request_uri.split("?", 1)[0]
    path = base.split("://", 1)[-1].partition("/")[2]
    return {
        settings.UAA_ISSUER,
        settings.UAA_ISSUER + reverse("oauth:token"),
        f"{settings.UAA_ISSUER}/{path}",
    }


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
    if client_id and client_id != issuer:
        raise AssertionRejected("client_id does not match the assertion")
    now = timezone.now()
    _check_claims(claims, audiences=audiences, now=now)  # before any key is read or fetched
    client = Client.objects.filter(client_id=issuer).first() if "\x00" not in issuer else None
    if client is None or client.token_endpoint_auth_method != Client.PRIVATE_KEY_JWT:
        raise AssertionRejected("no client registered for private_key_jwt has this client_id")
    _verify_signature(parsed, header, registered_keys(client))
    _spend(client=client, jti=claims["jti"], expires=_instant(claims, "exp") or now)
    return AuthenticatedAssertion(client=client, assertion=assertion, jti=claims["jti"])


def record_rejection(*, assertion: str, reason: str, request_headers: Any) -> None:
    """RFC 7523 §3.2 invalid_client, kept in the ledger as a failed attempt (the assertion by digest)."""
    claimed = ""
    try:
        claimed = str(_unverified(assertion)[1].get("iss", ""))[:255]
    except AssertionRejected:
        pass
    headers = request_headers or {}
    ledger.append_record(
        event=LedgerRecord.Event.CLIENT_AUTHENTICATION_FAILED,
        client_id=claimed,
        hashes={"client_assertion": ledger.sha256_hex(assertion)} if assertion else {},
        detail={"method": Client.PRIVATE_KEY_JWT, "reason": reason},
        ip=client_address(headers),
        user_agent=headers.get("HTTP_USER_AGENT", ""),
    )
    logger.info("oauth.client_assertion_rejected", extra={"client_id": claimed, "reason": reason})
