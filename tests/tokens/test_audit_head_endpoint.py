"""`/.well-known/audit-head.json`: the latest signed tree head, for witnesses and auditors to save.

RFC 9162 §8.1: monitors and auditors check a log against tree heads they obtained themselves; §8.1.4
(gossip): comparing heads between parties shows a log that forked its history. Anyone may fetch the head,
keep it, and later run the verifier with it as ``--trusted-head``.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from tokens import ledger
from tokens.ledger.audit_keys import audit_jwks
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import load_keys, verify_tree_head

URL = "/.well-known/audit-head.json"


@pytest.fixture
def head(db) -> TreeHead:
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    sealed = ledger.seal_tree_head(now=timezone.now())
    assert sealed is not None
    return sealed


def test_the_latest_signed_head_is_published_and_verifies_with_the_audit_keys(head, client):
    response = client.get(URL)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    document = response.json()
    assert document["tree_size"] == head.tree_size == 2
    assert document["root_hash"] == head.root_hash
    assert document["issuer"] == settings.UAA_ISSUER
    assert verify_tree_head(document, issuer=settings.UAA_ISSUER, keys=load_keys(audit_jwks())) is None
    assert response["Cache-Control"] == "public, max-age=5"
    assert response["Access-Control-Allow-Origin"] == "*"


def test_it_follows_the_ledger(head, client):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    ledger.seal_tree_head(now=timezone.now())
    assert client.get(URL).json()["tree_size"] == 3


def test_a_saved_copy_is_a_trusted_head_for_the_verifier(head, client, tmp_path, capsys):
    from tokens.verifier import canonical_json, main

    (tmp_path / "head.json").write_bytes(client.get(URL).content)
    (tmp_path / "keys.json").write_bytes(canonical_json(audit_jwks()))
    ledger.write_export(ledger.collect_export(now=timezone.now()), tmp_path / "export")
    status = main(
        [
            str(tmp_path / "export"),
            "--keys",
            str(tmp_path / "keys.json"),
            "--trusted-head",
            str(tmp_path / "head.json"),
        ]
    )
    assert status == 0, capsys.readouterr()


def test_an_unchanged_head_is_not_modified(head, client):
    etag = client.get(URL)["ETag"]
    assert client.get(URL, HTTP_IF_NONE_MATCH=etag).status_code == HTTPStatus.NOT_MODIFIED


def test_head_and_get_only(head, client):
    assert client.head(URL).status_code == HTTPStatus.OK
    assert client.post(URL).status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_before_the_first_seal_there_is_nothing_to_publish(db, client):
    response = client.get(URL)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "not_found"


def test_a_head_row_with_a_forged_signature_is_not_published(head, client):
    """A database writer inserts a later head: nobody could verify it, so it is not what we publish."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tokens_treehead (tree_size, root_hash, timestamp, audit_key_id, signature, frontier,"
            " consistency) VALUES (%s, %s, %s, %s, 'x', %s, %s)",
            [99, "00" * 32, head.timestamp + 1, head.audit_key_id, json.dumps([]), json.dumps([])],
        )
    response = client.get(URL)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"] == "temporarily_unavailable"
    assert "99" not in response.content.decode()
