"""/api/v1/clients/{client_id}/rotate-secret with a grace window, and DELETE .../previous-secret (issue 13
item 1).

Attackers: a caller without ``uaa.clients.write`` rotating a secret or ending (or keeping alive) a
window; a caller sending grace values built to break the server (negative, huge, a string, a float, a
boolean, null) hoping for a 500 or a window nobody meant; the holder of the previous secret after
"end the grace now". The API never shows a secret again, nor its hash.
"""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tests.api.conftest import ALL_ADMIN, call, client_credentials_token
from tests.conftest import RegisteredClient
from tests.staff import ledger_records
from tests.uaa.endpoints import token_request
from tokens.models import LedgerRecord
from uaa.oauth.models import Client
from uaa.oauth.services import MAX_SECRET_GRACE_SECONDS

CLIENTS = "/api/v1/clients"
CREDENTIALS = {"grant_type": "client_credentials"}


@pytest.fixture
def admin(admin_client):
    registered = admin_client()
    return registered, client_credentials_token(registered, ALL_ADMIN)


def works(registered: RegisteredClient, secret: str) -> bool:
    with_secret = RegisteredClient(client=registered.client, secret=secret)
    response = token_request(with_secret, CREDENTIALS)
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.UNAUTHORIZED), response.content
    return response.status_code == HTTPStatus.OK


def test_a_rotation_with_a_window_keeps_the_old_secret_until_it_ends(admin, service_client):
    caller, token = admin
    old = service_client.secret or ""
    response = call(
        "POST", f"{CLIENTS}/{service_client.client_id}/rotate-secret", token, {"grace_seconds": 3600}
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    new = body["client_secret"]
    valid_until = parse_datetime(body["previous_secret_valid_until"])
    assert valid_until is not None
    assert timedelta(seconds=3590) < valid_until - timezone.now() <= timedelta(seconds=3600)
    assert works(service_client, old) and works(service_client, new)
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)
    assert record["sub"] == caller.client_id and record["detail"]["grace_seconds"] == 3600
    read = call("GET", f"{CLIENTS}/{service_client.client_id}", token)
    assert read.json()["previous_secret_valid_until"] == body["previous_secret_valid_until"]
    stored = Client.objects.get(pk=service_client.client.pk)
    for shown in (read.content.decode(), call("GET", CLIENTS, token).content.decode()):
        assert new not in shown and old not in shown
        assert stored.client_secret not in shown and stored.previous_secret_hash not in shown


def test_a_rotation_without_a_body_has_no_window_by_default(admin, service_client):
    _caller, token = admin
    old = service_client.secret or ""
    response = call("POST", f"{CLIENTS}/{service_client.client_id}/rotate-secret", token, b"")
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["previous_secret_valid_until"] is None
    assert not works(service_client, old)
    assert works(service_client, response.json()["client_secret"])


def test_the_setting_gives_the_window_when_the_body_names_none(admin, service_client, settings):
    settings.UAA_CLIENT_SECRET_GRACE_SECONDS = 120
    _caller, token = admin
    response = call("POST", f"{CLIENTS}/{service_client.client_id}/rotate-secret", token, {})
    assert response.status_code == HTTPStatus.OK, response.content
    assert works(service_client, service_client.secret or "")
    assert ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)[0]["detail"]["grace_seconds"] == 120
    # and an explicit 0 overrides the setting
    response = call(
        "POST", f"{CLIENTS}/{service_client.client_id}/rotate-secret", token, {"grace_seconds": 0}
    )
    assert response.json()["previous_secret_valid_until"] is None
    assert not works(service_client, service_client.secret or "")


@pytest.mark.parametrize(
    "body",
    [
        {"grace_seconds": -1},
        {"grace_seconds": MAX_SECRET_GRACE_SECONDS + 1},
        {"grace_seconds": 10**30},
        {"grace_seconds": "3600"},
        {"grace_seconds": 60.5},
        {"grace_seconds": 60.0},
        {"grace_seconds": True},
        {"grace_seconds": None},
        {"grace_seconds": [60]},
        {"grace": 60},
        {"client_secret": "mine"},
    ],
)
def test_bad_grace_values_are_400_with_field_errors_and_change_nothing(admin, service_client, body):
    _caller, token = admin
    response = call("POST", f"{CLIENTS}/{service_client.client_id}/rotate-secret", token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    answer = response.json()
    assert answer["error"] == "invalid_request"
    assert set(answer["fields"]) == set(body)
    assert works(service_client, service_client.secret or "")
    assert not ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)


