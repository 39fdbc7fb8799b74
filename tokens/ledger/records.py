"""Appending records: the record's JSON, its one-INSERT append, and the canonical form the sealer demands.

The lowest part of the ledger, and the only one the request path calls: it imports the models, the
client-address helper and the canonical JSON of tokens/verifier.py, nothing that signs or seals, so any
module (audit keys included) may record an event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypedDict, overload

from django.db import connection
from django.http import HttpRequest
from django.utils import timezone

from tokens.clientip import client_address
from tokens.models import LedgerRecord
from tokens.verifier import CLOCK_TOLERANCE_MS, NotCanonical, canonical_json, parse_json, time_ms

USER_AGENT_MAX = 512


def rfc3339_utc(at: datetime) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2030-01-01T00:00:00.000000Z``."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class RequestMetadata(TypedDict, total=False):
    ip: str
    user_agent: str
    request_id: str


def request_metadata(request: HttpRequest | None) -> RequestMetadata:
    """``ip``, ``user_agent`` and ``request_id`` of a Django request, for ``append_record(**...)``."""
    if request is None:
        return {}
    return {
        "ip": client_address(request.META),
        "user_agent": request.META.get("HTTP_USER_AGENT", ""),
        "request_id": getattr(request, "request_id", ""),
    }


def build_record(
    *,
    event: str,
    at: datetime,
    client_id: str = "",
    sub: str = "",
    subject: str = "",
    grant_type: str = "",
    scope: Sequence[str] = (),
    aud: Sequence[str] = (),
    jti: str = "",
    hashes: Mapping[str, str] | None = None,
    amr: Sequence[str] = (),
    acr: str = "",
    ip: str = "",
    user_agent: str = "",
    request_id: str = "",
    evidence: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record as a JSON object; empty members are left out (docs/audit-ledger.md lists them)."""
    record: dict[str, Any] = {
        "v": 1,
        "event": str(event),
        "at": rfc3339_utc(at),
        "client_id": client_id,
        "sub": sub,
        "subject": subject,
        "grant_type": grant_type,
        "scope": list(scope),
        "aud": list(aud),
        "jti": jti,
        "hashes": dict(hashes or {}),
        "amr": list(amr),
        "acr": acr,
        "ip": ip,
        "user_agent": user_agent[:USER_AGENT_MAX],
        "request_id": request_id,
        "evidence": dict(evidence or {}),
        "detail": dict(detail or {}),
    }
    return {name: value for name, value in record.items() if value not in ("", [], {}, None)}


@overload
def append_record(
    *, event: str, at: datetime | None = None, with_event: None = None, **fields: Any
) -> LedgerRecord: ...


@overload
def append_record(
    *, event: str, at: datetime | None = None, with_event: tuple[str, list[Any]], **fields: Any
) -> LedgerRecord | None: ...


def append_record(
    *,
    event: str,
    at: datetime | None = None,
    with_event: tuple[str, list[Any]] | None = None,
    **fields: Any,
) -> LedgerRecord | None:
    """Append one record: a single INSERT in the caller's transaction (``build_record`` names the fields).

    One plain indexed INSERT, written without the ORM: it runs for every token issued, and the ORM's
    query compilation would cost more than the INSERT itself (bench/token_endpoint.py).

    ``with_event`` (PostgreSQL): the write of the event itself, as ``(sql, params)`` of data-modifying
    WITH queries the last of which is named ``event`` and RETURNs a row if the event was written; the
    event and its record are then one statement, and the record is written only with the event (None is
    returned when it was not). uaa/oauth/access_tokens.py stores a client-credentials token so.
    """
    at = at or timezone.now()
    params = record_row(event=event, at=at, **fields)
    row = LedgerRecord(event=params[0], at=at, client_id=params[2], actor=params[3], body=params[4])
    with connection.cursor() as cursor:
        if with_event is None:
            cursor.execute(_insert_sql(), params)
        else:
            sql, event_params = with_event
            cursor.execute(
                f"WITH {sql}, recorded AS ({insert_select_sql('event')}) SELECT id FROM recorded",  # noqa: S608 - our own tables  # nosec B608
                [*event_params, *params],
            )
        found = cursor.fetchone()
        if found is None:
            return None  # the event was not written: neither is its record
        row.pk = found[0]
    row._state.adding = False
    row._state.db = connection.alias
    return row


