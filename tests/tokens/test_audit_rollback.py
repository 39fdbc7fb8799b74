"""A database rolled back behind the sealer's witness is neither exported nor published (red team rte).

The attacker writes the database (DELETE of sealed records and heads included, once they have dropped the
delete guard as a real attacker would) but cannot sign. The sealer's witness (tokens/witness.py, a file
outside the database) holds the last head it signed. After the attacker cuts the ledger back (18 → 13
here, 86 → 56 in the red team's run) the sealer refuses to seal; before these fixes ``audit export``
still wrote the cut ledger and exited 0, and ``/.well-known/audit-head.json`` served the size-13 head with
200. RFC 9162 §2.1.4: a later tree extends every earlier one; §8.1: a monitor compares heads it saw. The
export and the published head are what auditors and monitors save, so neither may contradict the witness.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime
from http import HTTPStatus
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from tokens import ledger, witness
from tokens.models import LedgerRecord, TreeHead

URL = "/.well-known/audit-head.json"


def now() -> datetime:
    return timezone.now()


def append(count: int, prefix: str = "svc") -> None:
    for i in range(count):
        ledger.append_record(
            event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"{prefix}-{i}", jti=f"{prefix}-jti-{i}"
        )


def drop_delete_guard() -> None:
    """What the attacker does first: the trigger refusing DELETEs is dropped (the table's owner may)."""
    on = " ON tokens_ledgerrecord" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER tokens_ledgerrecord_no_delete{on}")


def cut_back_to(size: int) -> None:
    """The attacker removes every head after ``size`` and the records they cover."""
    drop_delete_guard()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_treehead WHERE tree_size > %s", [size])
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index >= %s", [size])


@pytest.fixture
def cut(db) -> tuple[int, int]:
    """Sealed to 13, then to 18 (the witness holds 18); the database cut back to 13."""
    append(12, "early")
    early = ledger.seal_tree_head(now=now())
    assert early is not None and early.tree_size == 13
    append(5, "late")
    late = ledger.seal_tree_head(now=now())
    assert late is not None and late.tree_size == 18
    known = witness.load()
    assert known is not None and known["tree_size"] == 18
    cut_back_to(13)
    return 13, 18


def export_command(directory: Path) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("audit", "export", str(directory), stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


# --- (a) the export --------------------------------------------------------------------------------------
def test_the_export_of_a_ledger_cut_behind_the_witness_is_refused(cut, tmp_path):
    """The red team's run: the sealer refused, but the export exited 0 with the cut ledger (56 of 86)."""
    database_size, witness_size = cut
    directory = tmp_path / "E3"
    with pytest.raises(CommandError) as refused:
        export_command(directory)
    message = str(refused.value)
    assert "nothing exported" in message
    assert f"size {witness_size}" in message and f"size {database_size}" in message
    assert not (directory / "manifest.json").exists()


def test_the_export_of_a_rewritten_history_of_the_witness_size_or_more_is_refused(cut, tmp_path, settings):
    """A sealer without the witness file (or a restore sealed before anyone looked) signs another history
    past the witness's size: the root at the witness's size differs, and the export says so."""
    primary = settings.UAA_AUDIT_WITNESS
    settings.UAA_AUDIT_WITNESS = str(tmp_path / "another-sealer.json")
    append(6, "rewritten")
    assert ledger.seal_tree_head(now=now()).tree_size == 19
    settings.UAA_AUDIT_WITNESS = primary
    with pytest.raises(CommandError, match=r"nothing exported: .*size 18.*do not extend"):
        export_command(tmp_path / "export")
    assert not (tmp_path / "export" / "manifest.json").exists()


def test_an_export_of_a_ledger_that_extends_the_witness_is_written(db, tmp_path):
    append(3)
    ledger.seal_tree_head(now=now())
    append(2)  # unsealed: the export seals them first
    printed = export_command(tmp_path / "export")
    assert "exported 6 records" in printed
    assert (tmp_path / "export" / "manifest.json").exists()


def test_an_unsealable_record_stops_sealing_but_not_the_export_of_what_is_sealed(db, tmp_path):
    """A record the sealer will not sign (here: not canonical) is no cut of the sealed ledger: the export
    of what is sealed goes on, and says sealing was refused."""
    append(3)
    ledger.seal_tree_head(now=now())
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tokens_ledgerrecord (event, at, client_id, actor, body, leaf_hash)"
            " VALUES ('token.issued', %s, '', '', '{\"v\": 1}', '')",
            [connection.ops.adapt_datetimefield_value(now())],
        )
    printed = export_command(tmp_path / "export")
    assert "sealing refused" in printed and "exported 4 records" in printed


# --- (b) the published head ------------------------------------------------------------------------------
def test_a_head_behind_the_witness_is_not_published(cut, client, caplog):
    """The red team fetched 200 with the size-56 head while the witness held 86."""
    caplog.set_level(logging.INFO)
    response = client.get(URL)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "error": "temporarily_unavailable",
        "error_description": "The latest tree head cannot be verified; try again later.",
    }
    body = response.content.decode()
    assert "witness" not in body and "13" not in body and "18" not in body
    assert client.get(URL).status_code == HTTPStatus.SERVICE_UNAVAILABLE
    logged = [
        entry
        for entry in caplog.records
        if entry.getMessage() == "tokens.ledger_head_unpublished" and entry.levelno == logging.ERROR
    ]
    assert len(logged) == 1  # once per interval, not once per request
    assert (logged[0].witness_size, logged[0].database_size) == (18, 13)


def test_the_refusal_is_logged_again_after_the_interval(cut, client, caplog, monkeypatch):
    from tokens.ledger import sealing

    caplog.set_level(logging.INFO)
    client.get(URL)
    monkeypatch.setattr(sealing, "UNPUBLISHED_LOG_INTERVAL", 0)
    client.get(URL)
    logged = [entry for entry in caplog.records if entry.getMessage() == "tokens.ledger_head_unpublished"]
    assert len(logged) == 2


def test_a_rewritten_head_past_the_witness_is_not_published(cut, client, tmp_path, settings):
    primary = settings.UAA_AUDIT_WITNESS
    settings.UAA_AUDIT_WITNESS = str(tmp_path / "another-sealer.json")
    append(6, "rewritten")
    assert ledger.seal_tree_head(now=now()).tree_size == 19
    settings.UAA_AUDIT_WITNESS = primary
    assert client.get(URL).status_code == HTTPStatus.SERVICE_UNAVAILABLE


def test_audit_head_refuses_a_head_behind_the_witness(cut):
    with pytest.raises(CommandError, match="size 18"):
        call_command("audit", "head", stdout=io.StringIO())


def test_a_head_sealed_after_the_witness_was_written_is_published(db, client):
    """The witness lags the database by one head between the commit and the file write: a head that
    extends the witness (its records reproduce the new root) is published."""
    append(2)
    first = ledger.seal_tree_head(now=now())
    saved = witness.load()
    append(3)
    second = ledger.seal_tree_head(now=now())
    assert second.tree_size > first.tree_size
    Path(settings.UAA_AUDIT_WITNESS).unlink()
    assert witness.advance(saved, frontier=saved["frontier"])  # back to the first head
    response = client.get(URL)
    assert response.status_code == HTTPStatus.OK
    assert response.json()["tree_size"] == second.tree_size
    assert TreeHead.objects.count() == 2
