"""Retention: prune the records a verified export holds, under a prune statement the audit key signs
(docs/audit-ledger.md, "Retention")."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction

from tokens.checksum import sha256_hex
from tokens.ledger.audit_keys import audit_jwks, locked_active_audit_key, sign
from tokens.ledger.records import append_record, timestamp_ms
from tokens.ledger.sealing import seal_tree_head
from tokens.ledger.tree import pruned_through
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import b64url, prune_statement_message, verify_export

logger = logging.getLogger(__name__)


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
    head = TreeHead.objects.filter(tree_size=tree_size).order_by("timestamp").first()
    if head is None:
        raise PruneRefused(f"no signed tree head has size {tree_size}: prune at a sealed size")
    pruned = pruned_through()
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
        pruned_records = LedgerRecord.objects.filter(leaf_index__lt=tree_size)
        deleted = pruned_records.count()
        timestamp = timestamp_ms(now)
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
        # After the record: the database's delete guard (migration 0011) lets go only of sealed records
        # below the tree_size of a ledger.pruned record that stays.
        removed, _ = pruned_records.delete()
        if removed != deleted:  # the count the record states must be what went
            raise PruneRefused(f"{removed} records went, not the {deleted} counted: nothing is pruned")
        TreeHead.objects.filter(pk=head.pk).update(pruned_at=now)
    logger.info("tokens.ledger_pruned", extra={"tree_size": tree_size, "deleted": deleted})
    seal_tree_head(now=now)  # the ledger verifies from the pruning point at once, not at the next beat
    head.refresh_from_db()
    return head
