"""/api/v1/audit: records (filters, cursor pages), the signed tree head, inclusion and consistency proofs.

Attackers: a token without uaa.audit.read reading who did what; a caller sending filters or cursors built
to break the query (a forged cursor, a naive date, a huge index) for a 500; an auditor being shown a proof
that does not check out. The proofs are checked here with tokens/verifier.py, as an auditor checks them.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.conf import settings
from django.utils import timezone

from tests.api.conftest import call
from tokens import ledger
from tokens.ledger.audit_keys import audit_jwks
from tokens.models import LedgerRecord
from tokens.verifier import load_keys, verify_consistency, verify_inclusion, verify_tree_head

AUDIT = "/api/v1/audit"


@pytest.fixture
def auditor(admin_token):
    return admin_token("uaa.audit.read")


def test_records_need_the_audit_scope(admin_token):
    response = call("GET", f"{AUDIT}/records", admin_token("uaa.clients.read"))
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["scope"] == "uaa.audit.read"


def test_records_filter_by_event_client_actor_and_time(auditor):
    now = timezone.now()
    ledger.append_record(
        event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc-a", at=now - timedelta(hours=2)
    )
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc-b", sub="u1")
    ledger.append_record(event=LedgerRecord.Event.CLIENT_REGISTERED, client_id="svc-a", sub="admin")
    by_event = call("GET", f"{AUDIT}/records?event=token.issued", auditor).json()["results"]
    assert {"svc-a", "svc-b"} <= {r["client_id"] for r in by_event}  # and the auditor's own token
    assert {r["event"] for r in by_event} == {"token.issued"}
    by_client = call("GET", f"{AUDIT}/records?client_id=svc-a", auditor).json()["results"]
    assert [r["event"] for r in by_client] == ["client.registered", "token.issued"]  # newest first
    by_actor = call("GET", f"{AUDIT}/records?actor=u1", auditor).json()["results"]
    assert [r["record"]["sub"] for r in by_actor] == ["u1"]
    since = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    recent = call("GET", f"{AUDIT}/records?client_id=svc-a&since={since}", auditor).json()["results"]
    assert [r["event"] for r in recent] == ["client.registered"]
    old = call("GET", f"{AUDIT}/records?client_id=svc-a&until={since}", auditor).json()["results"]
    assert [r["event"] for r in old] == ["token.issued"]


def test_records_come_in_cursor_pages_that_cover_everything_once(auditor):
    for n in range(7):
        ledger.append_record(event=LedgerRecord.Event.CODE_REPLAYED, client_id=f"page-{n}")
    seen: list[str] = []
    url = f"{AUDIT}/records?event=code.replayed&page_size=3"
    while url:
        page = call("GET", url, auditor).json()
        seen += [r["client_id"] for r in page["results"]]
        url = page["next"]
    assert seen == [f"page-{n}" for n in reversed(range(7))]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=forged", "cursor"),
        ("cursor=" + base64.b64encode(b"p=1'; DROP TABLE x").decode(), "cursor"),
        ("since=yesterday", "since"),
        ("since=2026-01-01T00:00:00", "since"),  # no offset: whose midnight?
        ("until=2026-13-45T99:00:00Z", "until"),
    ],
)
def test_bad_filters_are_400(auditor, query, field):
    response = call("GET", f"{AUDIT}/records?{query}", auditor)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert field in response.json()["fields"]


def test_no_head_yet_is_404(auditor):
    response = call("GET", f"{AUDIT}/head", auditor)
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_the_head_verifies_with_the_audit_keys(auditor):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    ledger.seal_tree_head(now=timezone.now())
    head = call("GET", f"{AUDIT}/head", auditor).json()
    assert head["issuer"] == settings.UAA_ISSUER
    assert verify_tree_head(head, issuer=settings.UAA_ISSUER, keys=load_keys(audit_jwks())) is None


def test_inclusion_and_consistency_proofs_check_out_offline(auditor):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="first")
    small = ledger.seal_tree_head(now=timezone.now())
    for n in range(4):
        ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"later-{n}")
    big = ledger.seal_tree_head(now=timezone.now())
    assert small is not None and big is not None
    record = LedgerRecord.objects.get(client_id="first")
    proof = call("GET", f"{AUDIT}/inclusion?index={record.leaf_index}", auditor).json()
    assert proof["tree_head"]["tree_size"] == big.tree_size
    assert proof["leaf_hash"] == record.leaf_hash
    assert verify_inclusion(
        index=record.leaf_index,
        size=big.tree_size,
        leaf=bytes.fromhex(record.leaf_hash),
        proof=[bytes.fromhex(node) for node in proof["inclusion"]],
        root=bytes.fromhex(big.root_hash),
    )
    url = f"{AUDIT}/consistency?first={small.tree_size}&second={big.tree_size}"
    consistency = call("GET", url, auditor).json()["consistency"]
    assert verify_consistency(
        first=small.tree_size,
        second=big.tree_size,
        first_root=bytes.fromhex(small.root_hash),
        second_root=bytes.fromhex(big.root_hash),
        proof=[bytes.fromhex(node) for node in consistency],
    )


@pytest.mark.parametrize(
    "query",
    [
        "inclusion?index=999999999999",
        "inclusion?index=-1",
        "inclusion?index=abc",
        "inclusion",
        "inclusion?index=0&tree_size=77",
        "consistency?first=1&second=999",
        "consistency?first=5&second=2",
        "consistency?first=0&second=1",
        "consistency?first=1",
    ],
)
def test_bad_proof_requests_are_4xx_never_500(auditor, query):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    ledger.seal_tree_head(now=timezone.now())
    response = call("GET", f"{AUDIT}/{query}", auditor)
    assert response.status_code in (HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND), response.content


@pytest.mark.parametrize(
    ("query", "operation"),
    [
        ("head", "/api/v1/audit/head"),
        ("inclusion?index=0", "/api/v1/audit/inclusion"),
        ("consistency?first=1&second=2", "/api/v1/audit/consistency"),
        ("export", "/api/v1/audit/export"),
    ],
)
def test_each_404_of_the_audit_routes_is_in_the_document(auditor, query, operation):
    """A status the document does not list breaks every client generated from it (schemathesis'
    status_code_conformance): before any seal these routes answer 404, which only paths with an id
    listed."""
    import yaml

    from tests.api.test_api_openapi import COMMITTED

    response = call("GET", f"{AUDIT}/{query}", auditor)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "not_found"
    document = yaml.safe_load(COMMITTED.read_text())
    assert "404" in document["paths"][operation]["get"]["responses"]
