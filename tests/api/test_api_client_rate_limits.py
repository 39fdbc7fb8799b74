"""A client's own rate limit (``rate_limit``) through /api/v1/clients (issue 13 item 4).

Attacker: a caller sending a limit the server cannot store or would misread ("5", true, 1.5, -1, a number
past a 32-bit column) hoping for a 500 or a silently different limit. Every change is in the ledger, by
field name, like any other change of a client.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest

from tests.api.conftest import ALL_ADMIN, call, client_credentials_token
from tests.staff import ledger_records
from tokens.models import LedgerRecord
from uaa.oauth.models import Client

CLIENTS = "/api/v1/clients"


@pytest.fixture
def admin(admin_client):
    registered = admin_client()
    return registered, client_credentials_token(registered, ALL_ADMIN)


def test_a_client_shows_its_limit_null_by_default(admin, service_client):
    _, token = admin
    response = call("GET", f"{CLIENTS}/{service_client.client_id}", token)
    assert response.status_code == HTTPStatus.OK
    assert response.json()["rate_limit"] is None


def test_a_change_sets_the_limit_and_is_recorded_by_name(admin, service_client):
    caller, token = admin
    path = f"{CLIENTS}/{service_client.client_id}"
    response = call("PATCH", path, token, {"rate_limit": 2000})
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["rate_limit"] == 2000
    assert Client.objects.get(pk=service_client.client.pk).rate_limit == 2000
    [record] = ledger_records(LedgerRecord.Event.ADMIN_CHANGE)
    assert record["sub"] == caller.client_id and record["detail"]["fields"] == ["rate_limit"]
    back = call("PATCH", path, token, {"rate_limit": None})
    assert back.status_code == HTTPStatus.OK and back.json()["rate_limit"] is None
    assert call("PATCH", path, token, {"rate_limit": 0}).json()["rate_limit"] == 0  # no per-client limit


def test_a_registration_may_give_a_limit_and_its_record_says_which(admin):
    _, token = admin
    body = {
        "name": "Batch",
        "client_type": "confidential",
        "grant_type": "client_credentials",
        "rate_limit": 50,
    }
    response = call("POST", CLIENTS, token, body)
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert response.json()["rate_limit"] == 50
    [record] = [
        r
        for r in ledger_records(LedgerRecord.Event.CLIENT_REGISTERED)
        if r["client_id"] == response.json()["client_id"]
    ]
    assert record["detail"]["rate_limit"] == 50


@pytest.mark.parametrize("value", ["5", True, 1.5, -1, 2**31, [5], {"n": 5}])
def test_a_limit_that_is_no_whole_number_in_range_is_400_and_changes_nothing(admin, service_client, value):
    _, token = admin
    response = call("PATCH", f"{CLIENTS}/{service_client.client_id}", token, {"rate_limit": value})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["error"] == "invalid_request"
    assert "rate_limit" in response.json()["fields"], response.json()
    assert Client.objects.get(pk=service_client.client.pk).rate_limit is None
    assert not ledger_records(LedgerRecord.Event.ADMIN_CHANGE)
