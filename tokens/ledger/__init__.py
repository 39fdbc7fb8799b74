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

The modules, each importing only those listed before it (import-linter checks the order):

* ``records``: the record, ``append_record``, the canonical form the sealer demands;
* ``audit_keys``: the Ed25519 keys that sign tree heads (their creation and retirement are records);
* ``tree``: tree heads, the pruning point, inclusion and consistency proofs;
* ``sealing``: ``seal_tree_head`` and the checks it makes before signing;
* ``export`` (the export and its verification) and ``retention`` (pruning after export).

This package re-exports the names its callers use; nothing here has logic of its own.
"""

from __future__ import annotations

from tokens.checksum import sha256_hex  # the digest records hold of tokens, codes and assertions
from tokens.ledger.export import (
    Export,
    ExportRefused,
    StreamedExport,
    collect_export,
    export_ledger,
    plan_export,
    stream_export,
    verify_stored_ledger,
    write_export,
)
from tokens.ledger.records import (
    LedgerCorrupt,
    RequestMetadata,
    append_record,
    build_record,
    insert_select_sql,
    record_problem,
    record_row,
    request_metadata,
    rfc3339_utc,
)
from tokens.ledger.retention import PruneRefused, prune_ledger
from tokens.ledger.sealing import (
    SealRefused,
    before_sealing,
    head_problem,
    published_tree_head,
    seal_tree_head,
    sealing_problem,
)
from tokens.ledger.tree import consistency_proof, inclusion_proof, latest_tree_head, tree_head_at

_utc = rfc3339_utc  # the name tests use to write a record's ``at`` by hand

__all__ = [
    "Export",
    "ExportRefused",
    "LedgerCorrupt",
    "PruneRefused",
    "RequestMetadata",
    "SealRefused",
    "StreamedExport",
    "append_record",
    "before_sealing",
    "build_record",
    "collect_export",
    "consistency_proof",
    "export_ledger",
    "head_problem",
    "inclusion_proof",
    "insert_select_sql",
    "latest_tree_head",
    "plan_export",
    "prune_ledger",
    "published_tree_head",
    "record_problem",
    "record_row",
    "request_metadata",
    "rfc3339_utc",
    "seal_tree_head",
    "sealing_problem",
    "sha256_hex",
    "stream_export",
    "tree_head_at",
    "verify_stored_ledger",
    "write_export",
]
