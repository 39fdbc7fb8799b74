"""Tampering with the audit ledger is evident, and `verify` names what is wrong (RFC 9162 §2.1, §4.10).

The attacker here is a database administrator: the append-only trigger is dropped first, as they could.
Each case runs twice: `manage.py audit verify` on the database, and the standalone verifier on an export
whose files were changed the same way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from freezegun import freeze_time

from tokens import ledger
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import (
    b64url,
    canonical_json,
    jwk_thumbprint,
    leaf_hash,
    main,
    tree_head_message,
    verify_export,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock_from_t0() -> Iterator[None]:
    """The heads here are signed at T0 and after, and the commands read the clock: it runs from T0 too
    (the sealer refuses to extend a head from its future, the verifier heads dated after the export)."""
    with freeze_time(T0, tick=True):
        yield


@pytest.fixture
def sealed_ledger(db) -> list[TreeHead]:
    """Twelve records under three signed heads (sizes 5, 9, 13: the audit key's creation is record 4)."""
    heads = []
    for round_, count in enumerate((4, 4, 4)):
        for i in range(count):
            ledger.append_record(
                event=LedgerRecord.Event.TOKEN_ISSUED,
                client_id=f"client-{round_}-{i}",
                jti=f"jti-{round_}-{i}",
            )
        head = ledger.seal_tree_head(now=T0 + timedelta(seconds=round_))
        assert head is not None
        heads.append(head)
    assert [head.tree_size for head in heads] == [5, 9, 13]
    return heads


def drop_append_only_trigger() -> None:
    suffix = " ON tokens_ledgerrecord" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER tokens_ledgerrecord_append_only" + suffix)


def drop_delete_guard() -> None:
    suffix = " ON tokens_ledgerrecord" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER tokens_ledgerrecord_no_delete" + suffix)


def verify_failure() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("audit", "verify", "--no-seal", stdout=io.StringIO())
    return str(failure.value)


def record_at(index: int) -> LedgerRecord:
    return LedgerRecord.objects.get(leaf_index=index)


def export(tmp_path: Path) -> Path:
    directory = tmp_path / "export"
    ledger.write_export(ledger.collect_export(now=T0), directory)
    return directory


def rewrite_lines(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_bytes(b"".join(canonical_json(entry) + b"\n" for entry in change(lines)))


def test_an_untouched_ledger_verifies(sealed_ledger, tmp_path):
    out = io.StringIO()
    call_command("audit", "verify", "--no-seal", stdout=out)
    assert "OK: 13 records, 3 signed tree heads, 1 audit keys; tree size 13" in out.getvalue()
    assert verify_export(export(tmp_path)).ok
    assert main([str(tmp_path / "export")]) == 0


def test_a_changed_field_is_named(sealed_ledger, tmp_path):
    """A record whose content no longer hashes to its sealed leaf."""
    drop_append_only_trigger()
    record = record_at(6)
    LedgerRecord.objects.filter(pk=record.pk).update(body=record.body.replace("client-1-1", "client-9-9"))
    assert "first bad record: 6" in verify_failure()
    assert "record 6 was altered" in verify_failure()

    directory = export(tmp_path)
    report = verify_export(directory)
    assert not report.ok and report.first_bad_record == 6


def test_a_changed_field_with_its_leaf_hash_recomputed_is_caught_by_the_signed_roots(sealed_ledger, tmp_path):
    """The attacker also rewrites the sealed leaf hash: the records no longer reproduce the signed roots,
    and the report bounds the bad record between the last head that still matches and the first that fails."""
    directory = export(tmp_path)

    def change(lines):  # type: ignore[no-untyped-def]
        lines[6]["record"]["client_id"] = "client-9-9"
        lines[6]["leaf_hash"] = leaf_hash(canonical_json(lines[6]["record"])).hex()
        return lines

    rewrite_lines(directory / "records.jsonl", change)
    report = verify_export(directory)
    assert not report.ok
    assert report.first_bad_record == 5
    assert "a record in [5, 9) was altered" in report.summary()
    assert "do not reproduce the root of the signed tree head of size 9" in report.summary()


def test_a_deleted_record_is_named(sealed_ledger, tmp_path):
    drop_append_only_trigger()
    drop_delete_guard()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index = 7")
    message = verify_failure()
    assert "record 7 is missing (the next record is 8)" in message
    assert "first bad record: 7" in message


def test_a_deleted_record_in_an_export_is_named(sealed_ledger, tmp_path):
    directory = export(tmp_path)
    rewrite_lines(directory / "records.jsonl", lambda lines: lines[:7] + lines[8:])
    report = verify_export(directory)
    assert report.first_bad_record == 7
    assert "record 7 is missing" in report.summary()


def test_records_deleted_from_the_end_are_named(sealed_ledger, tmp_path):
    directory = export(tmp_path)
    rewrite_lines(directory / "records.jsonl", lambda lines: lines[:11])
    report = verify_export(directory)
    assert report.first_bad_record == 11
    assert "records from 11 on are missing: the tree heads cover 13" in report.summary()


def test_two_swapped_records_are_named(sealed_ledger, tmp_path):
    drop_append_only_trigger()
    first, second = record_at(2), record_at(3)
    with connection.cursor() as cursor:  # swap the contents, as an attacker reordering events would
        cursor.execute("UPDATE tokens_ledgerrecord SET body = %s WHERE id = %s", [second.body, first.pk])
        cursor.execute("UPDATE tokens_ledgerrecord SET body = %s WHERE id = %s", [first.body, second.pk])
    message = verify_failure()
    assert "records 2 and 3 are swapped" in message
    assert "first bad record: 2" in message


def test_two_swapped_lines_of_an_export_are_named(sealed_ledger, tmp_path):
    directory = export(tmp_path)

    def swap(lines):  # type: ignore[no-untyped-def]
        lines[2]["record"], lines[3]["record"] = lines[3]["record"], lines[2]["record"]
        return lines

    rewrite_lines(directory / "records.jsonl", swap)
    assert "records 2 and 3 are swapped" in verify_export(directory).summary()


def test_a_forged_tree_head_is_named(sealed_ledger, tmp_path):
    """A head whose size, root or time was changed no longer carries a valid signature."""
    TreeHead.objects.filter(pk=sealed_ledger[1].pk).update(root_hash="00" * 32)
    message = verify_failure()
    assert f"tree head of size 9 (timestamp {sealed_ledger[1].timestamp}) has an invalid signature" in message

    TreeHead.objects.filter(pk=sealed_ledger[1].pk).update(root_hash=sealed_ledger[1].root_hash)
    directory = export(tmp_path)

    def forge(lines):  # type: ignore[no-untyped-def]
        lines[2]["tree_size"] = 12  # hide the last record
        return lines

    rewrite_lines(directory / "tree-heads.jsonl", forge)
    assert "tree head of size 12" in verify_export(directory).summary()
    assert "invalid signature: it was forged or altered" in verify_export(directory).summary()


def test_a_tree_head_signed_by_an_unknown_key_is_named(sealed_ledger, tmp_path):
    """A well-formed, validly signed head, by a key that is not among the published audit keys."""
    rogue = Ed25519PrivateKey.generate()
    public = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(rogue.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
    }
    kid = jwk_thumbprint(public)
    head = sealed_ledger[2]
    forged = {**head.as_dict(), "kid": kid, "timestamp": head.timestamp + 1}
    forged["signature"] = b64url(
        rogue.sign(
            tree_head_message(
                issuer="http://testserver",
                tree_size=forged["tree_size"],
                root_hash=bytes.fromhex(forged["root_hash"]),
                timestamp=forged["timestamp"],
                kid=kid,
            )
        )
    )
    directory = export(tmp_path)
    with (directory / "tree-heads.jsonl").open("ab") as handle:
        handle.write(canonical_json(forged) + b"\n")
    report = verify_export(directory)
    assert not report.ok
    assert f"tree head of size 13 (timestamp {forged['timestamp']}) is signed by an unknown key '{kid}'" in (
        report.summary()
    )


def test_inconsistent_tree_heads_are_named(sealed_ledger, tmp_path):
    """A head that validly signs a different history does not extend the previous head (RFC 9162 §2.1.4)."""
    from tokens.ledger.audit_keys import sign

    head = sealed_ledger[2]
    root = bytes.fromhex("11" * 32)
    message = tree_head_message(
        issuer="http://testserver",
        tree_size=13,
        root_hash=root,
        timestamp=head.timestamp,
        kid=head.audit_key_id,
    )
    TreeHead.objects.filter(pk=head.pk).update(
        root_hash=root.hex(), signature=b64url(sign(head.audit_key, message))
    )
    message = verify_failure()
    assert "tree heads of sizes 9 and 13 are not consistent" in message
    assert "do not reproduce the root of the signed tree head of size 13" in message


def test_the_standalone_verifier_cli_exits_non_zero_and_says_why(sealed_ledger, tmp_path, capsys):
    directory = export(tmp_path)
    rewrite_lines(directory / "records.jsonl", lambda lines: lines[:3] + lines[4:])
    assert main([str(directory)]) == 1
    assert "FAILED (first bad record: 3): record 3 is missing" in capsys.readouterr().out
