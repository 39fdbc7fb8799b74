"""Tree head times: never decreasing, not after the export, not before the records they cover.

RFC 9162 §4.10: a signed tree head's timestamp is when the log committed to the tree, so it cannot be
before a record in it was appended, nor after anyone could have read it. The heads below are genuinely
signed by the audit key over the genuine records, only with times a sealer with a wrong clock (or one that
extended a head dated 2100, B2) would give them; tokens.verifier.CLOCK_TOLERANCE_MS is the slack allowed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from tokens import ledger
from tokens.ledger.audit_keys import audit_jwks, sign
from tokens.models import AuditKey, LedgerRecord, TreeHead
from tokens.verifier import CLOCK_TOLERANCE_MS, b64url, canonical_json, main, tree_head_message


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@pytest.fixture
def sealed(db) -> list[TreeHead]:
    """Three heads over records appended now (sizes 5, 9, 13)."""
    heads = []
    for round_ in range(3):
        for i in range(4):
            ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"c-{round_}-{i}")
        head = ledger.seal_tree_head(now=timezone.now())
        assert head is not None
        heads.append(head)
    return heads


def export(tmp_path: Path) -> Path:
    directory = tmp_path / "export"
    ledger.write_export(ledger.collect_export(now=timezone.now()), directory)
    return directory


def resign(directory: Path, timestamps: dict[int, int]) -> None:
    """Re-sign the heads of these sizes with the genuine audit key, at these times."""
    key = AuditKey.objects.get()
    path = directory / "tree-heads.jsonl"
    heads = [json.loads(line) for line in path.read_text().splitlines()]
    for head in heads:
        if head["tree_size"] in timestamps:
            head["timestamp"] = timestamps[head["tree_size"]]
            message = tree_head_message(
                issuer=settings.UAA_ISSUER,
                tree_size=head["tree_size"],
                root_hash=bytes.fromhex(head["root_hash"]),
                timestamp=head["timestamp"],
                kid=key.kid,
            )
            head["signature"] = b64url(sign(key, message))
    path.write_bytes(b"".join(canonical_json(head) + b"\n" for head in heads))


def verify(capsys: pytest.CaptureFixture[str], directory: Path, tmp_path: Path) -> tuple[int, str]:
    keys = tmp_path / "keys.json"
    keys.write_bytes(canonical_json(audit_jwks()))
    status = main([str(directory), "--keys", str(keys)])
    printed = capsys.readouterr()
    return status, printed.out + printed.err


def test_genuine_head_times_verify(sealed, tmp_path, capsys):
    status, printed = verify(capsys, export(tmp_path), tmp_path)
    assert status == 0, printed


def test_a_head_older_than_the_one_before_it_fails(sealed, tmp_path, capsys):
    directory = export(tmp_path)
    resign(directory, {9: sealed[0].timestamp - 1})
    status, printed = verify(capsys, directory, tmp_path)
    assert status == 1
    assert "tree head of size 9" in printed and "is older than the tree head before it (size 5" in printed
    assert "not consistent" not in printed


def test_a_head_dated_after_the_export_fails(sealed, tmp_path, capsys):
    directory = export(tmp_path)
    exported_at = json.loads((directory / "manifest.json").read_text())["exported_at"]
    resign(directory, {13: sealed[2].timestamp + CLOCK_TOLERANCE_MS + 60_000})
    status, printed = verify(capsys, directory, tmp_path)
    assert status == 1
    assert f"tree head of size 13 (timestamp {sealed[2].timestamp + CLOCK_TOLERANCE_MS + 60_000})" in printed
    assert f"after the export was made ({exported_at})" in printed


def test_a_head_dated_before_a_record_it_covers_fails(sealed, tmp_path, capsys):
    directory = export(tmp_path)
    first = json.loads((directory / "records.jsonl").read_text().splitlines()[0])["record"]["at"]
    early = ms(datetime.fromisoformat(first)) - CLOCK_TOLERANCE_MS - 60_000
    resign(directory, {5: early})
    status, printed = verify(capsys, directory, tmp_path)
    assert status == 1
    assert f"tree head of size 5 (timestamp {early}) is older than record" in printed


def test_clock_differences_within_the_tolerance_pass(sealed, tmp_path, capsys):
    """The sealer (worker) and the appender (web) are different hosts: a small skew is not tampering."""
    directory = export(tmp_path)
    resign(directory, {5: sealed[0].timestamp - CLOCK_TOLERANCE_MS // 2})
    status, printed = verify(capsys, directory, tmp_path)
    assert status == 0, printed


def test_the_stored_ledger_checks_head_times_against_now(sealed):
    """`audit verify` on the database: the export time is now."""
    report = ledger.verify_stored_ledger(now=timezone.now() - timedelta(hours=1))
    assert not report.ok and "after the export was made" in report.summary()


def test_an_export_without_exported_at_is_still_checked_for_order(sealed, tmp_path, capsys):
    directory = export(tmp_path)
    manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
    del manifest["exported_at"]
    (directory / "manifest.json").write_bytes(canonical_json(manifest))
    resign(directory, {9: sealed[0].timestamp - 1})
    status, printed = verify(capsys, directory, tmp_path)
    assert status == 1 and "is older than the tree head before it" in printed
