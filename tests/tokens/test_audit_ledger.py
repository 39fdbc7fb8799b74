"""The audit ledger: append, seal, sign, prove, export (RFC 9162 §2.1, §4.10; docs/audit-ledger.md)."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from freezegun import freeze_time

from tokens import ledger
from tokens.envelope import new_kek
from tokens.ledger import sealing
from tokens.models import AppendOnly, AuditKey, LedgerRecord, TreeHead
from tokens.verifier import (
    canonical_json,
    leaf_hash,
    load_keys,
    verify_consistency,
    verify_export,
    verify_proof,
    verify_tree_head,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def append(count: int, **fields: Any) -> list[LedgerRecord]:
    return [
        ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"client-{i}", **fields)
        for i in range(count)
    ]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("audit", *args, stdout=out)
    return out.getvalue()


def test_a_record_is_canonical_json_without_empty_members(db):
    """RFC 8785: the stored body is the canonical serialization, so any implementation rehashes it."""
    record = ledger.append_record(
        event=LedgerRecord.Event.TOKEN_ISSUED,
        at=T0,
        client_id="svc",
        scope=["read"],
        aud=["https://api"],
        jti="abc",
        hashes={"access_token": "00" * 32},
        ip="192.0.2.1",
        detail={},
    )
    body = json.loads(record.body)
    assert canonical_json(body).decode() == record.body
    assert body == {
        "v": 1,
        "event": "token.issued",
        "at": "2030-01-01T00:00:00.000000Z",
        "client_id": "svc",
        "scope": ["read"],
        "aud": ["https://api"],
        "jti": "abc",
        "hashes": {"access_token": "00" * 32},
        "ip": "192.0.2.1",
    }
    assert (record.event, record.client_id, record.actor) == ("token.issued", "svc", "")
    assert record.leaf_index is None


def test_a_rolled_back_transaction_leaves_no_record(db):
    """No record without its event: the append is part of the caller's transaction."""
    with pytest.raises(RuntimeError), transaction.atomic():
        append(1)
        raise RuntimeError("the grant failed")
    assert not LedgerRecord.objects.exists()


def test_records_are_append_only(db):
    """A record is never changed through the ORM, nor by an UPDATE behind its back (a trigger refuses)."""
    (record,) = append(1)
    record.body = record.body.replace("client-0", "client-X")
    with pytest.raises(AppendOnly):
        record.save()
    with pytest.raises(AppendOnly):
        record.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerRecord.objects.filter(pk=record.pk).update(body="{}")
    ledger.seal_tree_head(now=T0)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerRecord.objects.filter(pk=record.pk).update(leaf_index=99)


def test_sealing_gives_leaf_indexes_in_id_order_and_signs_the_root(db, client):
    """RFC 9162 §4.10: the tree head signs size, root and timestamp; the audit key is published."""
    records = append(5)
    head = ledger.seal_tree_head(now=T0)
    assert head is not None
    # The first seal created the audit key, and its record is sealed with the rest.
    sealed = list(LedgerRecord.objects.in_leaf_order())
    assert [r.event for r in sealed] == ["token.issued"] * 5 + ["audit_key.created"]
    assert [r.pk for r in sealed[:5]] == [r.pk for r in records]
    assert [r.leaf_index for r in sealed] == list(range(6))
    assert [r.leaf_hash for r in sealed] == [leaf_hash(r.body.encode()).hex() for r in sealed]
    assert head.tree_size == 6
    assert head.timestamp == int(T0.timestamp() * 1000)

    response = client.get("/.well-known/audit-keys.json")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/jwk-set+json"
    keys = load_keys(response.json())
    assert list(keys) == [head.audit_key_id]
    assert verify_tree_head(head.as_dict(), issuer="http://testserver", keys=keys) is None


def test_with_nothing_new_no_head_is_signed_unless_forced(db):
    append(2)
    first = ledger.seal_tree_head(now=T0)
    assert ledger.seal_tree_head(now=T0 + timedelta(seconds=10)) is None
    forced = ledger.seal_tree_head(now=T0 + timedelta(seconds=20), force=True)
    assert forced is not None and first is not None
    assert (forced.tree_size, forced.root_hash) == (first.tree_size, first.root_hash)
    assert forced.timestamp > first.timestamp
    assert TreeHead.objects.count() == 2


def test_each_head_carries_a_consistency_proof_from_the_previous_one(db):
    """RFC 9162 §2.1.4: every later tree extends every earlier one."""
    heads = []
    for round_ in range(4):
        append(round_ * 3 + 1)
        heads.append(ledger.seal_tree_head(now=T0 + timedelta(seconds=round_)))
    for old, new in itertools.pairwise(heads):
        assert verify_consistency(
            first=old.tree_size,
            second=new.tree_size,
            first_root=bytes.fromhex(old.root_hash),
            second_root=bytes.fromhex(new.root_hash),
            proof=[bytes.fromhex(node) for node in new.consistency],
        )
    proof = ledger.consistency_proof(first=heads[0].tree_size, second=heads[-1].tree_size)
    assert verify_consistency(
        first=heads[0].tree_size,
        second=heads[-1].tree_size,
        first_root=bytes.fromhex(heads[0].root_hash),
        second_root=bytes.fromhex(heads[-1].root_hash),
        proof=[bytes.fromhex(node) for node in proof],
    )