def record_row(*, event: str, at: datetime | None = None, **fields: Any) -> list[Any]:
    """The INSERT parameters of one record (event, at, client_id, actor, body), ``build_record``'s fields:
    what ``append_record`` writes, and what :func:`insert_select_sql` takes."""
    at = at or timezone.now()
    record = build_record(event=event, at=at, **fields)
    return [
        record["event"],
        connection.ops.adapt_datetimefield_value(at),
        record.get("client_id", "")[:255],
        record.get("sub", "")[:255],
        canonical_json(record).decode("utf-8"),
    ]


@cache
def insert_select_sql(source: str) -> str:
    """PostgreSQL: an INSERT of one record (:func:`record_row`'s parameters) for each row of ``source`` (a
    CTE of the caller's statement), ``RETURNING id``: the record written in the same statement as the event
    it records, and only if that was (uaa/oauth/access_tokens.py). Still one plain INSERT of the record."""
    quote = connection.ops.quote_name
    names = ("event", "at", "client_id", "actor", "body")
    fields = [LedgerRecord._meta.get_field(name) for name in names]
    values = ", ".join(f"%s::{field.db_type(connection)}" for field in fields)
    columns = ", ".join(quote(name) for name in (*names, "leaf_hash"))
    return (
        f"INSERT INTO {quote(LedgerRecord._meta.db_table)} ({columns})"  # noqa: S608 - our own table  # nosec B608
        f" SELECT {values}, '' FROM {source} RETURNING {quote('id')}"
    )


@cache
def _insert_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in ("event", "at", "client_id", "actor", "body", "leaf_hash"))
    return (
        f"INSERT INTO {quote(LedgerRecord._meta.db_table)} ({columns})"  # noqa: S608 - our own table  # nosec B608
        f" VALUES (%s, %s, %s, %s, %s, '') RETURNING {quote('id')}"
    )


def timestamp_ms(at: datetime) -> int:
    """Milliseconds since the epoch: the time of tree heads and prune statements, as the verifier reads it."""
    return int(at.timestamp() * 1000)


def record_problem(*, body: str, event: str, client_id: str, actor: str, now: datetime | None) -> str | None:
    """Why a stored record may not be sealed, or ``None``: it must be what ``append_record`` writes, the
    RFC 8785 canonical JSON of an object of the ledger's types, with ``v``, ``event`` and a UTC ``at`` (not
    in the future of ``now``, if given), and its admin columns must agree with it. The reason never quotes
    the content."""
    try:
        record = parse_json(body)
    except (NotCanonical, ValueError):
        return "is not JSON of the ledger's types (no floats, no duplicate member names)"
    try:
        canonical = canonical_json(record)
    except NotCanonical:
        return "is not JSON of the ledger's types (strings, integers, booleans, null, arrays, objects)"
    if not isinstance(record, dict):
        return "is not a JSON object"
    if canonical != body.encode("utf-8"):
        return "is not in RFC 8785 canonical form, so it would not hash to its own leaf"
    at = time_ms(record.get("at"))
    if record.get("v") != 1 or not isinstance(record.get("event"), str) or at is None:
        return "lacks the members every record has (v = 1, event, an RFC 3339 UTC at)"
    if now is not None and at > timestamp_ms(now) + CLOCK_TOLERANCE_MS:
        return "is dated in the future: no head signed now could cover it"
    if (event, client_id, actor) != (
        record["event"],
        str(record.get("client_id", ""))[:255],
        str(record.get("sub", ""))[:255],
    ):
        return "has an event, client_id or actor column that disagrees with its content"
    return None


class LedgerCorrupt(ValueError):
    """A sealed record's body is not JSON: it was written into the database outside UAA."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


def stored_record(index: int, pk: int, body: str) -> Any:
    try:
        return parse_json(body)
    except ValueError as exc:
        raise LedgerCorrupt(
            f"record {index} (id {pk}) is not JSON of the ledger's types: it was written into the database"
            " outside UAA",
            index=index,
        ) from exc
