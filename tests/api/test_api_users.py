"""/api/v1/users: create, read, deactivate, reactivate, reset factors, unlock, revoke every token.

Attackers: a holder of a users.read token trying to act on an account; a holder of a users.write token
trying to take over a staff or superuser account (reset its factors, deactivate it, create a staff user)
or to mass-assign fields (is_staff, is_superuser, id); a token a user still holds after an admin revoked
their grants. Every change is in the ledger naming the calling client.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest

from accounts import throttling
from accounts.models import User
from tests.api.conftest import call, client_credentials_token
from tests.factories import UserFactory
from tests.staff import ledger_records
from tests.uaa.endpoints import introspect, refresh
from tokens.models import LedgerRecord

USERS = "/api/v1/users"


@pytest.fixture
def admin(admin_client):
    registered = admin_client("uaa.users.read uaa.users.write")
    return registered, client_credentials_token(registered, "uaa.users.read uaa.users.write")


def test_create_an_account_recorded_by_the_caller_without_the_password(admin, caplog):
    caller, token = admin
    body = {
        "email": "New.Person@Example.com",
        "password": "a long and unusual passphrase 42",
        "given_name": "N",
    }
    response = call("POST", USERS, token, body)
    assert response.status_code == HTTPStatus.CREATED, response.content
    created = response.json()
    assert created["is_active"] and not created["is_staff"] and "password" not in created
    user = User.objects.get(pk=created["id"])
    assert user.check_password(body["password"])
    [record] = ledger_records(LedgerRecord.Event.ADMIN_CHANGE)
    assert record["sub"] == caller.client_id and record["detail"]["action"] == "add"
    assert body["password"] not in str(record) and body["password"] not in caplog.text
    assert call("GET", f"{USERS}/{created['id']}", token).json()["email"] == user.email
    assert call("GET", f"{USERS}?email={user.email}", token).json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": 5}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "is_staff": True}, "is_staff"),
        ({"email": "a@example.com", "is_superuser": True}, "is_superuser"),
        ({"email": "a@example.com", "id": "00000000-0000-0000-0000-000000000000"}, "id"),
        ({"email": "a@example.com", "is_active": False}, "is_active"),
        ({}, "email"),
    ],
)
def test_bad_or_privileged_accounts_are_refused(admin, body, field):
    _caller, token = admin
    response = call("POST", USERS, token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert field in response.json()["fields"]
    assert not User.objects.filter(email="a@example.com").exists()


def test_an_existing_address_is_refused(admin, user):
    _caller, token = admin
    response = call("POST", USERS, token, {"email": user.email.upper()})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert User.objects.filter(email=user.email).count() == 1


def test_a_read_token_cannot_act_on_an_account(admin_token, user):
    token = admin_token("uaa.users.read")
    for verb in ("deactivate", "reactivate", "reset-factors", "unlock", "revoke-tokens"):
        response = call("POST", f"{USERS}/{user.pk}/{verb}", token)
        assert response.status_code == HTTPStatus.FORBIDDEN
        assert response.json()["scope"] == "uaa.users.write"
    assert call("POST", USERS, token, {"email": "x@example.com"}).status_code == HTTPStatus.FORBIDDEN
    assert User.objects.get(pk=user.pk).is_active


@pytest.mark.parametrize("kind", [{"is_staff": True}, {"is_superuser": True, "is_staff": True}])
@pytest.mark.parametrize("verb", ["deactivate", "reactivate", "reset-factors", "unlock", "revoke-tokens"])
def test_a_staff_account_is_out_of_the_apis_reach(admin, kind, verb):
    _caller, token = admin
    staff = UserFactory(**kind)
    response = call("POST", f"{USERS}/{staff.pk}/{verb}", token)
    assert response.status_code == HTTPStatus.FORBIDDEN, response.content
    assert response.json()["error"] == "access_denied"
    staff.refresh_from_db()
    assert staff.is_active and staff.totpdevice_set.exists()
    assert not ledger_records(LedgerRecord.Event.MFA_RESET)
    assert not ledger_records(LedgerRecord.Event.ACCOUNT_NOT_BEFORE)


def test_deactivate_ends_the_users_tokens_and_reactivate_lets_them_sign_in_again(
    admin, user, confidential_client, code_flow
):
    caller, token = admin
    tokens = code_flow(confidential_client, scope="openid")["tokens"]
    response = call("POST", f"{USERS}/{user.pk}/deactivate", token)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["is_active"] is False
    assert introspect(confidential_client, tokens["access_token"]).json() == {"active": False}
    [record] = ledger_records(LedgerRecord.Event.ACCOUNT_NOT_BEFORE)
    assert record["sub"] == str(user.pk) and record["detail"]["by"] == caller.client_id
    response = call("POST", f"{USERS}/{user.pk}/reactivate", token)
    assert response.json()["is_active"] is True and User.objects.get(pk=user.pk).is_active
    assert refresh(confidential_client, tokens["refresh_token"]).status_code == HTTPStatus.BAD_REQUEST
    changes = ledger_records(LedgerRecord.Event.ADMIN_CHANGE)  # the deactivation, then the reactivation
    assert len(changes) == 2
    assert all(c["sub"] == caller.client_id and c["detail"]["fields"] == ["is_active"] for c in changes)


def test_reset_factors_removes_them_and_names_the_caller(admin, user):
    caller, token = admin
    assert user.totpdevice_set.exists()
    response = call("POST", f"{USERS}/{user.pk}/reset-factors", token)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["has_second_factor"] is False
    assert not user.totpdevice_set.exists()
    [record] = ledger_records(LedgerRecord.Event.MFA_RESET)
    assert record["sub"] == str(user.pk) and record["detail"]["by"] == caller.client_id


def test_unlock_clears_the_lockout_and_names_the_caller(admin, user, settings):
    caller, token = admin
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 3
    for _ in range(3):
        throttling.record_failure(email=user.email, ip=None)
    assert call("GET", f"{USERS}/{user.pk}", token).json()["locked_until"]
    response = call("POST", f"{USERS}/{user.pk}/unlock", token)
    assert response.json() == {"unlocked": True}
    assert call("GET", f"{USERS}/{user.pk}", token).json()["locked_until"] is None
    [record] = ledger_records(LedgerRecord.Event.ACCOUNT_UNLOCKED)
    assert record["detail"]["by"] == caller.client_id
    assert call("POST", f"{USERS}/{user.pk}/unlock", token).json() == {"unlocked": False}


def test_revoke_tokens_ends_every_token_of_the_user(admin, user, confidential_client, code_flow):
    caller, token = admin
    tokens = code_flow(confidential_client, scope="openid")["tokens"]
    response = call("POST", f"{USERS}/{user.pk}/revoke-tokens", token)
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["refresh_tokens"] == 1
    assert introspect(confidential_client, tokens["access_token"]).json() == {"active": False}
    assert refresh(confidential_client, tokens["refresh_token"]).status_code == HTTPStatus.BAD_REQUEST
    assert User.objects.get(pk=user.pk).is_active  # revoking is not deactivating
    [record] = ledger_records(LedgerRecord.Event.ACCOUNT_NOT_BEFORE)
    assert record["detail"] == {**record["detail"], "by": caller.client_id, "reason": "admin_revoked"}


def test_an_unknown_user_is_404(admin):
    _caller, token = admin
    assert call("GET", f"{USERS}/00000000-0000-0000-0000-000000000000", token).status_code == 404
    assert call("POST", f"{USERS}/zzzzzzzz-0000-0000-0000-000000000000/unlock", token).status_code == 404
