"""The audit ledger: RFC 9162-style Merkle tree of RFC 8785 canonical JSON records (docs/audit-ledger.md).

* ``append_record`` is a plain INSERT, made inside the transaction of the event it records: a grant and
  its record commit or roll back together. No lock, no ordering on the request path.
* ``seal_tree_head`` (Celery beat every few seconds, or ``manage.py audit seal``) gives unsealed records
  the next leaf indexes in id order, extends the tree from the previous head's frontier, and signs
  (size, root, timestamp) with the audit key. Sealing is serialized by a row lock on that key.
* Proofs (inclusion, consistency) and the export use the algorithms of tokens/verifier.py, the module an
  auditor runs offline.

Records never hold secrets or whole tokens: ``jti``, SHA-256 digests, identifiers and request metadata.
"""

from __future__ import annotations

import hashlib
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

from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import (
    FORMAT,
    MerkleTree,
    Report,
    b64url,
    canonical_json,
    leaf_hash,
    prune_statement_message,
    tree_head_message,
    verify_ledger,
)
from uaa.clientip import client_address

logger = logging.getLogger(__name__)

USER_AGENT_MAX = 512
SEAL_BATCH = 5000


def sha256_hex(value: str | bytes) -> str:
    """The digest a record holds in place of a token, code or assertion."""
    return hashlib.sha256(value.encode("utf-8") if isinstance(value, str) else value).hexdigest()


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
def _timestamp_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def latest_tree_head() -> TreeHead | None:
    return TreeHead.objects.select_related("audit_key").order_by("-tree_size", "-timestamp").first()


def _pruned_through() -> TreeHead | None:
    return TreeHead.objects.filter(pruned_at__isnull=False).order_by("-tree_size").first()


def _seal_batch(*, now: datetime, force: bool) -> TreeHead | None:
    from tokens.audit_keys import locked_active_audit_key, sign

    with transaction.atomic():
        key = locked_active_audit_key(now=now)  # serializes sealers; creates the first key (and its record)
        previous = latest_tree_head()
        pending = list(LedgerRecord.objects.unsealed().order_by("id").values_list("id", "body")[:SEAL_BATCH])
        if not pending and not force:
            return None
        size = previous.tree_size if previous else 0
        frontier = [bytes.fromhex(node) for node in previous.frontier] if previous else []
        leaves = [leaf_hash(body.encode("utf-8")) for _, body in pending]
        tree = MerkleTree(leaves, offset=size, frontier=frontier)
        records = [
            LedgerRecord(pk=pk, leaf_index=size + position, leaf_hash=leaves[position].hex())
            for position, (pk, _) in enumerate(pending)
        ]
        LedgerRecord.objects.bulk_update(records, ["leaf_index", "leaf_hash"], batch_size=500)
        root = tree.root()
        timestamp = max(_timestamp_ms(now), previous.timestamp if previous else 0)
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
            consistency=[node.hex() for node in tree.consistency_proof(size, tree.size)] if previous else [],
        )
    logger.info("tokens.ledger_sealed", extra={"tree_size": head.tree_size, "sealed": len(pending)})
    return head


# Sent (``now=``) as a sealing run starts, so that records other apps hold back as counted summaries
# (uaa/oauth/audit.py: failed client authentication) are appended in time to be sealed by it. A failing
# receiver is logged and does not stop the sealing.
before_sealing = Signal()


def seal_tree_head(*, now: datetime, force: bool = False, max_batches: int = 20) -> TreeHead | None:
    """Seal the unsealed records, ``SEAL_BATCH`` at a time with one signed head per batch, for at most
    ``max_batches`` batches (the next run carries on); the last new head, or ``None``.

    With nothing to seal no head is signed, unless ``force`` (a fresh timestamp on the same tree).
    """
    for receiver, error in before_sealing.send_robust(sender=LedgerRecord, now=now):
        if isinstance(error, Exception):
            name = getattr(receiver, "__name__", "")
            logger.error("tokens.before_sealing_failed", exc_info=error, extra={"receiver": name})
    head = _seal_batch(now=now, force=force)
    latest = head
    for _ in range(max_batches - 1):
        if head is None or not LedgerRecord.objects.unsealed().exists():
            break
        head = _seal_batch(now=now, force=False)
        latest = head or latest
    return latest


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
        "record": json.loads(record.body),
        "tree_head": head.as_dict(),
        "inclusion": [node.hex() for node in proof],
    }


def consistency_proof(*, first: int, second: int) -> list[str]:
    """RFC 9162 §2.1.4: the tree of size ``second`` extends the tree of size ``first``."""
    return [node.hex() for node in _tree(second).consistency_proof(first, second)]


# --- export and verification -------------------------------------------------------------------------
@dataclass(frozen=True)
class Export:
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    tree_heads: list[dict[str, Any]]
    jwks: dict[str, Any]


def _exported_records(first_index: int) -> Iterator[dict[str, Any]]:
    rows = (
        LedgerRecord.objects.in_leaf_order()
        .filter(leaf_index__gte=first_index)
        .values_list("leaf_index", "leaf_hash", "body")
        .iterator(chunk_size=2000)
    )
    for index, sealed_hash, body in rows:
        yield {"index": index, "leaf_hash": sealed_hash, "record": json.loads(body)}


def collect_export(*, now: datetime) -> Export:
    """Everything sealed, as the standalone verifier reads it (``write_export`` puts it in files)."""
    from tokens.audit_keys import audit_jwks

    pruned = _pruned_through()
    first_index = pruned.tree_size if pruned else 0
    heads = [
        head.as_dict()
        for head in TreeHead.objects.select_related("audit_key").order_by("tree_size", "timestamp")
    ]
    size = heads[-1]["tree_size"] if heads else 0
    records = [entry for entry in _exported_records(first_index) if entry["index"] < size]
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
    """The standalone verifier over the database's ledger, plus a check that the admin's columns agree.

    ``keys`` (a pinned audit JWK Set) and ``trusted_head`` (a head saved earlier) as in ``verify_export``:
    without ``keys`` the audit keys come from the database, which a database attacker can write to.
    """
    export = collect_export(now=now)
    manifest = export.manifest
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
    )
    for index, event, client_id, actor, body in LedgerRecord.objects.in_leaf_order().values_list(
        "leaf_index", "event", "client_id", "actor", "body"
    ):
        record = json.loads(body)
        if index is not None and (event, client_id, actor) != (
            record["event"],
            record.get("client_id", "")[:255],
            record.get("sub", "")[:255],
        ):
            report.bad_record(
                index, f"record {index}: the event, client_id or actor column disagrees with the record"
            )
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
