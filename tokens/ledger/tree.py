"""The Merkle tree as stored: signed tree heads, the pruning point, and RFC 9162 inclusion and consistency
proofs, computed with the algorithms of tokens/verifier.py (the module an auditor runs offline)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from tokens.ledger.records import stored_record
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import MerkleTree


def latest_tree_head() -> TreeHead | None:
    return TreeHead.objects.select_related("audit_key").order_by("-tree_size", "-timestamp").first()


def pruned_through() -> TreeHead | None:
    return TreeHead.objects.filter(pruned_at__isnull=False).order_by("-tree_size").first()


def _tree(size: int) -> MerkleTree:
    """The first ``size`` leaves: stored leaf hashes plus the frontier at the pruning point."""
    pruned = pruned_through()
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
    pruned = pruned_through()
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
        "record": stored_record(index, record.pk, record.body),
        "tree_head": head.as_dict(),
        "inclusion": [node.hex() for node in proof],
    }


def consistency_proof(*, first: int, second: int) -> list[str]:
    """RFC 9162 §2.1.4: the tree of size ``second`` extends the tree of size ``first``."""
    return [node.hex() for node in _tree(second).consistency_proof(first, second)]
