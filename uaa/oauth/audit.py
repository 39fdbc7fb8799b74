"""Audit records of OAuth events: what an oauthlib request becomes in the ledger (tokens/ledger.py).

Called from the validator's hooks inside the transaction that stores the grant, so a grant and its
record commit or roll back together. Tokens, codes and secrets appear only as SHA-256 digests and
``jti``; ID tokens by ``jti``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from oauthlib.common import Request as OAuthlibRequest

from tokens import ledger
from tokens.models import LedgerRecord
from uaa.clientip import client_address


def _metadata(request: OAuthlibRequest) -> ledger.RequestMetadata:
    headers = request.headers or {}
    return {"ip": client_address(headers), "user_agent": headers.get("HTTP_USER_AGENT", "")}


def _sub(user: Any) -> str:
    return str(user.pk) if user is not None and getattr(user, "pk", None) is not None else ""


def _claims(jwt: str) -> dict[str, Any]:
    """The payload of a JWT we just signed ourselves (no verification needed, nothing trusted from it)."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _evidence(request: OAuthlibRequest) -> dict[str, Any]:
    """The actor's own signature over the request, where there is one (a private_key_jwt assertion)."""
    assertion = getattr(request, "uaa_client_assertion", None)
    return {"client_assertion": assertion} if assertion else {}


def token_issued(*, token: dict[str, Any], request: OAuthlibRequest) -> None:
    """RFC 6749 §5.1: one record per token response, per grant type."""
    access_token = token.get("access_token") or ""
    claims = _claims(access_token)
    hashes = {"access_token": ledger.sha256_hex(access_token)} if access_token else {}
    if token.get("refresh_token"):
        hashes["refresh_token"] = ledger.sha256_hex(token["refresh_token"])
    if request.grant_type == "authorization_code" and request.code:
        hashes["code"] = ledger.sha256_hex(request.code)
    if request.grant_type == "refresh_token" and request.refresh_token:
        hashes["previous_refresh_token"] = ledger.sha256_hex(request.refresh_token)
    detail: dict[str, Any] = {}
    id_token_jti = getattr(getattr(request, "id_token", None), "jti", None)
    if token.get("id_token") and id_token_jti:
        detail["id_token_jti"] = str(id_token_jti)
    family = getattr(request, "uaa_refresh_token_family", None)
    if family:
        detail["refresh_token_family"] = str(family)
    aud = claims.get("aud", [])
    ledger.append_record(
        event=LedgerRecord.Event.TOKEN_ISSUED,
        client_id=request.client.client_id,
        sub=_sub(request.user),
        grant_type=request.grant_type,
        scope=str(token.get("scope", "")).split(),
        aud=[aud] if isinstance(aud, str) else list(aud),
        jti=str(claims.get("jti", "")),
        hashes=hashes,
        amr=list(getattr(request, "uaa_amr", None) or []),
        acr=getattr(request, "uaa_acr", None) or "",
        evidence=_evidence(request),
        detail=detail,
        **_metadata(request),
    )


def authorization_granted(*, code: str, request: OAuthlibRequest) -> None:
    """RFC 6749 §4.1.2: the user's authorization (consent given, or skipped for a trusted or remembered
    client) as the code that carries it is stored."""
    context = getattr(request, "uaa_auth", None) or {}
    ledger.append_record(
        event=LedgerRecord.Event.AUTHORIZATION_GRANTED,
        client_id=request.client.client_id,
        sub=_sub(request.user),
        scope=list(request.scopes or []),
        hashes={"code": ledger.sha256_hex(code)},
        amr=list(context.get("amr") or []),
        acr=context.get("acr") or "",
        detail={"consent": getattr(request, "uaa_consent", ""), "redirect_uri": request.redirect_uri or ""},
        **_metadata(request),
    )


def authorization_denied(*, user: Any, client_id: str, scopes: list[str], http_request: Any) -> None:
    """RFC 6749 §4.1.2.1 access_denied: the user refused on the consent page."""
    ledger.append_record(
        event=LedgerRecord.Event.AUTHORIZATION_DENIED,
        client_id=client_id,
        sub=_sub(user),
        scope=scopes,
        **ledger.request_metadata(http_request),
    )


def refresh_token_rejected(*, refresh_token: str, request: OAuthlibRequest) -> None:
    """RFC 9700 §4.14.2: a revoked refresh token presented again revokes its family; record that."""
    presented = (
        get_refresh_token_model()
        .objects.filter(token_checksum=ledger.sha256_hex(refresh_token), revoked__isnull=False)
        .exclude(token_family=None)
        .select_related("application")
        .first()
    )
    if presented is None:
        return  # unknown or merely expired: nothing was revoked
    ledger.append_record(
        event=LedgerRecord.Event.REFRESH_TOKEN_REUSED,
        client_id=presented.application.client_id if presented.application else "",
        sub=str(presented.user_id or ""),
        hashes={"refresh_token": ledger.sha256_hex(refresh_token)},
        detail={"refresh_token_family": str(presented.token_family), "family_revoked": True},
        **_metadata(request),
    )


def revocable_token_type(*, token: str, request: OAuthlibRequest) -> str:
    """Which of the client's tokens ``token`` is, before RFC 7009 revocation deletes the evidence."""
    application = getattr(request.client, "pk", None)
    lookup = {"token_checksum": ledger.sha256_hex(token), "application_id": application}
    if application is None:
        return ""
    if get_access_token_model().objects.filter(**lookup).exists():
        return "access_token"
    if get_refresh_token_model().objects.filter(**lookup, revoked__isnull=True).exists():
        return "refresh_token"
    return ""


def token_revoked(*, token: str, token_type: str, request: OAuthlibRequest) -> None:
    """RFC 7009 §2.1: a client revoked one of its tokens."""
    claims = _claims(token) if token_type == "access_token" else {}
    ledger.append_record(
        event=LedgerRecord.Event.TOKEN_REVOKED,
        client_id=request.client.client_id,
        jti=str(claims.get("jti", "")),
        sub=str(claims.get("sub", "")) if claims.get("sub") != request.client.client_id else "",
        hashes={token_type: ledger.sha256_hex(token)},
        evidence=_evidence(request),
        **_metadata(request),
    )


def code_replayed(*, redemption: Any, access_tokens: list[Any], request: OAuthlibRequest | None) -> None:
    """RFC 6749 §4.1.2: a spent code presented again; the tokens it produced were revoked."""
    ledger.append_record(
        event=LedgerRecord.Event.CODE_REPLAYED,
        client_id=redemption.client_id,
        sub=next((str(token.user_id) for token in access_tokens if token.user_id), ""),
        hashes={"code": redemption.code_checksum, "access_token": redemption.access_token_checksum},
        detail={"refresh_token_family": str(redemption.refresh_token_family or ""), "tokens_revoked": True},
        **(_metadata(request) if request is not None else {}),
    )
