"""Behind UAA_TRUSTED_PROXIES reverse proxies, throttling and the audit ledger see the same client address."""

from __future__ import annotations

import json

from django.test import Client as HttpClient

from tokens.models import LedgerRecord


def test_the_ledger_records_the_address_the_trusted_proxy_saw(db, user, settings):
    settings.UAA_TRUSTED_PROXIES = 1
    HttpClient().post(
        "/accounts/login",
        {"email": user.email, "password": "wrong password"},
        HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9",
        REMOTE_ADDR="10.0.0.2",
    )
    record = LedgerRecord.objects.filter(event=LedgerRecord.Event.SIGN_IN_FAILED).get()
    assert json.loads(record.body)["ip"] == "203.0.113.9"


def test_without_trusted_proxies_a_forwarded_header_is_ignored(db, user, settings):
    settings.UAA_TRUSTED_PROXIES = 0
    HttpClient().post(
        "/accounts/login",
        {"email": user.email, "password": "wrong password"},
        HTTP_X_FORWARDED_FOR="198.51.100.7",
        REMOTE_ADDR="10.0.0.2",
    )
    record = LedgerRecord.objects.filter(event=LedgerRecord.Event.SIGN_IN_FAILED).get()
    assert json.loads(record.body)["ip"] == "10.0.0.2"
