"""Unsealed records cannot vanish (red team rte (c)).

A database-only attacker (any SQL, no ``UAA_KEK``) revoked-key scenario: the key is revoked, and before the
next seal (up to 10 s) the attacker deletes the ``key.revoked`` record and writes the key row back from an
earlier copy. A record that was never sealed is in no signed tree, so ``audit verify`` said OK and the key
was trusted again. Two fixes: a trigger refuses DELETE of an unsealed record, and of a sealed one not
below a recorded prune (migration 0011); and a key change is sealed as soon as it commits, so the window
in which the trigger is the only defence is one seal long. Dropping the trigger (the table's owner or a
superuser can) is outside what the database can refuse.
"""

from __future__ import annotations

import io
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tokens import ledger
from tokens.models import LedgerRecord, SigningKey
from tokens.rotation import revoke_signing_key, rotate_signing_keys
from tokens.verifier import canonical_json

TABLE = LedgerRecord._meta.db_table


def now() -> datetime:
    return timezone.now()


def sql_delete(where: str, args: list[int]) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE {where}", args)


def revocation_record(kid: str) -> LedgerRecord:
    (record,) = [r for r in LedgerRecord.objects.filter(event="key.revoked") if kid in r.body]
    return record


def insert_pruned(*, tree_size: object, leaf_index: int | None = None) -> None:
    """The attacker's own ``ledger.pruned`` record (they cannot sign its prune statement)."""
    record = {"v": 1, "event": "ledger.pruned", "at": ledger.rfc3339_utc(now())}
    body = canonical_json({**record, "detail": {"tree_size": tree_size}}).decode()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (event, at, client_id, actor, body, leaf_index, leaf_hash)"
            " VALUES ('ledger.pruned', %s, '', '', %s, %s, '')",
            [connection.ops.adapt_datetimefield_value(now()), body, leaf_index],
        )


@pytest.fixture
def keys(db, settings) -> None:
    settings.UAA_KEY_ROTATION_PERIOD = 3600
    settings.UAA_KEY_PREPUBLISH_SECONDS = 600
    rotate_signing_keys(now=now())
    ledger.seal_tree_head(now=now())


def test_an_unsealed_revocation_record_cannot_be_deleted(keys):
    """The red team's attack: within the seal interval the record went, and the restored row was trusted."""
    key = SigningKey.objects.active().for_algorithm("RS256").get()
    revoke_signing_key(kid=key.kid, now=now(), reason="leaked")  # no commit in this test: not sealed yet
    record = revocation_record(key.kid)
    assert record.leaf_index is None
    with pytest.raises(DatabaseError, match="append-only"):
        sql_delete("id = %s", [record.pk])
    assert revocation_record(key.kid).pk == record.pk


def test_no_unsealed_record_can_be_deleted_at_all(db):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    with pytest.raises(DatabaseError, match="append-only"):
        sql_delete("leaf_index IS NULL", [])
    assert LedgerRecord.objects.unsealed().count() == 1


def test_a_sealed_record_cannot_be_deleted_outside_a_prune(keys):
    assert LedgerRecord.objects.filter(leaf_index=0).exists()
    with pytest.raises(DatabaseError, match="append-only"):
        sql_delete("leaf_index = 0", [])
    with pytest.raises(DatabaseError, match="append-only"):
        sql_delete("leaf_index >= 0", [])


def test_a_forged_prune_record_lets_no_unsealed_record_go_and_stays_itself(keys):
    """An unsigned ``ledger.pruned`` the attacker inserts does not open the unsealed records, and cannot
    be removed again: it is evidence (the verifier checks its prune statement's signature)."""
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    insert_pruned(tree_size=10**9)
    with pytest.raises(DatabaseError, match="append-only"):
        sql_delete("leaf_index IS NULL", [])
    with pytest.raises(DatabaseError, match="append-only"):
        sql_delete("event = 'ledger.pruned'", [])


@pytest.mark.parametrize("tree_size", ["1000000", 10**9])
def test_a_prune_record_sealed_below_its_tree_size_covers_nothing(keys, tree_size):
    """Sealed by the attacker's own UPDATE (leaf_index may be set once) inside the range it claims, it
    would vouch for its own deletion; and a tree_size that is not an integer covers nothing."""
    insert_pruned(tree_size=tree_size, leaf_index=10**6 - 1 if tree_size == 10**9 else None)
    with pytest.raises(DatabaseError):
        sql_delete("leaf_index < 3", [])


def test_prune_deletes_below_its_own_record(db, tmp_path: Path):
    """manage.py audit prune keeps working: its ledger.pruned record is written first, then the delete."""
    for i in range(6):
        ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"svc-{i}")
    head = ledger.seal_tree_head(now=now())
    assert head is not None
    ledger.export_ledger(directory=tmp_path / "export", now=now())
    ledger.prune_ledger(tree_size=head.tree_size, export=tmp_path / "export", now=now())
    assert not LedgerRecord.objects.filter(leaf_index__lt=head.tree_size).exists()
    (pruned,) = LedgerRecord.objects.filter(event="ledger.pruned")
    assert pruned.leaf_index == head.tree_size  # sealed right after
    assert ledger.verify_stored_ledger(now=now()).ok


# --- (b) a key change is sealed as it commits ------------------------------------------------------------
def test_a_revocation_is_sealed_as_soon_as_it_commits(keys, django_capture_on_commit_callbacks):
    key = SigningKey.objects.active().for_algorithm("RS256").get()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        revoke_signing_key(kid=key.kid, now=now(), reason="leaked")
    assert callbacks
    assert revocation_record(key.kid).leaf_index is not None
    assert not LedgerRecord.objects.unsealed().exists()
    assert ledger.latest_tree_head().tree_size > revocation_record(key.kid).leaf_index


def test_a_refused_seal_does_not_undo_the_revocation(keys, django_capture_on_commit_callbacks, settings):
    Path(settings.UAA_AUDIT_WITNESS).write_text("not a witness")  # sealing refused from now on
    key = SigningKey.objects.active().for_algorithm("RS256").get()
    with django_capture_on_commit_callbacks(execute=True):
        revoke_signing_key(kid=key.kid, now=now(), reason="leaked")
    assert SigningKey.objects.get(kid=key.kid).state == SigningKey.State.REVOKED
    assert revocation_record(key.kid).leaf_index is None  # beat seals it once the witness is fixed


@pytest.mark.django_db(transaction=True)
def test_the_unsealed_window_of_a_committed_revocation_is_one_seal(settings):
    """Measured for the report: from the revocation's return (its commit) to its record being sealed."""
    settings.UAA_KEY_ROTATION_PERIOD = 3600
    settings.UAA_KEY_PREPUBLISH_SECONDS = 600
    rotate_signing_keys(now=now())
    key = SigningKey.objects.active().for_algorithm("RS256").get()
    started = time.perf_counter()
    revoke_signing_key(kid=key.kid, now=now(), reason="leaked")
    returned = time.perf_counter()
    assert revocation_record(key.kid).leaf_index is not None  # sealed before revoke_signing_key returned
    print(f"revoke_signing_key including its seal: {(returned - started) * 1000:.1f} ms")
    call_command("audit", "verify", "--no-seal", stdout=io.StringIO())
