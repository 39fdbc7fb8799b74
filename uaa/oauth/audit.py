"""Audit records of OAuth events: what an oauthlib request becomes in the ledger (tokens/ledger/).

Called from the validator's hooks inside the transaction that stores the grant, so a grant and its
record commit or roll back together. Tokens, codes and secrets appear only as SHA-256 digests and
``jti``; ID tokens by ``jti``. Failed client authentication, which anyone can cause, is counted into
summaries (``ClientAuthenticationTally``) rather than recorded once per request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from oauthlib.common import Request as OAuthlibRequest

from accounts.throttling import address_bucket
from tokens import ledger
from tokens.clientip import client_address
from tokens.models import LedgerRecord
from uaa import metrics
from uaa.oauth.grant_context import grant_context
from uaa.oauth.models import ClientAuthenticationTally


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
    assertion = grant_context(request).client_assertion
    return {"client_assertion": assertion} if assertion else {}


def token_issued(
    *, token: dict[str, Any], request: OAuthlibRequest, with_event: tuple[str, list[Any]] | None = None
) -> bool:
    """RFC 6749 §5.1: one record per token response, per grant type. ``with_event``: the statement that
    stores the token, to be one statement with its record (``ledger.append_record``); False if it stored
    nothing (and so no record either, and no count in the metrics)."""
    fields = _token_issued_fields(token=token, request=request)
    stored = ledger.append_record(**fields, with_event=with_event) is not None
    if stored:
        metrics.token_issued(grant_type=request.grant_type)
    return stored


def _token_issued_fields(*, token: dict[str, Any], request: OAuthlibRequest) -> dict[str, Any]:
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
    context = grant_context(request)
    family = context.refresh_token_family
    if family:
        detail["refresh_token_family"] = str(family)
    aud = claims.get("aud", [])
    return {
        "event": LedgerRecord.Event.TOKEN_ISSUED,
        "client_id": request.client.client_id,
        "sub": _sub(request.user),
        "grant_type": request.grant_type,
        "scope": str(token.get("scope", "")).split(),
        "aud": [aud] if isinstance(aud, str) else list(aud),
        "jti": str(claims.get("jti", "")),
        "hashes": hashes,
        "amr": list(context.amr),
        "acr": context.acr,
        "evidence": _evidence(request),
        "detail": detail,
        **_metadata(request),
    }


def authorization_granted(*, code: str, request: OAuthlibRequest) -> None:
    """RFC 6749 §4.1.2: the user's authorization (consent given, or skipped for a trusted or remembered
    client) as the code that carries it is stored."""
    granted = grant_context(request)
    context = granted.session_auth or {}
    ledger.append_record(
        event=LedgerRecord.Event.AUTHORIZATION_GRANTED,
        client_id=request.client.client_id,
        sub=_sub(request.user),
        scope=list(request.scopes or []),
        hashes={"code": ledger.sha256_hex(code)},
        amr=list(context.get("amr") or []),
        acr=context.get("acr") or "",
        detail={"consent": granted.consent, "redirect_uri": request.redirect_uri or ""},
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


# --- failed client authentication: counted summaries (docs/audit-ledger.md) --------------------------
# Open tallies per window. The cap is on addresses, never on registered clients: failures naming no
# registered client are counted per address up to SUMMARY_KEYS_PER_WINDOW addresses, then share one anonymous
# overflow tally; each registered client gets up to ADDRESSES_PER_CLIENT addresses, then an overflow tally of
# its own, so its name is always in the ledger. Total: SUMMARY_KEYS_PER_WINDOW + 1 + clients x (cap + 1).
SUMMARY_KEYS_PER_WINDOW = 1000
ADDRESSES_PER_CLIENT = 100
OVERFLOW = "*"  # the address of an overflow tally
USER_AGENT_KEPT = 128  # of the first failure's User-Agent; summaries keep none
FLUSH_BATCH = 500


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _window() -> timedelta:
    return timedelta(seconds=settings.UAA_THROTTLE_WINDOW)


def _summarise(tally: ClientAuthenticationTally, *, now: datetime) -> bool:
    """The record of what a tally counted beyond its window's first failure; False when nothing was."""
    if not tally.failures and not tally.throttled:
        return False
    detail: dict[str, Any] = {
        "summary": True,
        "failures": tally.failures,
        "throttled": tally.throttled,
        "reasons": dict(sorted(tally.reasons.items())),
        "methods": dict(sorted(tally.methods.items())),
        "from": _utc(tally.window_started_at),
        "until": _utc(tally.last_at),
    }
    if tally.ip == OVERFLOW:
        detail["overflow"] = True  # the per-window cap of addresses was reached for this client (or unknown)
    ledger.append_record(
        event=LedgerRecord.Event.CLIENT_AUTHENTICATION_FAILED,
        at=now,
        client_id=tally.client_id,
        ip="" if tally.ip == OVERFLOW else tally.ip,
        detail=detail,
    )
    return True


