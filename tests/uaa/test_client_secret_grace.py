"""Client secret rotation with a grace window (issue 13 item 1): the previous secret keeps authenticating
until its expiry, then fails like any wrong secret; an operator can end the window at once.

Attackers: whoever holds the previous secret (it leaked, which is why it was rotated) after the window
ended or after "end the grace now"; whoever sends one client's previous secret for another client; whoever
times failed authentications to learn which clients are in a grace window, or whether a secret is an old
one. The database never holds a plain secret, old or new. tests/api/test_api_client_secret_grace.py
covers the API, tests/uaa/test_client_secret_grace_processes.py two server processes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client as HttpClient
from django.utils import timezone
from freezegun import freeze_time

from tests.conftest import RegisteredClient
from tests.factories import UserFactory
from tests.oauth_client import basic_auth, form_post
from tests.staff import ledger_records
from tests.uaa.test_client_auth_timing import measured
from tokens.ledger.records import rfc3339_utc
from tokens.models import LedgerRecord
from uaa.checks import configuration_errors
from uaa.oauth import client_cache, hashers
from uaa.oauth.models import Client
from uaa.oauth.services import MAX_SECRET_GRACE_SECONDS, end_client_secret_grace, rotate_client_secret

BODY = {"grant_type": "client_credentials"}


def status(client_id: str, secret: str, *, body: bool = False) -> tuple[int, str]:
    """The token endpoint's answer to ``client_id`` with ``secret`` (Basic, or client_secret_post)."""
    if body:
        data = {**BODY, "client_id": client_id, "client_secret": secret}
        response = form_post(HttpClient(), "/oauth/token", data)
    else:
        response = form_post(HttpClient(), "/oauth/token", BODY, auth=basic_auth(client_id, secret))
    return response.status_code, response.json().get("error", "")


OK = (HTTPStatus.OK, "")
REFUSED = (HTTPStatus.UNAUTHORIZED, "invalid_client")


def fresh(registered: RegisteredClient) -> Client:
    return Client.objects.get(pk=registered.client.pk)


@pytest.fixture
def rotated(service_client: RegisteredClient) -> Callable[..., tuple[str, str]]:
    """Rotate ``service_client``'s secret with ``grace_seconds``; (old secret, new secret). Both have been
    used once first, so the client is in this process's client cache, as in a busy worker."""

    def rotate(grace_seconds: int | None = 3600) -> tuple[str, str]:
        old = service_client.secret or ""
        assert status(service_client.client_id, old) == OK
        new = rotate_client_secret(client=fresh(service_client), actor="admin-1", grace_seconds=grace_seconds)
        assert status(service_client.client_id, new) == OK
        return old, new

    return rotate


# --- the window ------------------------------------------------------------------------------------------


def test_the_previous_secret_authenticates_until_the_window_ends_and_then_fails_like_a_wrong_one(
    service_client, rotated
):
    start = timezone.now()
    with freeze_time(start) as clock:
        old, new = rotated(grace_seconds=600)
        assert status(service_client.client_id, old) == OK
        assert status(service_client.client_id, old, body=True) == OK  # client_secret_post as well
        clock.tick(599)
        assert status(service_client.client_id, old) == OK
        clock.tick(1)  # the expiry itself is outside the window
        assert status(service_client.client_id, old) == REFUSED  # from the cached copy: no row changed
        assert status(service_client.client_id, old, body=True) == REFUSED
        assert status(service_client.client_id, new) == OK
    failures = ledger_records(LedgerRecord.Event.CLIENT_AUTHENTICATION_FAILED)
    assert failures and failures[0]["detail"]["reason"] == "the client secret is wrong"


def test_ending_the_grace_now_kills_the_previous_secret_at_once(service_client, rotated):
    old, new = rotated(grace_seconds=86400)
    assert status(service_client.client_id, old) == OK
    assert end_client_secret_grace(client=fresh(service_client), actor="admin-2") is True
    assert status(service_client.client_id, old) == REFUSED
    assert status(service_client.client_id, old, body=True) == REFUSED
    assert status(service_client.client_id, new) == OK
    stored = fresh(service_client)
    assert (stored.previous_secret_hash, stored.previous_secret_expires) == ("", None)
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED)
    assert record["sub"] == "admin-2" and record["client_id"] == service_client.client_id
    assert record["detail"]["previous_secret_valid_until"] > record["at"]  # what it would have been