@pytest.mark.parametrize(
    "body", [b"[]", b'"x"', b"12", b"{", b'{"grace_seconds": NaN}', b'{"grace_seconds": 1e400}']
)
def test_bodies_that_are_no_object_are_400(admin, service_client, body):
    _caller, token = admin
    response = call("POST", f"{CLIENTS}/{service_client.client_id}/rotate-secret", token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert works(service_client, service_client.secret or "")


def test_ending_the_grace_now_kills_the_previous_secret_and_is_recorded(admin, service_client):
    caller, token = admin
    old = service_client.secret or ""
    path = f"{CLIENTS}/{service_client.client_id}"
    new = call("POST", f"{path}/rotate-secret", token, {"grace_seconds": 86400}).json()["client_secret"]
    assert works(service_client, old)
    response = call("DELETE", f"{path}/previous-secret", token)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["previous_secret_valid_until"] is None
    assert response.json()["client_id"] == service_client.client_id
    assert not works(service_client, old)
    assert works(service_client, new)
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED)
    assert record["sub"] == caller.client_id and record["client_id"] == service_client.client_id
    # again: nothing left to end, nothing recorded
    assert call("DELETE", f"{path}/previous-secret", token).status_code == HTTPStatus.OK
    assert len(ledger_records(LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED)) == 1


def test_a_public_client_has_no_previous_secret_to_end(admin, public_client):
    _caller, token = admin
    response = call("DELETE", f"{CLIENTS}/{public_client.client_id}/previous-secret", token)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "client_type" in response.json()["fields"]


def test_unknown_clients_are_404(admin):
    _caller, token = admin
    assert call("DELETE", f"{CLIENTS}/nobody/previous-secret", token).status_code == HTTPStatus.NOT_FOUND
    response = call("POST", f"{CLIENTS}/nobody/rotate-secret", token, {"grace_seconds": 60})
    assert response.status_code == HTTPStatus.NOT_FOUND


@pytest.mark.parametrize("scope", ["uaa.clients.read", "uaa.users.write uaa.keys.write"])
def test_a_caller_without_clients_write_can_neither_rotate_nor_end_a_window(
    admin, admin_token, service_client, scope
):
    _caller, token = admin
    path = f"{CLIENTS}/{service_client.client_id}"
    old = service_client.secret or ""
    new = call("POST", f"{path}/rotate-secret", token, {"grace_seconds": 3600}).json()["client_secret"]
    weak = admin_token(scope)
    for response in (
        call("POST", f"{path}/rotate-secret", weak, {"grace_seconds": MAX_SECRET_GRACE_SECONDS}),
        call("DELETE", f"{path}/previous-secret", weak),
    ):
        assert response.status_code == HTTPStatus.FORBIDDEN, response.content
        assert response.json()["error"] == "insufficient_scope"
        assert 'scope="uaa.clients.write"' in response["WWW-Authenticate"]
    for response in (call("POST", f"{path}/rotate-secret"), call("DELETE", f"{path}/previous-secret")):
        assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert works(service_client, old) and works(service_client, new)
    assert len(ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)) == 1
    assert not ledger_records(LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED)


def test_a_secret_stored_in_plain_gets_no_window_and_a_400_not_a_500(admin, service_client):
    """A client whose secret was stored unhashed (hash_client_secret off, from a shell): its old secret
    cannot be kept as a hash, so a window is refused (the plain secret is never copied anywhere)."""
    _caller, token = admin
    Client.objects.filter(pk=service_client.client.pk).update(hash_client_secret=False, client_secret="plain")
    path = f"{CLIENTS}/{service_client.client_id}/rotate-secret"
    response = call("POST", path, token, {"grace_seconds": 60})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert "grace_seconds" in response.json()["fields"]
    assert Client.objects.get(pk=service_client.client.pk).previous_secret_hash == ""
    assert call("POST", path, token, {"grace_seconds": 0}).status_code == HTTPStatus.OK
