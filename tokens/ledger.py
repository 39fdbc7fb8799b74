"""The audit ledger: RFC 9162-style Merkle tree of RFC 8785 canonical JSON records (docs/audit-ledger.md).

* ``append_record`` is a plain INSERT, made inside the transaction of the event it records: a grant and
  its record commit or roll back together. No lock, no ordering on the request path.
* ``seal_tree_head`` (Celery beat every few seconds, or ``manage.py audit seal``) gives unsealed records
  the next leaf indexes in id order, extends the tree, and signs (size, root, timestamp) with the audit
  key. Sealing is serialized by a row lock on that key. It signs only what it can trust: the latest head
  must verify and not be from the future, the database's tree must extend the last head this deployment
  signed (its witness, tokens/witness.py, outside the database), from whose frontier the new tree is
  computed, and each record must be canonical (else ``SealRefused``, logged once).
* Proofs (inclusion, consistency) and the export use the algorithms of tokens/verifier.py, the module an
  auditor runs offline.

Records never hold secrets or whole tokens: ``jti``, SHA-256 digests, identifiers and request metadata.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.utils import timezone

from tokens import witness
from tokens.checksum import sha256_hex
from tokens.clientip import client_address
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import (
    CLOCK_TOLERANCE_MS,
    FORMAT,
    Frontier,
    MerkleTree,
    NotCanonical,
    Report,
    b64url,
    canonical_json,
    leaf_hash,
    load_keys,
    parse_json,
    prune_statement_message,
    time_ms,
    tree_head_message,
    verify_ledger,
    verify_tree_head,
)

logger = logging.getLogger(__name__)

USER_AGENT_MAX = 512
SEAL_BATCH = 5000


def _utc(at: datetime) -> str:
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
        "at": _utc(at),
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


def append_record(*, event: str, at: datetime | None = None, **fields: Any) -> LedgerRecord:
    """Append one record: a single INSERT in the caller's transaction (``build_record`` names the fields).

    One plain indexed INSERT, written without the ORM: it runs for every token issued, and the ORM's
    query compilation would cost more than the INSERT itself (bench/token_endpoint.py).
    """
    at = at or timezone.now()
    record = build_record(event=event, at=at, **fields)
    row = LedgerRecord(
        event=record["event"],
        at=at,
        client_id=record.get("client_id", "")[:255],
        actor=record.get("sub", "")[:255],
        body=canonical_json(record).decode("utf-8"),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _insert_sql(),
            [
                row.event,
                connection.ops.adapt_datetimefield_value(at),
                row.client_id,
                row.actor,
                row.body,
            ],
        )
        row.pk = cursor.fetchone()[0]
    row._state.adding = False
    row._state.db = connection.alias
    return row


@cache
def _insert_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in ("event", "at", "client_id", "actor", "body", "leaf_hash"))
    return (
        f"INSERT INTO {quote(LedgerRecord._meta.db_table)} ({columns})"  # noqa: S608 - our own table
        f" VALUES (%s, %s, %s, %s, %s, '') RETURNING {quote('id')}"
    )


# --- sealing ---------------------------------------------------------------------------------------
# The sealer holds the audit key, so whatever it signs verifies. A database writer (who lacks UAA_KEK) must
# therefore not be able to choose what it signs: it extends only a head it verified, whose tree extends the
# last head this deployment signed as recorded outside the database (tokens/witness.py), and it seals only
# records in the ledger's canonical form (docs/audit-ledger.md, "What the sealer checks").
def _timestamp_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def latest_tree_head() -> TreeHead | None:
    return TreeHead.objects.select_related("audit_key").order_by("-tree_size", "-timestamp").first()


def _pruned_through() -> TreeHead | None:
    return TreeHead.objects.filter(pruned_at__isnull=False).order_by("-tree_size").first()


class SealRefused(Exception):
    """The sealer will not sign: the latest head, the witness or an unsealed record cannot be trusted.

    ``event`` is the error-level log event, ``fields`` its data (sizes, ids: never a record's content)."""

    def __init__(self, message: str, *, event: str, **fields: object) -> None:
        super().__init__(message)
        self.event = event
        self.fields = fields


_last_refusal: list[str] = []  # the refusal this process logged last: each is logged once, not every beat


def _log_refusal(refusal: SealRefused) -> None:
    if _last_refusal == [str(refusal)]:
        return
    _last_refusal[:] = [str(refusal)]
    logger.error(refusal.event, extra={**refusal.fields, "problem": str(refusal)})


@dataclass(frozen=True)
class _Base:
    """What the next head extends: the tree of ``size`` leaves whose frontier the sealer trusts."""

    size: int
    frontier: list[bytes]
    timestamp: int  # the latest time already signed: the next head is not older
    started: bool = False  # no witness yet: this tree was taken from the database on its signature


def _frontier_of(head: TreeHead) -> list[bytes] | None:
    """The head's stored frontier if it folds to its signed root (no signature covers the column)."""
    try:
        frontier = Frontier(head.tree_size, [bytes.fromhex(node) for node in head.frontier])
    except (TypeError, ValueError):
        return None
    return frontier.hashes if frontier.root().hex() == head.root_hash else None


def _trusted_base(*, now: datetime) -> _Base:
    """The tree the next head extends, or ``SealRefused``.

    The latest head in the database must carry a valid signature by a proven audit key and not be dated
    in the future. With a witness of size m, the database's tree must extend the witness's: its leaves
    ``[m, n)`` (normally none) appended to the witness's frontier give the latest head's root. The new head
    is then computed from that frontier, never from the database's own, so history below m cannot be
    injected. Without a witness (the first seal of this deployment, or a sealer that never had the file),
    the latest head is accepted on its signature, and the log says so.
    """
    from tokens.audit_keys import audit_jwks

    path = witness.witness_path()
    latest = latest_tree_head()
    limit = _timestamp_ms(now) + CLOCK_TOLERANCE_MS
    if latest is not None:
        problem = verify_tree_head(
            latest.as_dict(),
            issuer=settings.UAA_ISSUER,
            keys=load_keys(audit_jwks()),
            name="the latest tree head in the database",
        )
        if problem:
            raise SealRefused(
                f"{problem}; the sealer extends only heads it can verify: remove the row, or restore the"
                " table from a backup",
                event="tokens.ledger_head_untrusted",
                tree_size=latest.tree_size,
            )
        if latest.timestamp > limit:
            raise SealRefused(
                f"the latest tree head (size {latest.tree_size}) is dated {latest.timestamp} ms, in the"
                f" future of this sealer's clock ({_timestamp_ms(now)} ms): later heads would inherit it",
                event="tokens.ledger_head_untrusted",
                tree_size=latest.tree_size,
            )
    try:
        known = witness.load()
    except witness.WitnessUnreadable as exc:
        raise SealRefused(
            f"the sealer's witness {path} is unusable: {exc}; sealing stops until it is restored",
            event="tokens.ledger_witness_unreadable",
            witness=str(path),
        ) from exc
    if known is None:
        if latest is None:
            return _Base(size=0, frontier=[], timestamp=0, started=True)
        frontier = _frontier_of(latest)
        if frontier is None:
            raise SealRefused(
                f"the stored frontier of the tree head of size {latest.tree_size} does not fold to its signed"
                " root: the row was altered",
                event="tokens.ledger_head_untrusted",
                tree_size=latest.tree_size,
            )
        return _Base(size=latest.tree_size, frontier=frontier, timestamp=latest.timestamp, started=True)

    size = latest.tree_size if latest else 0
    signed = known["tree_size"]

    def mismatch(why: str) -> SealRefused:
        return SealRefused(
            f"the database's ledger does not extend the last tree head this sealer signed (size {signed},"
            f" root {known['root_hash'][:16]}…, in its witness {path}): {why}. Nothing is sealed until an"
            ' operator has looked (docs/audit-ledger.md, "When sealing stops")',
            event="tokens.ledger_witness_mismatch",
            witness_size=signed,
            database_size=size,
        )

    if known["timestamp"] > limit:
        raise SealRefused(
            f"the sealer's witness (size {signed}) is dated {known['timestamp']} ms, in the future of this"
            f" sealer's clock ({_timestamp_ms(now)} ms)",
            event="tokens.ledger_head_untrusted",
            tree_size=signed,
        )
    if latest is None or size < signed:
        raise mismatch(
            f"its latest signed tree head has size {size}: tree heads and records were removed, or the"
            " database was restored from an older backup"
        )
    tree = Frontier(signed, [bytes.fromhex(node) for node in known["frontier"]])
    rows = (
        LedgerRecord.objects.filter(leaf_index__gte=signed, leaf_index__lt=size)
        .order_by("leaf_index")
        .values_list("leaf_index", "body")
        .iterator(chunk_size=SEAL_BATCH)
    )
    for index, body in rows:
        if index != tree.size:
            raise mismatch(f"record {tree.size} is missing")
        tree.append(leaf_hash(body.encode("utf-8")))
    if tree.size != size:
        raise mismatch(f"records [{tree.size}, {size}) are missing")
    if tree.root().hex() != latest.root_hash:
        raise mismatch(
            f"its records [{signed}, {size}) do not extend that tree to the root of its head of size {size}"
            if size > signed
            else f"its tree head of size {size} has another root: the history was rewritten"
        )
    return _Base(size=size, frontier=tree.hashes, timestamp=max(latest.timestamp, known["timestamp"]))


def _unwritable(exc: OSError) -> SealRefused:
    path = witness.witness_path()
    return SealRefused(
        f"the sealer's witness {path} cannot be written ({exc.strerror}): without it the sealer cannot tell"
        " a history the database rewrote from its own, so it does not seal",
        event="tokens.ledger_witness_unwritable",
        witness=str(path),
    )


def _start_witness(base: _Base) -> None:
    """No witness yet: make sure one can be written before signing anything, and say what it starts from."""
    path = witness.witness_path()
    try:
        witness.check_writable()
    except OSError as exc:
        raise _unwritable(exc) from exc
    logger.warning(
        "tokens.ledger_witness_started",
        extra={"tree_size": base.size, "witness": str(path)},
    )


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
    if now is not None and at > _timestamp_ms(now) + CLOCK_TOLERANCE_MS:
        return "is dated in the future: no head signed now could cover it"
    if (event, client_id, actor) != (
        record["event"],
        str(record.get("client_id", ""))[:255],
        str(record.get("sub", ""))[:255],
    ):
        return "has an event, client_id or actor column that disagrees with its content"
    return None


def _invalid(pk: int, problem: str) -> SealRefused:
    return SealRefused(
        f"unsealed record id {pk} {problem}: it was not written by UAA, and sealing stops at it until it is"
        ' removed (docs/audit-ledger.md, "When sealing stops")',
        event="tokens.ledger_record_invalid",
        record_id=pk,
    )


def _seal_batch(*, now: datetime, force: bool) -> TreeHead | None:
    from tokens.audit_keys import locked_active_audit_key, sign

    refusal: SealRefused | None = None
    with transaction.atomic(durable=True):  # committed on exit, before the witness records the head
        key = locked_active_audit_key(now=now)  # serializes sealers; creates the first key (and its record)
        base = _trusted_base(now=now)
        if base.started:
            _start_witness(base)
        pending = []
        for pk, event, client_id, actor, body in (
            LedgerRecord.objects.unsealed()
            .order_by("id")
            .values_list("id", "event", "client_id", "actor", "body")[:SEAL_BATCH]
        ):
            problem = record_problem(body=body, event=event, client_id=client_id, actor=actor, now=now)
            if problem:
                refusal = _invalid(pk, problem)
                break
            pending.append((pk, body))
        if not pending and (refusal is not None or not force):
            if refusal is not None:
                raise refusal
            return None
        leaves = [leaf_hash(body.encode("utf-8")) for _, body in pending]
        tree = MerkleTree(leaves, offset=base.size, frontier=base.frontier)
        with connection.cursor() as cursor:  # one plain statement per row: bulk_update's CASE is slower
            cursor.executemany(
                _seal_sql(),
                [
                    (base.size + position, leaves[position].hex(), pk)
                    for position, (pk, _) in enumerate(pending)
                ],
            )
            if cursor.rowcount != len(pending):  # a record was deleted under the sealer: sign nothing
                raise SealRefused(
                    f"{len(pending) - cursor.rowcount} of the records being sealed were deleted meanwhile",
                    event="tokens.ledger_record_invalid",
                    record_id=None,
                )
        root = tree.root()
        # Never older than what was signed before; a forced seal of the same tree gets a later time, so no
        # two heads are the same statement.
        timestamp = max(_timestamp_ms(now), base.timestamp + (1 if tree.size == base.size else 0))
        message = tree_head_message(
            issuer=settings.UAA_ISSUER, tree_size=tree.size, root_hash=root, timestamp=timestamp, kid=key.kid
        )
        head = TreeHead.objects.create(
            tree_size=tree.size,
            root_hash=root.hex(),
            timestamp=timestamp,
            audit_key=key,
            signature=b64url(sign(key, message)),
            frontier=[node.hex() for node in tree.frontier()],
            consistency=[node.hex() for node in tree.consistency_proof(base.size, tree.size)],
        )
    try:
        witness.advance(head.as_dict(), frontier=list(head.frontier))
    except OSError as exc:  # the head is committed; the witness lags until it can be written
        raise _unwritable(exc) from exc
    _last_refusal.clear()
    logger.info(
        "tokens.ledger_sealed",
        extra={"tree_size": head.tree_size, "sealed": len(pending), "root_hash": head.root_hash[:16]},
    )
    if refusal is not None:
        raise refusal
    return head


@cache
def _seal_sql() -> str:
    quote = connection.ops.quote_name
    return (
        f"UPDATE {quote(LedgerRecord._meta.db_table)} SET {quote('leaf_index')} = %s,"  # noqa: S608 - our table
        f" {quote('leaf_hash')} = %s WHERE {quote('id')} = %s AND {quote('leaf_index')} IS NULL"
    )


# Sent (``now=``) as a sealing run starts, so that records other apps hold back as counted summaries
# (uaa/oauth/audit.py: failed client authentication) are appended in time to be sealed by it. A failing
# receiver is logged and does not stop the sealing.
before_sealing = Signal()


def seal_tree_head(*, now: datetime, force: bool = False, max_batches: int = 20) -> TreeHead | None:
    """Seal the unsealed records, ``SEAL_BATCH`` at a time with one signed head per batch, for at most
    ``max_batches`` batches (the next run carries on); the last new head, or ``None``.

    With nothing to seal no head is signed, unless ``force`` (a fresh timestamp on the same tree).
    ``SealRefused`` (logged once at error level) if the latest head, the witness or an unsealed record
    cannot be trusted; records before a bad one are sealed first. Must not run inside a transaction: the
    witness records a head only once it is committed.
    """
    for receiver, error in before_sealing.send_robust(sender=LedgerRecord, now=now):
        if isinstance(error, Exception):
            name = getattr(receiver, "__name__", "")
            logger.error("tokens.before_sealing_failed", exc_info=error, extra={"receiver": name})
    try:
        head = _seal_batch(now=now, force=force)
        latest = head
        for _ in range(max_batches - 1):
            if head is None or not LedgerRecord.objects.unsealed().exists():
                break
            head = _seal_batch(now=now, force=False)
            latest = head or latest
    except SealRefused as refusal:
        _log_refusal(refusal)
        raise
    return latest


def sealing_problem(*, now: datetime) -> str | None:
    """Why the next seal would be refused, or ``None``: the same checks, read-only (the admin's page)."""
    try:
        _trusted_base(now=now)
    except SealRefused as refusal:
        return str(refusal)
    for pk, event, client_id, actor, body in (
        LedgerRecord.objects.unsealed()
        .order_by("id")
        .values_list("id", "event", "client_id", "actor", "body")[:SEAL_BATCH]
    ):
        problem = record_problem(body=body, event=event, client_id=client_id, actor=actor, now=now)
        if problem:
            return str(_invalid(pk, problem))
    return None


def published_tree_head() -> dict[str, Any] | None:
    """The latest signed tree head with ``issuer``, as ``/.well-known/audit-head.json`` and ``audit head``
    give it, or ``None`` before the first seal; ``SealRefused`` if its signature does not verify."""
    from tokens.audit_keys import audit_jwks

    head = latest_tree_head()
    if head is None:
        return None
    problem = verify_tree_head(head.as_dict(), issuer=settings.UAA_ISSUER, keys=load_keys(audit_jwks()))
    if problem:
        raise SealRefused(problem, event="tokens.ledger_head_untrusted", tree_size=head.tree_size)
    return {**head.as_dict(), "issuer": settings.UAA_ISSUER}


# --- proofs ----------------------------------------------------------------------------------------
def _tree(size: int) -> MerkleTree:
    """The first ``size`` leaves: stored leaf hashes plus the frontier at the pruning point."""
    pruned = _pruned_through()
    offset = pruned.tree_size if pruned else 0
    frontier = [bytes.fromhex(node) for node in pruned.frontier] if pruned else []
    leaves = [
        bytes.fromhex(value)
        for value in LedgerRecord.objects.filter(leaf_index__gte=offset, leaf_index__lt=size)
        .order_by("leaf_index")
        .values_list("leaf_hash", flat=True)
        .iterator(chunk_size=5000)
    ]
    return MerkleTree(leaves, offset=offset, frontier=frontier)


def tree_head_at(tree_size: int | None = None) -> TreeHead:
    """The latest head, or the latest head of exactly ``tree_size``; ``TreeHead.DoesNotExist`` if none."""
    heads = TreeHead.objects.select_related("audit_key").order_by("-timestamp")
    if tree_size is not None:
        heads = heads.filter(tree_size=tree_size)
    head = heads.order_by("-tree_size", "-timestamp").first()
    if head is None:
        raise TreeHead.DoesNotExist("no signed tree head yet: run `manage.py audit seal`")
    return head


def inclusion_proof(*, index: int, tree_size: int | None = None) -> dict[str, Any]:
    """RFC 9162 §2.1.3: record ``index`` is in the signed tree (a document tokens/verifier.py checks)."""
    head = tree_head_at(tree_size)
    pruned = _pruned_through()
    if pruned is not None and index < pruned.tree_size:
        raise LedgerRecord.DoesNotExist(f"record {index} was pruned: prove it from the export that holds it")
    record = LedgerRecord.objects.get(leaf_index=index)
    if index >= head.tree_size:
        raise LedgerRecord.DoesNotExist(
            f"record {index} is not sealed in the tree head of size {head.tree_size}"
        )
    proof = _tree(head.tree_size).inclusion_proof(index, head.tree_size)
    return {
        "issuer": settings.UAA_ISSUER,
        "index": index,
        "leaf_hash": record.leaf_hash,
        "record": _stored_record(index, record.pk, record.body),
        "tree_head": head.as_dict(),
        "inclusion": [node.hex() for node in proof],
    }


def consistency_proof(*, first: int, second: int) -> list[str]:
    """RFC 9162 §2.1.4: the tree of size ``second`` extends the tree of size ``first``."""
    return [node.hex() for node in _tree(second).consistency_proof(first, second)]


# --- export and verification -------------------------------------------------------------------------
class LedgerCorrupt(ValueError):
    """A sealed record's body is not JSON: it was written into the database outside UAA."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


def _stored_record(index: int, pk: int, body: str) -> Any:
    try:
        return parse_json(body)
    except ValueError as exc:
        raise LedgerCorrupt(
            f"record {index} (id {pk}) is not JSON of the ledger's types: it was written into the database"
            " outside UAA",
            index=index,
        ) from exc


@dataclass(frozen=True)
class Export:
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    tree_heads: list[dict[str, Any]]
    jwks: dict[str, Any]


def _exported_records(
    first_index: int, problems: list[LedgerCorrupt] | None = None
) -> Iterator[dict[str, Any]]:
    """The sealed records from ``first_index`` in leaf order; a body that is not JSON raises
    ``LedgerCorrupt``, or, given ``problems``, is collected there and handed on as its text."""
    rows = (
        LedgerRecord.objects.in_leaf_order()
        .filter(leaf_index__gte=first_index)
        .values_list("leaf_index", "id", "leaf_hash", "body")
        .iterator(chunk_size=2000)
    )
    for index, pk, sealed_hash, body in rows:
        assert index is not None  # in_leaf_order: sealed rows only
        try:
            record = _stored_record(index, pk, body)
        except LedgerCorrupt as exc:
            if problems is None:
                raise
            problems.append(exc)
            record = body
        yield {"index": index, "leaf_hash": sealed_hash, "record": record}


def collect_export(*, now: datetime, problems: list[LedgerCorrupt] | None = None) -> Export:
    """Everything sealed, as the standalone verifier reads it (``write_export`` puts it in files).
    ``LedgerCorrupt`` if a sealed record is not JSON (unless ``problems`` collects them)."""
    from tokens.audit_keys import audit_jwks

    pruned = _pruned_through()
    first_index = pruned.tree_size if pruned else 0
    heads = [
        head.as_dict()
        for head in TreeHead.objects.select_related("audit_key").order_by("tree_size", "timestamp")
    ]
    size = heads[-1]["tree_size"] if heads else 0
    records = [entry for entry in _exported_records(first_index, problems) if entry["index"] < size]
    manifest = {
        "format": FORMAT,
        "issuer": settings.UAA_ISSUER,
        "first_index": first_index,
        "frontier": list(pruned.frontier) if pruned else [],
        "tree_size": size,
        "exported_at": _utc(now),
    }
    return Export(manifest=manifest, records=records, tree_heads=heads, jwks=audit_jwks())


def write_export(export: Export, directory: Path) -> None:
    """manifest.json, records.jsonl, tree-heads.jsonl and audit-keys.json (tokens/verifier.py reads them)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_bytes(canonical_json(export.manifest) + b"\n")
    with (directory / "records.jsonl").open("wb") as handle:
        for entry in export.records:
            handle.write(canonical_json(entry) + b"\n")
    with (directory / "tree-heads.jsonl").open("wb") as handle:
        for head in export.tree_heads:
            handle.write(canonical_json(head) + b"\n")
    (directory / "audit-keys.json").write_bytes(canonical_json(export.jwks) + b"\n")


def verify_stored_ledger(
    *, now: datetime, keys: dict[str, Any] | None = None, trusted_head: dict[str, Any] | None = None
) -> Report:
    """The standalone verifier over the database's ledger, plus what only the server can check: that the
    ledger extends the sealer's witness, that stored bodies are canonical and the admin's columns agree,
    and that no unsealed record would stop the sealer. Never raises on a corrupt record: it is reported.

    ``keys`` (a pinned audit JWK Set) and ``trusted_head`` (a head saved earlier) as in ``verify_export``:
    without ``keys`` the audit keys come from the database, which a database attacker can write to.
    """
    corrupt: list[LedgerCorrupt] = []
    export = collect_export(now=now, problems=corrupt)
    manifest = export.manifest
    witnesses: list[tuple[str, dict[str, Any]]] = []
    witness_problem = witness_warning = None
    try:
        known = witness.load()
    except witness.WitnessUnreadable as exc:
        known, witness_problem = None, f"the sealer's witness {witness.witness_path()} is unusable: {exc}"
    if known is not None:
        witnesses.append(("the sealer's witness", known))
    elif witness_problem is None:
        witness_warning = (
            f"no sealer's witness at {witness.witness_path()}: nothing outside the database records the last"
            " head this server signed (a first run, or UAA_AUDIT_WITNESS points elsewhere than the sealers')"
        )
    report = verify_ledger(
        records=export.records,
        tree_heads=export.tree_heads,
        jwks=export.jwks,
        issuer=manifest["issuer"],
        first_index=manifest["first_index"],
        frontier=manifest["frontier"],
        tree_size=manifest["tree_size"],
        pinned_keys=keys,
        trusted_head=trusted_head,
        exported_at=manifest["exported_at"],
        witnesses=witnesses,
    )
    for failure in corrupt:
        report.bad_record(failure.index, str(failure))
    if witness_problem:
        report.errors.append(witness_problem)
    if witness_warning:
        report.warnings.append(witness_warning)
    for index, pk, event, client_id, actor, body in (
        LedgerRecord.objects.in_leaf_order()
        .values_list("leaf_index", "id", "event", "client_id", "actor", "body")
        .iterator(chunk_size=2000)
    ):
        problem = record_problem(body=body, event=event, client_id=client_id, actor=actor, now=None)
        if problem and index is not None and "is not JSON" not in problem:  # those are reported above
            report.bad_record(index, f"record {index} (id {pk}) {problem}: it was written outside UAA")
            break
    for pk, event, client_id, actor, body in (
        LedgerRecord.objects.unsealed()
        .order_by("id")
        .values_list("id", "event", "client_id", "actor", "body")[:SEAL_BATCH]
    ):
        problem = record_problem(body=body, event=event, client_id=client_id, actor=actor, now=now)
        if problem:
            report.errors.append(str(_invalid(pk, problem)))
            break
    return report


# --- retention ---------------------------------------------------------------------------------------
class PruneRefused(Exception):
    """Pruning would lose what no verified export holds, or the size is not a sealed tree head."""


def prune_ledger(*, tree_size: int, export: Path, now: datetime) -> TreeHead:
    """Delete the records below ``tree_size`` once ``export`` (a directory written by ``write_export``)
    is verified to hold them; the tree heads stay, and the head at ``tree_size`` keeps the frontier
    that later roots, proofs and exports are computed from (docs/audit-ledger.md, "Retention").

    The ``ledger.pruned`` record carries a prune statement (tree size, root of the head at that size,
    time, the export's manifest digest) signed by the active audit key: later exports start at
    ``tree_size``, and the verifier accepts that only with this statement. A database attacker can
    append a ``ledger.pruned`` record, but cannot sign one.
    """
    from tokens.audit_keys import audit_jwks, locked_active_audit_key, sign
    from tokens.verifier import verify_export

    head = TreeHead.objects.filter(tree_size=tree_size).order_by("timestamp").first()
    if head is None:
        raise PruneRefused(f"no signed tree head has size {tree_size}: prune at a sealed size")
    pruned = _pruned_through()
    if pruned is not None and pruned.tree_size >= tree_size:
        raise PruneRefused(f"records below {pruned.tree_size} are already pruned")
    report = verify_export(export, keys=audit_jwks(), trusted_head=head.as_dict())
    if not report.ok:
        raise PruneRefused(f"the export does not verify: {report.summary()}")
    manifest = json.loads((export / "manifest.json").read_text())
    if report.tree_size < tree_size or manifest["first_index"] > (pruned.tree_size if pruned else 0):
        raise PruneRefused(f"the export does not hold every record below {tree_size}")
    if manifest["issuer"] != settings.UAA_ISSUER:
        raise PruneRefused("the export is of another issuer's ledger")
    manifest_sha256 = sha256_hex((export / "manifest.json").read_bytes())
    with transaction.atomic():
        key = locked_active_audit_key(now=now)  # no seal runs meanwhile
        deleted, _ = LedgerRecord.objects.filter(leaf_index__lt=tree_size).delete()
        TreeHead.objects.filter(pk=head.pk).update(pruned_at=now)
        timestamp = _timestamp_ms(now)
        statement = prune_statement_message(
            issuer=settings.UAA_ISSUER,
            tree_size=tree_size,
            root_hash=bytes.fromhex(head.root_hash),
            timestamp=timestamp,
            kid=key.kid,
            export_manifest_sha256=manifest_sha256,
        )
        append_record(
            event=LedgerRecord.Event.LEDGER_PRUNED,
            at=now,
            detail={
                "tree_size": tree_size,
                "root_hash": head.root_hash,
                "records_deleted": deleted,
                "export_manifest_sha256": manifest_sha256,
                "timestamp": timestamp,
                "kid": key.kid,
                "signature": b64url(sign(key, statement)),
            },
        )
    logger.info("tokens.ledger_pruned", extra={"tree_size": tree_size, "deleted": deleted})
    seal_tree_head(now=now)  # the ledger verifies from the pruning point at once, not at the next beat
    head.refresh_from_db()
    return head
