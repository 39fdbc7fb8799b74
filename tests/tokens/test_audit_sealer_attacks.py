"""A database-only attacker against the sealer: it must not sign what the database says happened.

The attacker writes any table with plain SQL (the triggers refuse UPDATEs of sealed rows and DELETEs, and
the attacker drops the delete guard first, as the table's owner may; INSERT is theirs) but does not know
``UAA_KEK``, so cannot sign. The sealer holds the audit key:
before these fixes it signed whatever the database held, so a rewritten history came back genuinely signed
(a signing oracle). RFC 9162 §2.1.4: a log's new tree must extend the old one; §8.1: a monitor checks
that against the heads it saw. The sealer is its own first monitor: it keeps the last head it signed
outside the database (tokens/witness.py) and signs only trees that extend it.
"""

from __future__ import annotations

import errno
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from tokens import ledger
from tokens.ledger.audit_keys import audit_jwks
from tokens.models import LedgerRecord, TreeHead
from tokens.tasks import seal_audit_ledger_task
from tokens.verifier import MerkleTree, canonical_json, leaf_hash, main


def now() -> datetime:
    return timezone.now()


def append(count: int, prefix: str = "svc") -> None:
    for i in range(count):
        ledger.append_record(
            event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"{prefix}-{i}", jti=f"{prefix}-jti-{i}"
        )


def beat_seals() -> int | None:
    """What beat makes the worker do every 10 seconds."""
    return seal_audit_ledger_task.apply().get()


