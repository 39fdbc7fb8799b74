"""Retention: sealed ranges are exported, then pruned; verification still chains across the gap.

The head at the pruning point keeps the Merkle frontier of the pruned records (RFC 9162 §2.1: every
later root and proof is computable from it), and every tree head stays, with its consistency proof.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from freezegun import freeze_time

from tokens import ledger
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import verify_export, verify_proof

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock_from_t0() -> Iterator[None]:
    """The heads here are signed at T0 and after, and the commands read the clock: it runs from T0 too
    (the sealer refuses to extend a head from its future, the verifier heads dated after the export)."""
    with freeze_time(T0, tick=True):
        yield


def append(count: int, prefix: str) -> None:
    for i in range(count):
        ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"{prefix}-{i}")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("audit", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_heads(db) -> list[TreeHead]:
    append(6, "old")
    first = ledger.seal_tree_head(now=T0)
    append(3, "mid")
    second = ledger.seal_tree_head(now=T0 + timedelta(seconds=1))
    assert first is not None and second is not None
    assert (first.tree_size, second.tree_size) == (7, 10)
    return [first, second]


def test_an_exported_range_is_pruned_and_verification_chains_across_it(two_heads, tmp_path, client):
    run("export", str(tmp_path / "before"))
    out = run("prune", "7", "--export", str(tmp_path / "before"))
    assert "pruned the records below 7" in out
    assert not LedgerRecord.objects.filter(leaf_index__lt=7).exists()
    assert TreeHead.objects.filter(tree_size__in=[7, 10]).count() == 2  # every head stays ...
    assert TreeHead.objects.count() == 3  # ... and the prune's own record is sealed at once
    assert not LedgerRecord.objects.unsealed().exists()
    assert "OK:" in run("verify", "--no-seal")
    assert TreeHead.objects.get(tree_size=7).pruned_at is not None

    append(4, "new")
    ledger.seal_tree_head(now=T0 + timedelta(seconds=2))
    assert "OK:" in run("verify")
    run("export", str(tmp_path / "after"))
    manifest = json.loads((tmp_path / "after" / "manifest.json").read_text())
    assert manifest["first_index"] == 7 and len(manifest["frontier"]) == 3  # 7 = 4 + 2 + 1
    report = verify_export(tmp_path / "after")
    assert report.ok, report.errors
    assert (report.records, report.tree_size) == (8, 15)  # 3 "mid", the prune's own record, 4 "new"
    assert verify_export(tmp_path / "before").ok  # the old export still verifies on its own
    before = (tmp_path / "before" / "tree-heads.jsonl").read_text().splitlines()
    after = (tmp_path / "after" / "tree-heads.jsonl").read_text().splitlines()
    assert after[: len(before)] == before  # the old export's heads are a prefix of the new export's

    pruned_event = LedgerRecord.objects.get(event="ledger.pruned")
    detail = json.loads(pruned_event.body)["detail"]
    assert detail["tree_size"] == 7 and detail["root_hash"] == TreeHead.objects.get(tree_size=7).root_hash
    assert detail["kid"] and detail["signature"]  # the prune statement, signed by the audit key

    proof = json.loads(run("prove", "8"))
    assert verify_proof(proof, client.get("/.well-known/audit-keys.json").json()) is None
    with pytest.raises(CommandError, match="record 3 was pruned"):
        run("prove", "3")


def test_tampering_after_a_prune_is_still_named(two_heads, tmp_path):
    run("export", str(tmp_path / "before"))
    run("prune", "7", "--export", str(tmp_path / "before"))
    ledger.seal_tree_head(now=T0 + timedelta(seconds=2))
    run("export", str(tmp_path / "after"))
    manifest_path = tmp_path / "after" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["frontier"][0] = "00" * 32  # pretend the pruned records were different
    manifest_path.write_text(json.dumps(manifest))
    report = verify_export(tmp_path / "after")
    assert not report.ok
    assert "the manifest frontier does not match the tree head at the pruning point" in report.summary()


def test_pruning_needs_a_verified_export_holding_the_range(two_heads, tmp_path):
    with pytest.raises(CommandError, match="export unreadable"):
        run("prune", "7", "--export", str(tmp_path / "nowhere"))
    run("export", str(tmp_path / "export"))
    with pytest.raises(CommandError, match="no signed tree head has size 5"):
        run("prune", "5", "--export", str(tmp_path / "export"))
    lines = (tmp_path / "export" / "records.jsonl").read_text().splitlines()
    (tmp_path / "export" / "records.jsonl").write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    with pytest.raises(CommandError, match="the export does not verify"):
        run("prune", "7", "--export", str(tmp_path / "export"))
    assert LedgerRecord.objects.filter(leaf_index__lt=7).count() == 7