def test_ending_a_grace_that_is_not_running_changes_and_records_nothing(service_client, rotated):
    rotated(grace_seconds=0)
    generation = fresh(service_client).generation
    assert end_client_secret_grace(client=fresh(service_client), actor="admin-2") is False
    assert fresh(service_client).generation == generation
    assert not ledger_records(LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED)


def test_a_previous_secret_does_not_authenticate_another_client(service_client, client_factory, rotated):
    other = client_factory(name="Other service", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])
    old, new = rotated(grace_seconds=3600)
    for secret in (old, new):
        assert status(other.client_id, secret) == REFUSED
        assert status(other.client_id, secret, body=True) == REFUSED
    assert status(other.client_id, other.secret or "") == OK
    # a Basic header for the rotated client with a body client_id naming the other one
    response = form_post(
        HttpClient(),
        "/oauth/token",
        {**BODY, "client_id": other.client_id},
        auth=basic_auth(service_client.client_id, old),
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_a_second_rotation_within_the_window_replaces_the_previous_secret(service_client, rotated):
    """One previous secret only: the first secret stops at the second rotation, the second one is the
    previous secret now, with the second rotation's window."""
    first, second = rotated(grace_seconds=3600)
    third = rotate_client_secret(client=fresh(service_client), actor="admin-1", grace_seconds=60)
    assert status(service_client.client_id, first) == REFUSED
    assert status(service_client.client_id, second) == OK
    assert status(service_client.client_id, third) == OK
    expires = fresh(service_client).previous_secret_expires
    assert expires is not None and expires <= timezone.now() + timedelta(seconds=60)


def test_a_rotation_without_a_window_stops_the_old_secret_at_once_and_ends_a_running_window(
    service_client, rotated
):
    first, second = rotated(grace_seconds=3600)
    third = rotate_client_secret(client=fresh(service_client), actor="admin-1", grace_seconds=0)
    for secret in (first, second):
        assert status(service_client.client_id, secret) == REFUSED
    assert status(service_client.client_id, third) == OK


def test_the_default_window_is_the_setting(service_client, rotated, settings):
    settings.UAA_CLIENT_SECRET_GRACE_SECONDS = 0
    old, _ = rotated(grace_seconds=None)
    assert status(service_client.client_id, old) == REFUSED  # the shipped default: none
    settings.UAA_CLIENT_SECRET_GRACE_SECONDS = 300
    service_client.secret = _
    old, _ = rotated(grace_seconds=None)
    assert status(service_client.client_id, old) == OK
    expires = fresh(service_client).previous_secret_expires
    assert expires is not None and timedelta(seconds=299) < expires - timezone.now() <= timedelta(seconds=300)


@pytest.mark.parametrize("grace_seconds", [-1, MAX_SECRET_GRACE_SECONDS + 1, 2**63])
def test_a_window_out_of_bounds_is_refused_and_nothing_changes(service_client, grace_seconds):
    before = fresh(service_client).client_secret
    with pytest.raises(ValueError, match="grace"):
        rotate_client_secret(client=fresh(service_client), grace_seconds=grace_seconds)
    assert fresh(service_client).client_secret == before
    assert not ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)


def test_the_setting_out_of_bounds_refuses_to_start(settings):
    for value in (-1, MAX_SECRET_GRACE_SECONDS + 1):
        settings.UAA_CLIENT_SECRET_GRACE_SECONDS = value
        assert "uaa.E007" in [error.id for error in configuration_errors(settings)]
    settings.UAA_CLIENT_SECRET_GRACE_SECONDS = MAX_SECRET_GRACE_SECONDS
    assert "uaa.E007" not in [error.id for error in configuration_errors(settings)]


def test_the_previous_secret_is_stored_as_the_hash_it_had_never_in_plain(service_client, rotated, caplog):
    caplog.set_level(logging.DEBUG)
    hash_before = fresh(service_client).client_secret
    old, new = rotated(grace_seconds=3600)
    stored = fresh(service_client)
    assert stored.previous_secret_hash == hash_before
    assert hashers.is_client_secret_hash(stored.previous_secret_hash)
    row = str(Client.objects.filter(pk=stored.pk).values().get())
    assert old not in row and new not in row
    assert old not in caplog.text and new not in caplog.text
    assert stored.secret_rotated_at is not None


def test_the_rotation_record_names_the_actor_and_the_windows_end(service_client, rotated):
    rotated(grace_seconds=3600)
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)
    stored = fresh(service_client)
    assert record["sub"] == "admin-1" and record["client_id"] == service_client.client_id
    assert record["detail"]["grace_seconds"] == 3600
    assert stored.previous_secret_expires is not None
    expected = rfc3339_utc(stored.previous_secret_expires)
    assert record["detail"]["previous_secret_valid_until"] == expected
    assert stored.previous_secret_hash not in str(record)