def test_large_backlogs_are_sealed_in_batches_each_with_a_signed_head(db, monkeypatch):
    monkeypatch.setattr(sealing, "SEAL_BATCH", 4)  # the batch size lives where sealing does
    append(9)
    head = ledger.seal_tree_head(now=T0)
    assert head is not None and head.tree_size == 10
    assert list(TreeHead.objects.order_by("tree_size").values_list("tree_size", flat=True)) == [4, 8, 10]
    append(9)
    assert ledger.seal_tree_head(now=T0, max_batches=2).tree_size == 18  # one run is bounded ...
    assert ledger.seal_tree_head(now=T0).tree_size == 19  # ... and the next carries on
    assert not LedgerRecord.objects.unsealed().exists()
    assert ledger.verify_stored_ledger(now=T0).ok


def test_audit_prove_prints_an_inclusion_proof_the_standalone_verifier_accepts(db, tmp_path, client):
    """RFC 9162 §2.1.3: `manage.py audit prove RECORD` against the latest signed tree head."""
    append(7)
    run("seal")
    proof = json.loads(run("prove", "3"))
    assert proof["index"] == 3 and proof["record"]["client_id"] == "client-3"
    jwks = client.get("/.well-known/audit-keys.json").json()
    assert verify_proof(proof, jwks) is None
    proof["record"]["client_id"] = "client-4"
    assert verify_proof(proof, jwks) == "record 3 is not included in the tree head of size 8"
    with pytest.raises(CommandError):
        run("prove", "99")


def test_audit_export_writes_files_the_standalone_verifier_checks(db, tmp_path):
    """The export is everything an auditor needs: records, signed tree heads, public audit keys."""
    append(3)
    run("seal")
    append(4)
    out = run("export", str(tmp_path / "export"))
    assert "exported 8 records and 2 tree heads" in out  # 7 and the audit key's creation
    assert sorted(path.name for path in (tmp_path / "export").iterdir()) == [
        "audit-keys.json",
        "manifest.json",
        "records.jsonl",
        "tree-heads.jsonl",
    ]
    report = verify_export(tmp_path / "export")
    assert report.ok, report.errors
    assert (report.records, report.tree_heads, report.keys, report.tree_size) == (8, 2, 1, 8)
    assert "OK: 8 records" in run("verify")


def test_a_rotated_audit_key_signs_new_heads_and_the_old_one_stays_published(db, tmp_path, client):
    """Rotation: old heads keep verifying with the retired key, which is never unpublished."""
    append(2)
    first = ledger.seal_tree_head(now=T0)
    out = run("rotate-key")
    append(2)
    second = ledger.seal_tree_head(now=T0 + timedelta(seconds=1))
    assert first.audit_key_id != second.audit_key_id
    assert second.audit_key_id in out
    assert AuditKey.objects.get(kid=first.audit_key_id).state == AuditKey.State.RETIRED
    published = {key["kid"] for key in client.get("/.well-known/audit-keys.json").json()["keys"]}
    assert published == {first.audit_key_id, second.audit_key_id}
    events = list(LedgerRecord.objects.in_leaf_order().values_list("event", flat=True))
    assert events.count("audit_key.created") == 2 and events.count("audit_key.retired") == 1
    with freeze_time(T0 + timedelta(seconds=2)):  # the export is made after the heads it holds
        run("export", str(tmp_path / "export"))
    assert verify_export(tmp_path / "export").ok


def test_audit_keys_are_wrapped_under_the_kek_and_follow_a_kek_rotation(db, settings):
    """Like signing keys: nothing in the database alone yields the private key; `rewrap_signing_keys`
    moves audit keys to a new KEK too, after which the old KEK can go."""
    append(1)
    ledger.seal_tree_head(now=T0)
    key = AuditKey.objects.get()
    assert b"PRIVATE" not in bytes(key.wrapped_private_key)
    old = settings.UAA_KEK
    settings.UAA_KEK = f"{new_kek()},{old}"
    call_command("rewrap_signing_keys", stdout=io.StringIO())
    settings.UAA_KEK = settings.UAA_KEK.split(",")[0]
    from tokens.ledger import audit_keys

    audit_keys._private.clear()
    append(1)
    head = ledger.seal_tree_head(now=T0 + timedelta(seconds=1))
    assert head is not None and head.audit_key_id == key.kid
    assert ledger.verify_stored_ledger(now=T0).ok


def test_the_seal_task_is_in_the_beat_schedule_every_ten_seconds(db):
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="tokens.seal_audit_ledger")
    assert (task.interval.every, task.interval.period) == (10, "seconds")


def test_the_seal_task_seals(db):
    from tokens.tasks import seal_audit_ledger_task

    append(2)
    assert seal_audit_ledger_task.apply().get() == 3
    assert seal_audit_ledger_task.apply().get() is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_sealers_never_give_one_index_twice():
    """Sealing is serialized by a row lock on the audit key; appends take no lock at all."""
    import threading

    from django.db import connections

    append(1)
    ledger.seal_tree_head(now=T0)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"t{n}-{i}")
                ledger.seal_tree_head(now=T0 + timedelta(seconds=n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    ledger.seal_tree_head(now=T0 + timedelta(seconds=9))
    indexes = sorted(LedgerRecord.objects.values_list("leaf_index", flat=True))
    assert indexes == list(range(len(indexes)))
    assert ledger.verify_stored_ledger(now=T0).ok