def _open_tally(*, client_id: str, ip: str, now: datetime) -> tuple[ClientAuthenticationTally, bool]:
    """The locked tally of (client_id, ip) for the current window, and whether it was just opened; a
    tally whose window ended is summarised and replaced first. Call inside a transaction."""
    tallies = ClientAuthenticationTally.objects.select_for_update()
    tally = tallies.filter(client_id=client_id, ip=ip).first()
    if tally is not None and now - tally.window_started_at >= _window():
        _summarise(tally, now=now)
        tally.delete()
        tally = None
    if tally is not None:
        return tally, False
    try:
        with transaction.atomic():
            return (
                ClientAuthenticationTally.objects.create(
                    client_id=client_id, ip=ip, window_started_at=now, last_at=now
                ),
                True,
            )
    except IntegrityError:  # opened concurrently by another worker
        return tallies.get(client_id=client_id, ip=ip), False


def _tally(*, client_id: str, ip: str, now: datetime) -> tuple[ClientAuthenticationTally, bool]:
    """The tally of (client_id, ip), or of (client_id, overflow) once that client (a registered one, or the
    unknown ``""``) has its cap of addresses: a registered client never shares a tally with another."""
    tallies = ClientAuthenticationTally.objects.filter(client_id=client_id)
    if not tallies.filter(ip=ip).exists():
        cap = ADDRESSES_PER_CLIENT if client_id else SUMMARY_KEYS_PER_WINDOW
        if tallies.exclude(ip=OVERFLOW).count() >= cap:
            ip = OVERFLOW
    return _open_tally(client_id=client_id, ip=ip, now=now)


def _count(mapping: dict[str, int], key: str) -> dict[str, int]:
    return {**mapping, key: mapping.get(key, 0) + 1}


def client_authentication_failed(
    *,
    client_id: str,
    method: str,
    reason: str,
    headers: Mapping[str, str] | None,
    assertion: str = "",
    now: datetime | None = None,
) -> None:
    """RFC 6749 §5.2 invalid_client, recorded without letting the caller grow the ledger per request:
    the first failure of a (client, address) window is a record at once, the rest are counted into one
    summary written when the window ends. ``client_id`` is empty unless it names a registered client."""
    now = now or timezone.now()
    meta = headers or {}
    ip = client_address(meta)
    bucket = address_bucket(ip)
    first: dict[str, Any] = {  # the window's first failure's record
        "event": LedgerRecord.Event.CLIENT_AUTHENTICATION_FAILED,
        "at": now,
        "client_id": client_id,
        "hashes": {"client_assertion": ledger.sha256_hex(assertion)} if assertion else {},
        "detail": {"method": method, "reason": reason},
        "ip": ip,
        "user_agent": meta.get("HTTP_USER_AGENT", "")[:USER_AGENT_KEPT],
    }
    if _counted_in_one_statement(client_id=client_id, ip=bucket, method=method, reason=reason, first=first):
        return
    with transaction.atomic():
        tally, opened = _tally(client_id=client_id, ip=bucket, now=now)
        if opened:
            ledger.append_record(**first)
            return
        tally.failures += 1
        tally.reasons = _count(tally.reasons, reason)
        tally.methods = _count(tally.methods, method)
        tally.last_at = max(tally.last_at, now)
        tally.save(update_fields=["failures", "reasons", "methods", "last_at"])


def _counted_in_one_statement(
    *, client_id: str, ip: str, method: str, reason: str, first: dict[str, Any]
) -> bool:
    """The failure counted into the (client_id, ip) tally of the open window, opening it if there is none
    (and the client's cap of addresses leaves room), in one upsert: the same statement, with no savepoint
    and no read first, for an unknown client_id (``""``) and a registered one, opening or counting (issue
    12: the time does not tell which). A tally it opens is the window's first failure: its record (``first``,
    ``ledger.append_record``'s fields) is appended, on PostgreSQL in the same statement.

    False, with nothing written, when the tally's window ended (it is summarised first), the cap sends
    this address to the overflow tally, or a key is not one the statement can name: the caller's locked
    path does those."""
    if not all(_plain_key(key) for key in (method, reason)):
        return False
    ops = connection.ops
    now = first["at"]
    postgresql = connection.vendor == "postgresql"
    params: dict[str, Any] = {
        "client_id": client_id,
        "ip": ip,
        "overflow": OVERFLOW,
        "cap": ADDRESSES_PER_CLIENT if client_id else SUMMARY_KEYS_PER_WINDOW,
        "now": ops.adapt_datetimefield_value(now),
        "window_from": ops.adapt_datetimefield_value(now - _window()),
        "reason": reason if postgresql else f'$."{reason}"',
        "method": method if postgresql else f'$."{method}"',
    }
    with connection.cursor() as cursor:
        if postgresql:
            record = ledger.record_row(**first)
            params.update({f"record{index}": value for index, value in enumerate(record)})
            cursor.execute(_count_into_tally_sql(with_record=True), params)
            return cursor.fetchone() is not None
        cursor.execute(_count_into_tally_sql(with_record=False), params)
        counted = cursor.fetchone()
    if counted is None:
        return False
    if counted[0]:  # opened: SQLite has no data-modifying WITH, so the record is a statement of its own
        ledger.append_record(**first)
    return True


