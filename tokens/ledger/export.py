"""The export an auditor verifies offline (manifest, records, tree heads, audit keys), and the same
verification run over the database's ledger with what only the server can check besides.

``write_export`` writes it as a directory (``manage.py audit export``); ``stream_export`` yields the same
four files as one ZIP archive, batch by batch (``GET /api/v1/audit/export``): constant memory, and no
transaction or lock held between batches, so a slow download never holds up sealing.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q

from tokens import witness
from tokens.ledger.audit_keys import audit_jwks
from tokens.ledger.records import LedgerCorrupt, record_problem, rfc3339_utc, stored_record
from tokens.ledger.sealing import head_problem, next_batch
from tokens.ledger.tree import pruned_through
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import FORMAT, Report, canonical_json, verify_ledger

logger = logging.getLogger(__name__)

EXPORT_FILES = ("manifest.json", "records.jsonl", "tree-heads.jsonl", "audit-keys.json")
STREAM_BATCH = 1000  # rows per query of ``stream_export``: what it holds in memory at most


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
            record = stored_record(index, pk, body)
        except LedgerCorrupt as exc:
            if problems is None:
                raise
            problems.append(exc)
            record = body
        yield {"index": index, "leaf_hash": sealed_hash, "record": record}


def collect_export(*, now: datetime, problems: list[LedgerCorrupt] | None = None) -> Export:
    """Everything sealed, as the standalone verifier reads it (``write_export`` puts it in files).
    ``LedgerCorrupt`` if a sealed record is not JSON (unless ``problems`` collects them)."""
    pruned = pruned_through()
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
        "exported_at": rfc3339_utc(now),
    }
    return Export(manifest=manifest, records=records, tree_heads=heads, jwks=audit_jwks())


class ExportRefused(Exception):
    """The database's ledger does not extend what the sealer signed (its witness): no export is written."""


def export_ledger(*, directory: Path, now: datetime) -> Export:
    """``collect_export`` written to ``directory`` by ``write_export`` (``manage.py audit export``), unless
    the database's latest head is one the sealer would not extend (``head_problem``: cut back behind its
    witness, another root at the witness's size, a head that does not verify): then ``ExportRefused`` and
    nothing is written. An export cut together with its last heads verifies on its own (only a trusted
    head shows the cut), so the one place that can tell, the server holding the witness, refuses to make
    it. Checked before and after collecting, so a cut made meanwhile is refused too."""
    _check_extends_witness()
    export = collect_export(now=now)
    _check_extends_witness()
    write_export(export, directory)
    return export


def _check_extends_witness() -> None:
    refusal = head_problem()
    if refusal is not None:
        raise ExportRefused(str(refusal))


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
    _, refusal = next_batch(now=now)
    if refusal is not None:
        report.errors.append(str(refusal))
    return report


@dataclass(frozen=True)
class StreamedExport:
    """What ``stream_export`` will send, fixed before its first byte: the manifest (up to the latest head,
    ``tree_size``) and that head's place in the heads' order (tree size, timestamp, id)."""

    manifest: dict[str, Any]
    last_head: tuple[int, int, int]

    @property
    def filename(self) -> str:
        stamp = self.manifest["exported_at"].replace("-", "").replace(":", "")
        return f"uaa-audit-ledger-{self.manifest['tree_size']}-{stamp}.zip"


def plan_export(*, now: datetime) -> StreamedExport | None:
    """The export of everything sealed up to the latest signed head, or ``None`` before the first seal;
    ``ExportRefused`` when the database's latest head is one the sealer would not extend (as
    ``export_ledger``: no export is made from a cut-back or rewritten ledger). Nothing is sealed here."""
    _check_extends_witness()
    head = TreeHead.objects.order_by("-tree_size", "-timestamp", "-id").first()
    if head is None:
        return None
    pruned = pruned_through()
    manifest = {
        "format": FORMAT,
        "issuer": settings.UAA_ISSUER,
        "first_index": pruned.tree_size if pruned else 0,
        "frontier": list(pruned.frontier) if pruned else [],
        "tree_size": head.tree_size,
        "exported_at": rfc3339_utc(now),
    }
    return StreamedExport(manifest=manifest, last_head=(head.tree_size, head.timestamp, head.pk))


