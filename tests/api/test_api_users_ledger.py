"""Issue 13: every change made through /api/v1/users is in the audit ledger, naming the calling client.

Attacker (or an auditor's question): a holder of a ``uaa.users.write`` token revokes a user's tokens, or
deactivates, resets or unlocks the account; afterwards the ledger must say who did it and what was undone
(counts and token digests, never a whole token). The red team found the revocation's ``token.revoked``
records labelled as the user's own "sign out everywhere", without the calling client, and no record of
how many sessions and tokens ended; and a deactivation through the API left no ``admin.change`` of
``is_active`` although the reactivation and the Django admin's deactivation do.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from accounts import throttling
from tests.api.conftest import call, client_credentials_token
from tests.staff import ledger_records
from tokens.models import LedgerRecord

USERS = "/api/v1/users"


@pytest.fixture
def admin(admin_client):
    registered = admin_client("uaa.users.read uaa.users.write")
    return registered, client_credentials_token(registered, "uaa.users.read uaa.users.write")


def _all_bodies() -> str:
    return "\n".join(LedgerRecord.objects.values_list("body", flat=True))


def test_revoking_a_users_tokens_names_the_caller_on_every_record(
    admin, user, confidential_client, code_flow
):
    caller, token = admin
    code_flow(confidential_client, scope="openid")
    response = call("POST", f"{USERS}/{user.pk}/revoke-tokens", token)
    assert response.status_code == HTTPStatus.OK, response.content
    revoked = ledger_records(LedgerRecord.Event.TOKEN_REVOKED)
    assert revoked, "no token.revoked record"
    for record in revoked:
        assert record["sub"] == str(user.pk)
        assert record["detail"] == {"reason": "admin_revoked", "by": caller.client_id}
        assert set(record["hashes"]) <= {"access_token", "refresh_token"}


def test_revoking_a_users_tokens_records_what_was_revoked(admin, user, confidential_client, code_flow):
    caller, token = admin
    tokens = code_flow(confidential_client, scope="openid")["tokens"]
    counts = call("POST", f"{USERS}/{user.pk}/revoke-tokens", token).json()
    assert counts["refresh_tokens"] == 1
    [summary] = [r for r in ledger_records(LedgerRecord.Event.SIGNED_OUT) if r["detail"].get("by")]
    assert summary["sub"] == str(user.pk)
    assert summary["detail"] == {
        **summary["detail"],
        "everywhere": True,
        "reason": "admin_revoked",
        "by": caller.client_id,
        "sessions": counts["sessions"],
        "refresh_tokens_revoked": counts["refresh_tokens"],
        "access_tokens_revoked": counts["access_tokens"],
        "authorization_codes_revoked": counts["authorization_codes"],
    }
    bodies = _all_bodies()
    assert tokens["access_token"] not in bodies and tokens["refresh_token"] not in bodies  # digests only


def test_revoking_the_tokens_of_a_user_with_none_is_still_recorded(admin, user):
    caller, token = admin
    assert call("POST", f"{USERS}/{user.pk}/revoke-tokens", token).json()["refresh_tokens"] == 0
    [summary] = [r for r in ledger_records(LedgerRecord.Event.SIGNED_OUT) if r["detail"].get("by")]
    assert summary["detail"]["by"] == caller.client_id and summary["detail"]["refresh_tokens_revoked"] == 0


def test_deactivation_is_an_admin_change_of_is_active_naming_the_caller(admin, user):
    """As the reactivation, and as the Django admin's deactivation (its LogEntry) are."""
    caller, token = admin
    assert call("POST", f"{USERS}/{user.pk}/deactivate", token).status_code == HTTPStatus.OK
    [change] = ledger_records(LedgerRecord.Event.ADMIN_CHANGE)
    assert change["sub"] == caller.client_id
    assert change["subject"] == f"accounts.user:{user.pk}"
    assert change["detail"] == {**change["detail"], "action": "change", "fields": ["is_active"]}


@pytest.mark.parametrize("verb", ["deactivate", "reactivate", "reset-factors", "unlock", "revoke-tokens"])
def test_every_user_action_leaves_a_record_naming_the_caller(admin, user, settings, verb):
    caller, token = admin
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 1
    throttling.record_failure(email=user.email, ip=None)  # so that unlock has something to do
    before = LedgerRecord.objects.count()
    assert call("POST", f"{USERS}/{user.pk}/{verb}", token).status_code == HTTPStatus.OK
    new = LedgerRecord.objects.order_by("id")[before:]
    named = [
        record
        for record in (json.loads(body) for body in new.values_list("body", flat=True))
        if record.get("sub") == caller.client_id or record.get("detail", {}).get("by") == caller.client_id
    ]
    assert named, f"{verb}: no record names {caller.client_id}"
