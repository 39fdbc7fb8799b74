"""The audit ledger in Django admin: read-only browser, the current signed tree head, "verify now"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from http import HTTPStatus

import pytest
from django.db import connection
from django.test import Client as HttpClient

from tests.conftest import sign_in
from tests.factories import UserFactory
from tokens import ledger
from tokens.models import LedgerRecord, TreeHead

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def admin_browser(db, settings) -> HttpClient:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    staff = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    assert sign_in(http, staff).status_code == HTTPStatus.FOUND
    return http


def records(event: str) -> list[dict]:
    return [
        json.loads(body) for body in LedgerRecord.objects.filter(event=event).values_list("body", flat=True)
    ]


def test_the_browser_lists_records_and_filters_by_event_client_actor_and_time(admin_browser):
    ledger.append_record(
        event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc-a", grant_type="client_credentials"
    )
    ledger.append_record(event=LedgerRecord.Event.TOKEN_REVOKED, client_id="svc-b", sub="user-7")
    page = admin_browser.get("/admin/tokens/ledgerrecord/").content.decode()
    assert "svc-a" in page and "svc-b" in page and "client_credentials" in page
    by_event = admin_browser.get("/admin/tokens/ledgerrecord/?event=token.revoked").content.decode()
    assert "svc-b" in by_event and "svc-a" not in by_event
    by_client = admin_browser.get("/admin/tokens/ledgerrecord/?q=svc-a").content.decode()
    assert "svc-a" in by_client and "svc-b" not in by_client
    by_actor = admin_browser.get("/admin/tokens/ledgerrecord/?actor=user-7").content.decode()
    assert "svc-b" in by_actor and "svc-a" not in by_actor
    today = datetime.now(UTC)
    by_day = admin_browser.get(
        f"/admin/tokens/ledgerrecord/?at__year={today.year}&at__month={today.month}&at__day={today.day}"
    )
    assert by_day.status_code == HTTPStatus.OK and "svc-a" in by_day.content.decode()
    not_sealed = admin_browser.get("/admin/tokens/ledgerrecord/?sealed=no").content.decode()
    assert "svc-a" in not_sealed


def test_records_cannot_be_added_changed_or_deleted_in_admin(admin_browser):
    record = ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    assert admin_browser.get("/admin/tokens/ledgerrecord/add/").status_code == HTTPStatus.FORBIDDEN
    detail = admin_browser.get(f"/admin/tokens/ledgerrecord/{record.pk}/change/")
    assert detail.status_code == HTTPStatus.OK
    assert "&quot;client_id&quot;: &quot;svc&quot;" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    response = admin_browser.post(f"/admin/tokens/ledgerrecord/{record.pk}/delete/", {"post": "yes"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert LedgerRecord.objects.filter(pk=record.pk).exists()


def test_the_current_signed_tree_head_is_shown(admin_browser):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    head = ledger.seal_tree_head(now=T0)
    page = admin_browser.get("/admin/tokens/ledgerrecord/").content.decode()
    assert "Current signed tree head" in page
    for text in (head.root_hash, head.audit_key_id, head.signature, "2030-01-01 00:00:00"):
        assert text in page
    assert "0 records not sealed yet" in page


def test_verify_now_reports_success_and_names_a_tampered_record(admin_browser):
    for i in range(3):
        ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"svc-{i}")
    admin_browser.post("/admin/tokens/ledgerrecord/seal/")
    response = admin_browser.post("/admin/tokens/ledgerrecord/verify/", follow=True)
    assert "OK: 5 records, 1 signed tree heads" in response.content.decode()  # with sign-in and key creation

    suffix = " ON tokens_ledgerrecord" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER tokens_ledgerrecord_append_only" + suffix)
    record = LedgerRecord.objects.get(client_id="svc-1")
    LedgerRecord.objects.filter(pk=record.pk).update(body=record.body.replace("svc-1", "svc-X"))
    response = admin_browser.post("/admin/tokens/ledgerrecord/verify/", follow=True)
    page = response.content.decode()
    index = record.leaf_index
    assert f"FAILED (first bad record: {index})" in page and f"record {index} was altered" in page
    assert (
        admin_browser.get("/admin/tokens/ledgerrecord/verify/").status_code == HTTPStatus.METHOD_NOT_ALLOWED
    )


def test_the_audit_key_can_be_rotated_from_admin(admin_browser):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    first = ledger.seal_tree_head(now=T0)
    admin_browser.post(
        "/admin/tokens/auditkey/", {"action": "rotate", "_selected_action": [first.audit_key.pk]}
    )
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    second = ledger.seal_tree_head(now=T0)
    assert second.audit_key_id != first.audit_key_id
    assert TreeHead.objects.count() == 2
    page = admin_browser.get("/admin/tokens/treehead/").content.decode()
    assert first.root_hash in page and second.root_hash in page


def test_a_bulk_delete_in_admin_records_each_deleted_object(admin_browser):
    """Django logs multi-object deletions without post_save: the audited action records them itself."""
    victims = [UserFactory() for _ in range(2)]
    single = UserFactory()
    response = admin_browser.post(
        "/admin/accounts/user/",
        {"action": "delete_selected", "_selected_action": [user.pk for user in victims], "post": "yes"},
    )
    assert response.status_code == HTTPStatus.FOUND
    admin_browser.post(
        "/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [single.pk], "post": "yes"}
    )
    deleted = sorted(record["detail"]["object_id"] for record in records("admin.change"))
    assert deleted == sorted(str(user.pk) for user in [*victims, single])
    assert {record["detail"]["action"] for record in records("admin.change")} == {"delete"}
