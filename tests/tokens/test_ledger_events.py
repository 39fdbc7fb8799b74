"""Event names: defined once (``LedgerRecord.Event``), with no ``choices`` on the column, so that a new
event kind needs no migration; the admin still filters and labels by them."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.conftest import sign_in
from tests.factories import UserFactory
from tokens import ledger
from tokens.ledger.records import rfc3339_utc, timestamp_ms
from tokens.models import LedgerRecord


@pytest.fixture
def admin_browser(db, settings) -> HttpClient:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    staff = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    assert sign_in(http, staff).status_code == HTTPStatus.FOUND
    return http


def test_the_event_column_has_no_choices_so_a_new_event_needs_no_migration():
    assert not LedgerRecord._meta.get_field("event").choices


def test_every_recorded_account_event_has_a_name():
    assert LedgerRecord.Event.ACCOUNT_NOT_BEFORE == "account.not_before"
    assert LedgerRecord.Event.MFA_VERIFIED == "mfa.verified"


def test_an_event_is_labelled_by_its_definition_or_else_by_its_name():
    assert LedgerRecord(event="token.issued").event_label == "token issued"
    assert LedgerRecord(event="written.elsewhere").event_label == "written.elsewhere"


def test_the_admin_filters_by_every_defined_event_and_shows_its_label(admin_browser):
    ledger.append_record(event=LedgerRecord.Event.MFA_VERIFIED, sub="user-1")
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc-a")
    page = admin_browser.get("/admin/tokens/ledgerrecord/").content.decode()
    for label in LedgerRecord.Event.labels:
        assert str(label).replace("'", "&#x27;") in page  # every event is offered in the filter
    response = admin_browser.get("/admin/tokens/ledgerrecord/?event=mfa.verified")
    assert response.status_code == HTTPStatus.OK
    filtered = response.content.decode()
    assert "user-1" in filtered and "svc-a" not in filtered
    assert "MFA factor re-entered (step-up)" in filtered


def test_record_times_are_rfc3339_utc_and_head_times_milliseconds():
    at = datetime(2030, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert rfc3339_utc(at) == "2030-01-01T12:00:00.250000Z"
    assert timestamp_ms(at) == 1893499200250