def test_a_rotation_without_a_window_records_that_the_old_secret_stopped(service_client, rotated):
    rotated(grace_seconds=0)
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)
    assert record["detail"]["grace_seconds"] == 0
    assert "previous_secret_valid_until" not in record["detail"]


def test_a_private_key_jwt_client_is_not_authenticated_by_its_previous_secret(service_client, rotated):
    old, _ = rotated(grace_seconds=3600)
    Client.objects.filter(pk=service_client.client.pk).update(
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT, jwks={"keys": []}
    )
    assert status(service_client.client_id, old) == REFUSED


def test_the_previous_secret_authenticates_at_introspection_and_revocation_too(service_client, rotated):
    old, new = rotated(grace_seconds=3600)
    token = form_post(
        HttpClient(), "/oauth/token", BODY, auth=basic_auth(service_client.client_id, new)
    ).json()["access_token"]
    auth = basic_auth(service_client.client_id, old)
    answer = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=auth)
    assert answer.status_code == HTTPStatus.OK and answer.json()["active"] is True
    assert form_post(HttpClient(), "/oauth/revoke", {"token": token}, auth=auth).status_code == HTTPStatus.OK
    end_client_secret_grace(client=fresh(service_client), actor="admin-2")
    answer = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=auth)
    assert answer.status_code == HTTPStatus.UNAUTHORIZED


def test_a_public_client_has_no_window(public_client):
    with pytest.raises(ValueError, match="confidential"):
        rotate_client_secret(client=public_client.client, grace_seconds=60)
    with pytest.raises(ValueError, match="confidential"):
        end_client_secret_grace(client=public_client.client)


# --- the work a request does stays the same (tests/uaa/test_client_auth_timing.py) ----------------------


@pytest.mark.django_db(transaction=True)
def test_every_request_computes_the_same_two_hashes_whether_a_window_runs_or_not(
    service_client, client_factory, monkeypatch
):
    """A client in its window is verified against its current and its previous hash; every other request
    against its current hash (or, for an unknown client_id, a stand-in) and a stand-in for the previous
    one: two hashes of the same hasher and salt length each, whatever the secret and whatever the client,
    so a prober learns neither that a window runs nor that the secret they hold is the old one."""
    idle = client_factory(name="Idle", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])
    old = service_client.secret or ""
    new = rotate_client_secret(client=fresh(service_client), grace_seconds=3600)
    requests: dict[str, str] = {
        "unknown client_id": basic_auth("no-such-client", "x" * 43),
        "wrong secret, window running": basic_auth(service_client.client_id, "x" * 43),
        "previous secret": basic_auth(service_client.client_id, old),
        "current secret, window running": basic_auth(service_client.client_id, new),
        "wrong secret, no window": basic_auth(idle.client_id, "x" * 43),
        "right secret, no window": basic_auth(idle.client_id, idle.secret or ""),
    }
    for auth in requests.values():
        measured(auth, monkeypatch)  # warm: the client cache, the tallies
    seen = {}
    for outcome in (HTTPStatus.OK, HTTPStatus.UNAUTHORIZED):  # each after its own kind (a success forgives)
        alike = {name: auth for name, auth in requests.items() if _succeeds(name) == (outcome == 200)}
        for auth in alike.values():
            measured(auth, monkeypatch)
        seen.update({name: measured(auth, monkeypatch) for name, auth in alike.items()})
    assert {name: code for name, (code, _) in seen.items()} == {
        name: 200 if _succeeds(name) else 401 for name in requests
    }
    salt = len(hashers.UNKNOWN_CLIENT_SECRET.split("$")[1])
    assert {name: done["hashes"] for name, (_, done) in seen.items()} == {name: [salt, salt] for name in seen}
    sql = {name: done["sql"] for name, (_, done) in seen.items()}
    assert sql["wrong secret, window running"] == sql["wrong secret, no window"] == sql["unknown client_id"]
    assert sql["previous secret"] == sql["current secret, window running"] == sql["right secret, no window"]


def _succeeds(name: str) -> bool:
    return not name.startswith(("unknown", "wrong"))