class _Chunks:
    """The file ``zipfile`` writes into: it keeps what was written until ``take`` hands it on. No
    ``tell`` or ``seek``: zipfile then writes each member with a data descriptor (sizes after the data)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _record_lines(first_index: int, size: int, batch: int) -> Iterator[bytes]:
    """records.jsonl's lines, ``[first_index, size)``, by keyset (``leaf_index``): one short query per
    batch, in autocommit, none open while the caller writes. A gap (records pruned meanwhile) or a body
    that is not JSON raises ``ExportRefused``/``LedgerCorrupt``: the archive is never finished."""
    position = first_index
    while position < size:
        rows = list(
            LedgerRecord.objects.filter(leaf_index__gte=position, leaf_index__lt=size)
            .order_by("leaf_index")
            .values_list("leaf_index", "id", "leaf_hash", "body")[:batch]
        )
        if not rows:
            break
        for index, pk, sealed_hash, body in rows:
            if index != position:
                raise ExportRefused(f"record {position} is missing (pruned or deleted during the export)")
            entry = {"index": index, "leaf_hash": sealed_hash, "record": stored_record(index, pk, body)}
            yield canonical_json(entry) + b"\n"
            position += 1
    if position != size:
        raise ExportRefused(f"records [{position}, {size}) are missing (pruned or deleted during the export)")


def _head_lines(last: tuple[int, int, int], batch: int) -> Iterator[bytes]:
    """tree-heads.jsonl's lines in ``collect_export``'s order (tree size, timestamp; then id), up to and
    including ``last``, by keyset on that order: heads signed after the plan are not in the export."""
    size, timestamp, pk = last
    upto = Q(tree_size__lt=size) | Q(tree_size=size, timestamp__lt=timestamp)
    upto |= Q(tree_size=size, timestamp=timestamp, id__lte=pk)
    after: Q | None = None
    while True:
        query = TreeHead.objects.filter(upto)
        if after is not None:
            query = query.filter(after)
        rows = list(
            query.order_by("tree_size", "timestamp", "id").values_list(
                "tree_size", "timestamp", "id", "root_hash", "audit_key_id", "signature", "consistency"
            )[:batch]
        )
        for tree_size, stamp, _, root_hash, kid, signature, consistency in rows:
            head = {
                "tree_size": tree_size,
                "root_hash": root_hash,
                "timestamp": stamp,
                "kid": kid,
                "signature": signature,
                "consistency": list(consistency),
            }
            yield canonical_json(head) + b"\n"
        if len(rows) < batch:
            return
        tree_size, stamp, row_id = rows[-1][:3]
        after = Q(tree_size__gt=tree_size) | Q(tree_size=tree_size, timestamp__gt=stamp)
        after |= Q(tree_size=tree_size, timestamp=stamp, id__gt=row_id)


def stream_export(plan: StreamedExport, *, batch: int | None = None) -> Iterator[bytes]:
    """The export ``plan`` names as a ZIP archive of ``EXPORT_FILES`` (their bytes exactly as
    ``write_export`` writes them), yielded as it is made, one database batch at a time (``STREAM_BATCH``
    rows): the ledger is never in memory whole, and no transaction or lock is held while the reader
    reads. After the last record and head the witness is checked again (as ``export_ledger`` does); if
    the ledger was cut back or rewritten meanwhile, or records went missing, ``ExportRefused`` is raised
    before the archive's central directory is written, so what the reader got is not a readable export."""
    batch = batch or STREAM_BATCH
    manifest = plan.manifest
    moment = datetime.fromisoformat(manifest["exported_at"].replace("Z", "+00:00")).astimezone(UTC)
    sink = _Chunks()
    archive = zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED)

    def member(name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=moment.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
        return info

    try:
        with archive.open(member("manifest.json"), "w") as handle:
            handle.write(canonical_json(manifest) + b"\n")
        yield sink.take()
        for name, lines in (
            ("records.jsonl", _record_lines(manifest["first_index"], manifest["tree_size"], batch)),
            ("tree-heads.jsonl", _head_lines(plan.last_head, batch)),
        ):
            with archive.open(member(name), "w", force_zip64=True) as handle:
                for count, line in enumerate(lines, start=1):
                    handle.write(line)
                    if count % batch == 0:
                        yield sink.take()
            yield sink.take()
        with archive.open(member("audit-keys.json"), "w") as handle:
            handle.write(canonical_json(audit_jwks()) + b"\n")
        _check_extends_witness()
    except (ExportRefused, LedgerCorrupt) as exc:
        logger.error("tokens.ledger_export_aborted", extra={"problem": str(exc)})
        raise
    archive.close()  # the central directory: only now is the archive readable
    yield sink.take()
