"""Authorization codes: their sign-in context, their redemption, and what a replay revokes.

RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization server MUST
deny the request and SHOULD revoke (when possible) all tokens previously issued based on that
authorization code." Codes are kept only as SHA-256 checksums once spent.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from oauthlib.common import Request as OAuthlibRequest

from tokens.checksum import sha256_hex
from uaa.oauth import audit
from uaa.oauth.grant_context import grant_context
from uaa.oauth.models import AuthorizationCode, RedeemedCode

logger = logging.getLogger(__name__)


def record_auth_context(*, grant: AuthorizationCode, context: dict[str, Any] | None) -> None:
    """Copy the SSO session's authentication context (auth_time, amr, acr, sid) onto a new code."""
    if not context:
        return
    auth_time = context.get("auth_time")
    grant.auth_time = parse_datetime(auth_time) if isinstance(auth_time, str) else auth_time
    grant.amr = list(context.get("amr") or [])
    grant.acr = context.get("acr") or ""
    grant.session_id = context.get("sid") or ""
    grant.save(update_fields=["auth_time", "amr", "acr", "session_id"])


def _apply_context(request: OAuthlibRequest, source: AuthorizationCode | RedeemedCode) -> None:
    context = grant_context(request)
    context.auth_time = source.auth_time
    context.amr = list(source.amr or [])
    context.acr = source.acr
    context.sid = source.session_id


def lock_for_redemption(*, code: str) -> None:
    """Lock the code's row for the rest of the token request's transaction (uaa.oauth.views.TokenView).

    Two requests redeeming one code at the same moment are serialized: the second finds the code spent
    and is handled as a replay (RFC 6749 §4.1.2), instead of both minting tokens.
    """
    list(AuthorizationCode.objects.select_for_update().filter(code=code).values_list("pk", flat=True))


def load_auth_context(*, code: str, client: Any, request: OAuthlibRequest) -> None:
    grant = AuthorizationCode.objects.filter(code=code, application=client).first()
    if grant is not None:
        _apply_context(request, grant)
        grant_context(request).code = grant
        if not getattr(request, "resource", None) and grant.resource:
            request.resource = list(grant.resource)


def load_family_context(*, family: Any, request: OAuthlibRequest) -> RedeemedCode | None:
    """The sign-in context of the code a refresh token family came from, applied to ``request``; the
    redemption (or ``None``), which the not-before check reads too (uaa/oauth/not_before.py)."""
    if family is None:
        return None
    redemption = RedeemedCode.objects.filter(refresh_token_family=family).first()
    if redemption is not None:
        _apply_context(request, redemption)
    return redemption


def remember_redemption(*, code: str, request: OAuthlibRequest) -> None:
    """Record the spent code with the tokens it produced (same transaction as the token issue)."""
    context = grant_context(request)
    grant = context.code
    RedeemedCode.objects.create(
        code_checksum=sha256_hex(code),
        client_id=request.client.client_id,
        access_token_checksum=context.access_token_checksum,
        refresh_token_family=context.refresh_token_family,
        auth_time=getattr(grant, "auth_time", None),
        session_id=getattr(grant, "session_id", ""),
        amr=list(getattr(grant, "amr", []) or []),
        acr=getattr(grant, "acr", ""),
        claims=stored_claims_request(grant),
        expires=timezone.now() + timedelta(seconds=settings.UAA_REFRESH_TOKEN_LIFETIME),
    )


def stored_claims_request(grant: AuthorizationCode | None) -> dict[str, Any]:
    """The claims request (OIDC Core §5.5) a code was granted with (uaa/oauth/claims.py), or none."""
    try:
        value = json.loads(grant.claims) if grant is not None and grant.claims else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@cache
def _claims_request_sql(vendor: str, *, refreshed: bool) -> str:
    """The first redemption's ``claims``: of the token's own code, or (``refreshed``: the token comes from
    a refresh token) of its family's code, when that refresh token has a family. Plain SQL, written once:
    userinfo reads it on every request."""
    quote = connection.ops.quote_name
    table = quote(RedeemedCode._meta.db_table)
    own = "r.access_token_checksum = %s"
    if refreshed:
        family = (
            f"(SELECT s.token_family FROM {quote(get_refresh_token_model()._meta.db_table)} s"  # noqa: S608 - our own tables  # nosec B608
            f" WHERE s.{quote('id')} = %s)"
        )
        own = f"r.refresh_token_family = {family} OR ({own} AND {family} IS NULL)"
    return f"SELECT r.claims FROM {table} r WHERE {own} ORDER BY r.{quote('id')} LIMIT 1"  # noqa: S608 - our own tables  # nosec B608


def claims_request_of(access_token: Any) -> dict[str, Any]:
    """The claims request of the code an access token comes from, directly or by a refresh of its
    family (``RedeemedCode.claims``); none for a token of no code."""
    source_id = access_token.source_refresh_token_id
    refreshed = source_id is not None
    params = (
        [source_id, access_token.token_checksum, source_id] if refreshed else [access_token.token_checksum]
    )
    with connection.cursor() as cursor:
        cursor.execute(_claims_request_sql(connection.vendor, refreshed=refreshed), params)
        row = cursor.fetchone()
    claims = RedeemedCode._meta.get_field("claims").from_db_value(row[0], None, connection) if row else None  # type: ignore[union-attr,arg-type]
    return claims if isinstance(claims, dict) else {}


def revoke_tokens_of_replayed_code(*, code: str, request: OAuthlibRequest | None = None) -> bool:
    """Revoke everything a spent code produced. Returns whether ``code`` was a spent code."""
    redemption = RedeemedCode.objects.filter(code_checksum=sha256_hex(code)).first()
    if redemption is None:
        return False
    with transaction.atomic():  # the revocation and its audit record together
        access_tokens = list(
            get_access_token_model().objects.filter(token_checksum=redemption.access_token_checksum)
        )
        if redemption.refresh_token_family:
            get_refresh_token_model().revoke_family(redemption.refresh_token_family)
        for token in access_tokens:
            token.revoke()
        audit.code_replayed(redemption=redemption, access_tokens=access_tokens, request=request)
    logger.warning(
        "oauth.authorization_code_replayed",
        extra={"client_id": redemption.client_id, "code_sha256": redemption.code_checksum[:8]},
    )
    return True