def test_the_client_cache_holds_the_window_but_never_past_its_end(service_client, rotated):
    """The cached copy carries the previous hash and its expiry; the expiry is compared with the clock on
    every request, so the copy cannot keep the old secret alive (the end needs no write to the row)."""
    start = timezone.now()
    with freeze_time(start) as clock:
        old, _ = rotated(grace_seconds=60)
        assert status(service_client.client_id, old) == OK
        held = client_cache.get_client(service_client.client_id)
        assert held is not None and held.previous_secret_hash
        generation = fresh(service_client).generation
        clock.tick(61)
        assert status(service_client.client_id, old) == REFUSED
        assert fresh(service_client).generation == generation  # nothing wrote the row


# --- the Django admin ------------------------------------------------------------------------------------

CHANGELIST = "/admin/oauth/client/"
SECRET = re.compile(rb'<code id="client-secret">([^<]+)</code>')


@pytest.fixture
def admin_browser(db):
    http = HttpClient()
    http.force_login(UserFactory(is_staff=True, is_superuser=True))
    return http


def admin_rotate(http: HttpClient, client: Client, grace: str | None) -> Any:
    form: dict[str, Any] = {"action": "rotate_secret", "_selected_action": [client.pk], "index": 0}
    if grace is not None:
        form["grace_seconds"] = grace
    return http.post(CHANGELIST, form)


def test_the_admin_rotates_with_a_window_and_shows_until_when_never_the_hash(admin_browser, service_client):
    old = service_client.secret or ""
    response = admin_rotate(admin_browser, service_client.client, "7200")
    assert response.status_code == HTTPStatus.OK
    match = SECRET.search(response.content)
    assert match is not None
    new = match.group(1).decode()
    assert b'id="previous-secret-until"' in response.content
    assert b"previous secret no longer works" not in response.content
    assert status(service_client.client_id, old) == OK and status(service_client.client_id, new) == OK
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)
    assert record["detail"]["grace_seconds"] == 7200 and record["sub"]
    stored = fresh(service_client)
    for page in (
        admin_browser.get(f"{CHANGELIST}{stored.pk}/change/").content.decode(),
        admin_browser.get(CHANGELIST).content.decode(),
    ):
        assert "valid until" in page
        assert stored.client_secret not in page and stored.previous_secret_hash not in page
        assert stored.previous_secret_hash.split("$")[2] not in page
        assert old not in page and new not in page
    change = admin_browser.get(f"{CHANGELIST}{stored.pk}/change/").content.decode()
    assert "rotated " in change and "stored hashed" in change


def test_the_admin_rotates_without_a_window_by_default(admin_browser, service_client):
    old = service_client.secret or ""
    response = admin_rotate(admin_browser, service_client.client, None)
    assert b"previous secret no longer works" in response.content
    assert status(service_client.client_id, old) == REFUSED
    response = admin_rotate(admin_browser, service_client.client, "")  # the field left empty
    assert b"previous secret no longer works" in response.content


@pytest.mark.parametrize("grace", ["-1", "1.5", "abc", "٣", str(MAX_SECRET_GRACE_SECONDS + 1), "9" * 30])
def test_the_admin_refuses_a_bad_window_and_changes_nothing(admin_browser, service_client, grace):
    response = admin_rotate(admin_browser, service_client.client, grace)
    assert response.status_code == HTTPStatus.FOUND  # back to the list, with the message
    assert SECRET.search(response.content) is None
    page = admin_browser.get(CHANGELIST).content.decode()
    assert "Grace seconds: a whole number" in page
    assert status(service_client.client_id, service_client.secret or "") == OK
    assert not ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)


def test_the_admin_ends_the_grace_now(admin_browser, service_client, rotated):
    old, new = rotated(grace_seconds=86400)
    response = admin_browser.post(
        CHANGELIST,
        {"action": "end_secret_grace", "_selected_action": [service_client.client.pk]},
        follow=True,
    )
    assert response.status_code == HTTPStatus.OK
    assert b"previous secret no longer works for" in response.content
    assert status(service_client.client_id, old) == REFUSED
    assert status(service_client.client_id, new) == OK
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED)
    assert record["sub"] == str(response.wsgi_request.user.pk)


def test_view_only_staff_can_neither_rotate_nor_end_a_window(service_client, rotated):
    old, _ = rotated(grace_seconds=86400)
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(content_type__app_label="oauth", codename="view_client")
    )
    http = HttpClient()
    http.force_login(viewer)
    page = http.get(CHANGELIST).content.decode()
    assert "end_secret_grace" not in page and "rotate_secret" not in page
    http.post(CHANGELIST, {"action": "end_secret_grace", "_selected_action": [service_client.client.pk]})
    assert status(service_client.client_id, old) == OK
    assert not ledger_records(LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED)
