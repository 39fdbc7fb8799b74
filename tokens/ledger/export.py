"""The export an auditor verifies offline (manifest, records, tree heads, audit keys), and the same
verification run over the database's ledger with what only the server can check besides."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from tokens import witness
from tokens.ledger.audit_keys import audit_jwks
from tokens.ledger.records import LedgerCorrupt, record_problem, rfc3339_utc, stored_record
from tokens.ledger.sealing import head_problem, next_batch
from tokens.ledger.tree import pruned_through
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import FORMAT, Report, canonical_json, verify_ledger


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