def saved(tmp_path: Path, name: str, head: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_bytes(canonical_json({**head, "issuer": settings.UAA_ISSUER}))
    return path


def pinned(tmp_path: Path) -> Path:
    path = tmp_path / "pinned-audit-keys.json"
    path.write_bytes(canonical_json(audit_jwks()))
    return path


def export(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    ledger.write_export(ledger.collect_export(now=now()), directory)
    return directory


def run_verifier(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    status = main([str(arg) for arg in args])
    printed = capsys.readouterr()
    return status, printed.out + printed.err


def insert_unsealed(*, event: str, at: Any, client_id: str, actor: str, body: str) -> None:
    """The attacker's INSERT: the same row append_record writes, with a body of their choosing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tokens_ledgerrecord (event, at, client_id, actor, body, leaf_hash)"
            " VALUES (%s, %s, %s, %s, %s, '')",
            [event, connection.ops.adapt_datetimefield_value(at), client_id, actor, body],
        )


def drop_delete_guard() -> None:
    """What the attacker does before a DELETE: drop the trigger refusing it (the table's owner may)."""
    suffix = " ON tokens_ledgerrecord" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER tokens_ledgerrecord_no_delete" + suffix)


def errors(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [
        entry for entry in caplog.records if entry.getMessage() == event and entry.levelno >= logging.ERROR
    ]


@pytest.fixture
def t1(db) -> TreeHead:
    """The auditor's saved head: 12 records and the audit key's creation, sealed (size 13)."""
    append(12, "early")
    head = ledger.seal_tree_head(now=now())
    assert head is not None and head.tree_size == 13
    return head


# --- B1: the database rewrites history after the last head an auditor saved -----------------------------
def test_a_tail_rewritten_in_the_database_is_never_signed(t1, tmp_path, capsys, caplog):
    """RFC 9162 §2.1.4: every new tree must be consistent with the trees the log signed before. The
    attacker removes the heads after the auditor's T1 and the records they cover, and re-INSERTs the records
    unsealed with one grant removed and another's client_id changed: the sealer refuses to sign that, says
    so once at error level, and an auditor holding the head published after T1 sees the cut."""
    size = t1.tree_size
    append(5, "late")
    latest = ledger.seal_tree_head(now=now())
    assert latest is not None and latest.tree_size == size + 5
    published = {**latest.as_dict(), "issuer": settings.UAA_ISSUER}  # what an auditor saved

    rows = list(
        LedgerRecord.objects.filter(leaf_index__gte=size)
        .order_by("leaf_index")
        .values_list("event", "at", "client_id", "actor", "body")
    )
    drop_delete_guard()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_treehead WHERE tree_size > %s", [size])
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index >= %s", [size])
    del rows[1]  # one token.issued gone
    event, at, _, actor, body = rows[2]
    record = json.loads(body)
    record["client_id"] = "someone-else"
    rows[2] = (event, at, "someone-else", actor, canonical_json(record).decode())
    for event, at, client_id, actor, body in rows:
        insert_unsealed(event=event, at=at, client_id=client_id, actor=actor, body=body)

    caplog.set_level(logging.INFO)
    assert beat_seals() is None
    assert beat_seals() is None  # beat keeps trying; the error is logged once
    assert not TreeHead.objects.filter(tree_size__gt=size).exists()  # nothing signed the forgery
    assert LedgerRecord.objects.unsealed().count() == 4
    mismatch = errors(caplog, "tokens.ledger_witness_mismatch")
    assert len(mismatch) == 1
    assert (mismatch[0].witness_size, mismatch[0].database_size) == (size + 5, size)

    directory = export(tmp_path, "E2")
    keys = pinned(tmp_path)
    status, printed = run_verifier(
        capsys, directory, "--keys", keys, "--trusted-head", saved(tmp_path, "T1", t1.as_dict())
    )
    assert status == 0, printed  # the export is the genuine ledger up to T1: no forged record is in it
    assert json.loads((directory / "manifest.json").read_text())["tree_size"] == size
    status, printed = run_verifier(
        capsys, directory, "--keys", keys, "--trusted-head", saved(tmp_path, "T2", published)
    )
    assert status == 1
    assert f"the export ends at tree size {size}, before the trusted head of size {size + 5}" in printed

    with pytest.raises(CommandError, match="witness") as failure:
        call_command("audit", "verify", stdout=io.StringIO(), stderr=io.StringIO())
    assert f"size {size + 5}" in str(failure.value)
    with pytest.raises(CommandError, match="witness"):
        call_command("audit", "seal", stdout=io.StringIO())


def test_records_rewritten_below_the_witness_are_not_signed_into_a_new_head(t1, caplog):
    """The attacker rewrites sealed records below the last signed head (DELETE, then INSERT the forgery at
    the same leaf index with its leaf hash recomputed) and also rewrites that head's stored frontier, which
    no signature covers. The next head still extends the tree the sealer signed, so it commits to the
    genuine history and the rewrite shows."""
    genuine = [
        bytes.fromhex(value)
        for value in LedgerRecord.objects.in_leaf_order().values_list("leaf_hash", flat=True)
    ]
    victim = LedgerRecord.objects.get(leaf_index=3)
    record = json.loads(victim.body)
    record["client_id"] = "someone-else"
    body = canonical_json(record).decode()
    forged = genuine.copy()
    forged[3] = leaf_hash(body.encode())
    drop_delete_guard()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index = 3")
        cursor.execute(
            "INSERT INTO tokens_ledgerrecord (event, at, client_id, actor, body, leaf_index, leaf_hash)"
            " VALUES (%s, %s, %s, %s, %s, 3, %s)",
            [
                victim.event,
                connection.ops.adapt_datetimefield_value(victim.at),
                "someone-else",
                victim.actor,
                body,
                forged[3].hex(),
            ],
        )
    TreeHead.objects.filter(pk=t1.pk).update(frontier=[node.hex() for node in MerkleTree(forged).frontier()])

    append(2, "after")
    head = ledger.seal_tree_head(now=now())
    assert head is not None and head.tree_size == 15
    new = [
        bytes.fromhex(value)
        for value in LedgerRecord.objects.filter(leaf_index__gte=13)
        .order_by("leaf_index")
        .values_list("leaf_hash", flat=True)
    ]
    assert head.root_hash == MerkleTree(genuine + new).root().hex()
    assert head.root_hash != MerkleTree(forged + new).root().hex()
    report = ledger.verify_stored_ledger(now=now())
    assert not report.ok
    assert "the records do not reproduce the root of the signed tree head of size 13" in report.summary()


def test_a_missing_witness_starts_from_the_databases_latest_verified_head_and_says_so(t1, caplog):
    """A new worker without the witness file (first run): the database's latest head is accepted once its
    signature verifies and its stored frontier folds to its signed root, and the log says so."""
    Path(settings.UAA_AUDIT_WITNESS).unlink()
    caplog.set_level(logging.INFO)
    append(1)
    head = ledger.seal_tree_head(now=now())
    assert head is not None and head.tree_size == 14
    started = [entry for entry in caplog.records if entry.getMessage() == "tokens.ledger_witness_started"]
    assert len(started) == 1 and started[0].levelno == logging.WARNING
    assert started[0].tree_size == 13
    assert json.loads(Path(settings.UAA_AUDIT_WITNESS).read_text())["tree_size"] == 14


def test_without_a_witness_a_frontier_that_does_not_fold_to_its_signed_root_is_refused(t1, caplog):
    Path(settings.UAA_AUDIT_WITNESS).unlink()
    TreeHead.objects.filter(pk=t1.pk).update(frontier=["00" * 32] * len(t1.frontier))
    append(1)
    with pytest.raises(ledger.SealRefused, match="frontier"):
        ledger.seal_tree_head(now=now())
    assert not TreeHead.objects.filter(tree_size__gt=13).exists()
    assert not Path(settings.UAA_AUDIT_WITNESS).exists()  # never written from an untrusted state


def test_a_database_restored_behind_the_witness_is_refused_until_the_operator_decides(t1):
    """A restore from an older backup looks exactly like B1: the records after it are gone. The sealer
    refuses; moving the witness aside (keeping it) is the operator's explicit decision to go on."""
    witness = Path(settings.UAA_AUDIT_WITNESS)
    before = witness.read_bytes()
    append(3)
    ledger.seal_tree_head(now=now())
    after = witness.read_bytes()
    drop_delete_guard()
    with connection.cursor() as cursor:  # the backup held only T1
        cursor.execute("DELETE FROM tokens_treehead WHERE tree_size > 13")
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index >= 13")
    append(1)
    with pytest.raises(ledger.SealRefused, match="size 16"):
        ledger.seal_tree_head(now=now())
    assert witness.read_bytes() == after != before  # the witness is not rewound
    witness.rename(witness.with_suffix(".lost"))
    assert ledger.seal_tree_head(now=now()).tree_size == 14


def test_a_lagging_witness_is_caught_up_over_the_databases_leaves(t1):
    """The witness lags when a sealer died between its commit and writing the file: the heads after it
    must extend it over the stored records; then it moves on. A rewrite of those records is refused."""
    witness = Path(settings.UAA_AUDIT_WITNESS)
    old = witness.read_bytes()
    append(3)
    ledger.seal_tree_head(now=now())
    witness.write_bytes(old)  # as if the last write never happened
    append(1)
    assert ledger.seal_tree_head(now=now()).tree_size == 17
    assert json.loads(witness.read_text())["tree_size"] == 17

    witness.write_bytes(old)
    victim = LedgerRecord.objects.get(leaf_index=14)
    record = json.loads(victim.body)
    record["client_id"] = "someone-else"
    body = canonical_json(record).decode()
    drop_delete_guard()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index = 14")
        cursor.execute(
            "INSERT INTO tokens_ledgerrecord (event, at, client_id, actor, body, leaf_index, leaf_hash)"
            " VALUES (%s, %s, %s, %s, %s, 14, %s)",
            [
                victim.event,
                connection.ops.adapt_datetimefield_value(victim.at),
                "someone-else",
                victim.actor,
                body,
                leaf_hash(body.encode()).hex(),
            ],
        )
    append(1)
    with pytest.raises(ledger.SealRefused, match="witness"):
        ledger.seal_tree_head(now=now())


def test_an_unreadable_witness_stops_sealing(t1, caplog):
    Path(settings.UAA_AUDIT_WITNESS).write_text("{not json")
    append(1)
    with pytest.raises(ledger.SealRefused, match="witness"):
        ledger.seal_tree_head(now=now())
    assert errors(caplog, "tokens.ledger_witness_unreadable")


def test_a_sealer_that_cannot_write_its_witness_does_not_seal(db, monkeypatch, caplog):
    """Without a witness it could keep, the sealer could not tell a rewritten database from its own."""
    from tokens import witness

    def read_only() -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(witness, "check_writable", read_only)
    append(1)
    with pytest.raises(ledger.SealRefused, match="cannot be written"):
        ledger.seal_tree_head(now=now())
    assert not TreeHead.objects.exists()
    assert errors(caplog, "tokens.ledger_witness_unwritable")


def test_an_older_head_never_replaces_a_newer_witness(t1):
    """Two sealers finishing out of order (each writes after its commit): the witness only moves forward."""
    from tokens import witness

    append(2)
    newer = ledger.seal_tree_head(now=now())
    before = Path(settings.UAA_AUDIT_WITNESS).read_bytes()
    witness.advance(t1.as_dict(), frontier=list(t1.frontier))
    assert Path(settings.UAA_AUDIT_WITNESS).read_bytes() == before
    assert witness.load()["tree_size"] == newer.tree_size


# --- B2: a head row from the future ---------------------------------------------------------------------
def insert_head(head: TreeHead, *, timestamp: int, signature: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tokens_treehead (tree_size, root_hash, timestamp, audit_key_id, signature, frontier,"
            " consistency) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                head.tree_size,
                head.root_hash,
                timestamp,
                head.audit_key_id,
                signature,
                json.dumps(head.frontier),
                json.dumps(head.consistency),
            ],
        )


Y2100 = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)


def test_a_head_row_dated_2100_with_a_bogus_signature_is_not_extended(t1, caplog):
    """RFC 9162 §4.10: a tree head is what its signature says. The attacker's row (timestamp 2100,
    signature 'x') is the latest head by timestamp; the sealer used to sign max(now, its timestamp)."""
    insert_head(t1, timestamp=Y2100, signature="x")
    append(2)
    assert beat_seals() is None
    assert beat_seals() is None
    assert not TreeHead.objects.filter(timestamp__gte=Y2100).exclude(signature="x").exists()
    refused = errors(caplog, "tokens.ledger_head_untrusted")
    assert len(refused) == 1 and refused[0].tree_size == 13

    TreeHead.objects.filter(signature="x").delete()  # the operator removes the forged row
    head = ledger.seal_tree_head(now=now())
    assert head is not None and head.tree_size == 15 and head.timestamp < Y2100


def test_a_genuine_head_from_the_future_is_not_extended(db):
    """A sealer whose clock ran ahead signed a head in the future: later heads would inherit its time."""
    append(1)
    ledger.seal_tree_head(now=now() + timedelta(days=1))
    append(1)
    with pytest.raises(ledger.SealRefused, match="future"):
        ledger.seal_tree_head(now=now())


def test_heads_genuinely_signed_with_2100_fail_verification(db, tmp_path, capsys):
    """What the old sealer produced after B2 (the forged row deleted again): genuinely signed heads dated
    2100. The verifier refuses heads dated after the export was made."""
    append(2)
    ledger.seal_tree_head(now=datetime(2100, 1, 1, tzinfo=UTC))
    status, printed = run_verifier(capsys, export(tmp_path, "export"), "--keys", pinned(tmp_path))
    assert status == 1
    assert "after the export was made" in printed


# --- poison records ---------------------------------------------------------------------------------------
def test_a_non_canonical_body_is_not_sealed_and_verify_names_it(t1, caplog):
    """RFC 8785: the leaf is the canonical JSON of the record. A body with whitespace hashes to another
    leaf than its record: sealed, verify would blame tampering after the seal."""
    record = {"v": 1, "event": "token.issued", "at": ledger._utc(now()), "client_id": "evil"}
    insert_unsealed(
        event="token.issued", at=now(), client_id="evil", actor="", body=json.dumps(record, indent=1)
    )
    pk = LedgerRecord.objects.unsealed().get().pk
    assert beat_seals() is None
    invalid = errors(caplog, "tokens.ledger_record_invalid")
    assert len(invalid) == 1 and invalid[0].record_id == pk
    assert "evil" not in caplog.text  # the record's id, never its content
    assert not TreeHead.objects.filter(tree_size__gt=13).exists()
    report = ledger.verify_stored_ledger(now=now())
    assert not report.ok
    assert f"unsealed record id {pk}" in report.summary() and "canonical" in report.summary()


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        '{"v":1,"event":"token.issued","at":"2030-01-01T00:00:00.000000Z","n":1.5}',
        '{"at":"2030-01-01T00:00:00.000000Z","event":"token.issued","v":1,"v":2}',
        '["v",1]',
        '{"client_id":"evil","event":"token.issued","v":1}',
    ],
    ids=["not-json", "float", "duplicate-member", "not-an-object", "no-at"],
)
def test_a_record_outside_the_ledgers_json_is_not_sealed(t1, body, caplog):
    insert_unsealed(event="token.issued", at=now(), client_id="evil", actor="", body=body)
    assert beat_seals() is None
    assert errors(caplog, "tokens.ledger_record_invalid")
    assert not TreeHead.objects.filter(tree_size__gt=13).exists()
    with pytest.raises(CommandError, match="unsealed record id"):
        call_command("audit", "verify", stdout=io.StringIO(), stderr=io.StringIO())


def test_records_before_a_poison_record_are_sealed_and_those_after_it_wait(t1):
    append(2, "before")
    insert_unsealed(event="token.issued", at=now(), client_id="x", actor="", body="garbage")
    append(2, "after")
    with pytest.raises(ledger.SealRefused, match="unsealed record id"):
        ledger.seal_tree_head(now=now())
    assert TreeHead.objects.order_by("-tree_size").first().tree_size == 15
    assert LedgerRecord.objects.unsealed().count() == 3


def test_a_record_whose_columns_disagree_with_its_body_is_not_sealed(t1):
    record = ledger.build_record(event="token.issued", at=now(), client_id="honest")
    insert_unsealed(
        event="token.issued",
        at=now(),
        client_id="shown-in-admin",
        actor="",
        body=canonical_json(record).decode(),
    )
    with pytest.raises(ledger.SealRefused, match="column"):
        ledger.seal_tree_head(now=now())


def test_a_record_dated_in_the_future_is_not_sealed(t1):
    """A head must not be older than a record it covers: such a record could never verify."""
    record = ledger.build_record(event="token.issued", at=now() + timedelta(days=1), client_id="svc")
    insert_unsealed(
        event="token.issued",
        at=now() + timedelta(days=1),
        client_id="svc",
        actor="",
        body=canonical_json(record).decode(),
    )
    with pytest.raises(ledger.SealRefused, match="future"):
        ledger.seal_tree_head(now=now())


def test_a_sealed_non_json_body_makes_export_and_verify_fail_with_a_message_not_a_traceback(t1, tmp_path):
    """Inserted as if sealed (leaf_index and leaf_hash set by the attacker): export and verify say which
    record it is and exit 1."""
    drop_delete_guard()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index = 4")
        cursor.execute(
            "INSERT INTO tokens_ledgerrecord (event, at, client_id, actor, body, leaf_index, leaf_hash)"
            " VALUES ('token.issued', %s, '', '', 'garbage', 4, %s)",
            [connection.ops.adapt_datetimefield_value(now()), leaf_hash(b"garbage").hex()],
        )
    with pytest.raises(CommandError, match=r"record 4 .*not JSON"):
        call_command("audit", "export", str(tmp_path / "export"), stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"record 4 .*not JSON"):
        call_command("audit", "verify", "--no-seal", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match=r"record 4 .*not JSON"):
        call_command("audit", "prove", "4", stdout=io.StringIO())


# --- a duplicated head ------------------------------------------------------------------------------------
def test_a_duplicated_identical_head_is_reported_as_a_duplicate(t1, tmp_path, capsys):
    """The same signed statement twice says nothing new: a warning, not "not consistent"."""
    append(1)
    second = ledger.seal_tree_head(now=now())
    assert second.consistency  # the proof from the head before: a copy cannot extend itself with it
    insert_head(second, timestamp=second.timestamp, signature=second.signature)
    report = ledger.verify_stored_ledger(now=now())
    assert report.ok, report.summary()
    assert any("appears twice" in warning for warning in report.warnings)
    status, printed = run_verifier(capsys, export(tmp_path, "export"), "--keys", pinned(tmp_path))
    assert status == 0 and "not consistent" not in printed and "appears twice" in printed
    append(1)
    assert ledger.seal_tree_head(now=now()).tree_size == 15


def test_forced_seals_in_the_same_millisecond_do_not_duplicate_a_head(t1):
    moment = now()
    first = ledger.seal_tree_head(now=moment, force=True)
    second = ledger.seal_tree_head(now=moment, force=True)
    assert second.timestamp > first.timestamp
    assert ledger.verify_stored_ledger(now=moment).ok


# --- what the sealer logs, and what it shows ------------------------------------------------------------
def test_the_sealed_log_line_names_the_root_hash_prefix(db, caplog):
    caplog.set_level(logging.INFO)
    append(1)
    head = ledger.seal_tree_head(now=now())
    sealed = [entry for entry in caplog.records if entry.getMessage() == "tokens.ledger_sealed"]
    assert sealed[-1].root_hash == head.root_hash[:16]
    assert sealed[-1].tree_size == head.tree_size


def test_the_admin_ledger_page_says_sealing_is_refused(t1, client, settings):
    from tests.conftest import sign_in
    from tests.factories import UserFactory

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert sign_in(client, UserFactory(is_staff=True, is_superuser=True)).status_code == 302
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_treehead")
    page = client.get("/admin/tokens/ledgerrecord/").content.decode()
    assert "Sealing is stopped" in page and "witness" in page
    response = client.post("/admin/tokens/ledgerrecord/seal/", follow=True)
    assert "witness" in response.content.decode()