def _plain_key(key: str) -> bool:
    """A reason or method the tally statement can name in a JSON path: printable, without quotes."""
    return key.isprintable() and not {'"', "\\"} & set(key) and len(key) <= 200


@cache
def _count_into_tally_sql(*, with_record: bool) -> str:
    quote = connection.ops.quote_name
    table = quote(ClientAuthenticationTally._meta.db_table)
    names = ("client_id", "ip", "window_started_at", "last_at", "failures", "throttled", "reasons", "methods")
    client_id, ip, started, last_at, failures, throttled, reasons, methods = (quote(name) for name in names)
    if connection.vendor == "postgresql":
        stamp, empty = "::timestamp with time zone", "'{}'::jsonb"

        def counted(column: str, key: str) -> str:
            column = f"{table}.{column}"
            return (
                f"jsonb_set({column}, ARRAY[%({key})s]::text[],"
                f" to_jsonb(COALESCE(({column} ->> %({key})s)::integer, 0) + 1))"
            )

        latest = f"GREATEST({table}.{last_at}, %(now)s{stamp})"
    else:
        stamp, empty = "", "'{}'"

        def counted(column: str, key: str) -> str:
            column = f"{table}.{column}"
            return f"json_set({column}, %({key})s, COALESCE(json_extract({column}, %({key})s), 0) + 1)"

        latest = f"MAX({table}.{last_at}, %(now)s)"
    now = f"%(now)s{stamp}"
    columns = ", ".join((client_id, ip, started, last_at, failures, throttled, reasons, methods))
    upsert = (  # our own table and columns; every value is a parameter
        f"INSERT INTO {table} ({columns})"  # noqa: S608 - our own table  # nosec B608
        f" SELECT %(client_id)s, %(ip)s, {now}, {now}, 0, 0, {empty}, {empty}"
        f" WHERE EXISTS (SELECT 1 FROM {table} WHERE {client_id} = %(client_id)s AND {ip} = %(ip)s)"
        f" OR (SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {client_id} = %(client_id)s"
        f" AND {ip} <> %(overflow)s LIMIT %(cap)s) AS held) < %(cap)s"
        f" ON CONFLICT ({client_id}, {ip}) DO UPDATE SET {failures} = {table}.{failures} + 1,"
        f" {reasons} = {counted(reasons, 'reason')}, {methods} = {counted(methods, 'method')},"
        f" {last_at} = {latest}"
        f" WHERE {table}.{started} > %(window_from)s{stamp}"
        f" RETURNING CASE WHEN {failures} = 0 THEN 1 ELSE 0 END AS opened"
    )
    if not with_record:
        return upsert
    pieces = ledger.insert_select_sql("event").split("%s")  # its five parameters, by name here
    recorded = "".join(f"{piece}%(record{index})s" for index, piece in enumerate(pieces[:-1])) + pieces[-1]
    return (
        f"WITH tally AS ({upsert}), event AS (SELECT 1 FROM tally WHERE opened = 1),"  # noqa: S608  # nosec B608
        f" recorded AS ({recorded}) SELECT opened FROM tally"
    )


def client_authentication_throttled(
    *, client_id: str, method: str, headers: Mapping[str, str] | None, now: datetime | None = None
) -> None:
    """A client authentication refused with 429 before anything was verified: counted, never a record."""
    now = now or timezone.now()
    with transaction.atomic():
        tally, _ = _tally(client_id=client_id, ip=address_bucket(client_address(headers or {})), now=now)
        tally.throttled += 1
        tally.methods = _count(tally.methods, method)
        tally.last_at = max(tally.last_at, now)
        tally.save(update_fields=["throttled", "methods", "last_at"])


def flush_client_authentication_failures(*, now: datetime, force: bool = False, max_batches: int = 20) -> int:
    """Summarise the tallies whose window has ended (every tally when ``force``); the records written.
    Run before every sealing (``tokens.ledger.before_sealing``) and whenever a window rolls."""
    written = 0
    for _ in range(max_batches):
        with transaction.atomic():
            due = ClientAuthenticationTally.objects.select_for_update(skip_locked=True).order_by("id")
            if not force:
                due = due.filter(window_started_at__lte=now - _window())
            batch = list(due[:FLUSH_BATCH])
            written += sum(_summarise(tally, now=now) for tally in batch)
            ClientAuthenticationTally.objects.filter(pk__in=[tally.pk for tally in batch]).delete()
        if len(batch) < FLUSH_BATCH:
            break
    return written


def flush_before_sealing(sender: Any, *, now: datetime, **kwargs: Any) -> None:
    """``tokens.ledger.before_sealing`` receiver: the summaries of ended windows go into this seal."""
    flush_client_authentication_failures(now=now)
