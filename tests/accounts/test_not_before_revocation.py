"""The user's not-before time (accounts/revocation.py): grants made before a revocation are dead.

Attacker: holds a stolen SSO session cookie, or a code, refresh token or access token obtained with it,
that was issued before the user's revocation but whose request committed after the revocation looked for
it (a request in flight). Each test here sets the not-before time alone, without the deletions that
follow it in "Sign out everywhere", which is exactly what such a straggler meets: the time must refuse
it on its own. tests/accounts/test_not_before_race.py races the real requests.

RFC 9700 §4.14.2 (revoke refresh tokens on a security event such as logout), RFC 6749 §5.2
(``invalid_grant``: the grant is revoked), RFC 7662 §2.2 (``{"active": false}``), RFC 6750 §3.1
(``invalid_token``), OIDC Core §3.1.2.6 (``login_required``), Keycloak's not-before revocation policy.
"""

from __future__ import annotations

import json
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from accounts import revocation
from tests.conftest import LOGIN, REDIRECT_URI, sign_in
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from tests.uaa.endpoints import introspect, refresh, token_request, userinfo
from tokens.models import LedgerRecord
from uaa.oauth import not_before

SCOPE = "openid offline_access"


def _request(registered):
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, scope=SCOPE)


def _tokens(browser, registered):
    request = _request(registered)
    params = authorize(browser, request)
    response = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


def _revoke(user, *, applications=True):
    return revocation.revoke(
        user=user, request=None, reason=revocation.Reason.SIGN_OUT_EVERYWHERE, applications=applications
    )


def test_a_session_that_began_before_the_time_ends_at_its_next_request(browser, user, confidential_client):
    """The session row is still there (its deletion has not committed yet): the cookie is refused anyway,
    and prompt=none answers login_required (OIDC Core §3.1.2.6)."""
    _revoke(user)
    request = _request(confidential_client)
    answer = query_of(browser.get(request.url(prompt="none"))["Location"])
    assert answer["error"] == "login_required" and "code" not in answer
    assert browser.get("/accounts/")["Location"].startswith(LOGIN)


def test_a_code_issued_before_the_time_is_invalid_grant(browser, user, confidential_client):
    """RFC 6749 §5.2: the code's session was revoked after it was issued."""
    request = _request(confidential_client)
    code = authorize(browser, request)["code"]
    _revoke(user)
    response = exchange_code(HttpClient(), code=code, request=request, auth=confidential_client.basic)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert not get_access_token_model().objects.filter(user=user).exists()


def test_no_code_is_issued_from_a_session_that_began_before_the_time(browser, user):
    """The authorization endpoint's own check, for a request that passed the session check before the
    time was set: it is read again, under the row lock, where the code is created."""
    signed_in = timezone.now() - timedelta(seconds=5)
    assert not not_before.session_code_refused(user=user, context={"auth_time": signed_in.isoformat()})
    _revoke(user)
    assert not_before.session_code_refused(user=user, context={"auth_time": signed_in.isoformat()})
    assert not_before.session_code_refused(user=user, context=None)  # unknown age: refused
    later = timezone.now() + timedelta(seconds=1)
    assert not not_before.session_code_refused(user=user, context={"auth_time": later.isoformat()})


def test_a_refresh_token_granted_before_the_time_is_invalid_grant(browser, user, confidential_client):
    """RFC 9700 §4.14.2, RFC 6749 §5.2: the family, not only the token, predates the revocation."""
    tokens = _tokens(browser, confidential_client)
    rotated = refresh(
        confidential_client, tokens["refresh_token"]
    ).json()  # a successor, newer than the grant
    _revoke(user)
    response = refresh(confidential_client, rotated["refresh_token"])
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert introspect(confidential_client, rotated["refresh_token"]).json() == {"active": False}


def test_a_successor_stored_after_the_time_by_a_refresh_in_flight_is_refused(
    browser, user, confidential_client
):
    """A rotation that was checked before the time and committed after it leaves a successor created after
    the time: its family's grant still predates it."""
    tokens = _tokens(browser, confidential_client)
    _revoke(user)
    old = get_refresh_token_model().objects.get(user=user, revoked__isnull=True)
    access = get_access_token_model().objects.create(
        user=user,
        application=old.application,
        token="late-access",
        scope=SCOPE,
        expires=old.access_token.expires,
    )
    get_refresh_token_model().objects.create(
        user=user,
        application=old.application,
        token="late-refresh",
        access_token=access,
        token_family=old.token_family,
    )
    old.revoke()
    assert refresh(confidential_client, "late-refresh").json()["error"] == "invalid_grant"
    assert tokens["refresh_token"] != "late-refresh"


def test_an_access_token_stored_before_the_time_is_inactive_and_refused_by_userinfo(
    browser, user, confidential_client
):
    """RFC 7662 §2.2 and RFC 6750 §3.1, though its record was not deleted."""
    tokens = _tokens(browser, confidential_client)
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK
    _revoke(user)
    assert get_access_token_model().objects.filter(user=user).exists()  # only the time refuses it here
    assert introspect(confidential_client, tokens["access_token"]).json() == {"active": False}
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.UNAUTHORIZED


def test_a_sign_in_after_the_time_gets_working_tokens(user, confidential_client):
    _revoke(user)
    http = HttpClient()
    sign_in(http, user)
    tokens = _tokens(http, confidential_client)
    assert introspect(confidential_client, tokens["access_token"]).json()["active"] is True
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK
    assert refresh(confidential_client, tokens["refresh_token"]).status_code == HTTPStatus.OK


def test_sessions_only_leaves_applications_their_tokens_but_refuses_the_sessions_codes(
    browser, user, confidential_client
):
    """ "Sign out everywhere" unticked: the sessions end, and so do codes they issued that are still
    unredeemed; tokens the applications already hold keep working."""
    tokens = _tokens(browser, confidential_client)
    request = _request(confidential_client)
    code = authorize(browser, request)["code"]
    _revoke(user, applications=False)
    assert browser.get("/accounts/")["Location"].startswith(LOGIN)
    exchanged = exchange_code(HttpClient(), code=code, request=request, auth=confidential_client.basic)
    assert exchanged.json()["error"] == "invalid_grant"
    assert refresh(confidential_client, tokens["refresh_token"]).status_code == HTTPStatus.OK


def test_client_credentials_tokens_are_the_clients_and_untouched(user, service_client):
    _revoke(user)
    response = token_request(service_client, {"grant_type": "client_credentials"})
    assert response.status_code == HTTPStatus.OK
    assert introspect(service_client, response.json()["access_token"]).json()["active"] is True


def test_setting_the_time_is_recorded_first(browser, user):
    """docs/audit-ledger.md: ``account.not_before`` is appended with the time, before the sign-out."""
    browser.post("/accounts/security/sign-out-everywhere", {"revoke_tokens": "on"})
    records = [json.loads(r.body) for r in LedgerRecord.objects.order_by("id")]
    events = [r["event"] for r in records]
    assert events.index("account.not_before") < events.index("sign_out")
    (record,) = [r for r in records if r["event"] == "account.not_before"]
    user.refresh_from_db()
    assert record["detail"]["not_before"] == user.not_before.isoformat()
    assert user.sessions_not_before == user.not_before


@pytest.mark.django_db(transaction=True)
def test_the_time_waits_for_a_grant_being_issued_and_a_grant_waits_for_the_time(user):
    """The lock of accounts/revocation.py: a token request holding the user's row FOR KEY SHARE makes the
    revocation wait until it commits (so the revocation's own reads see its tokens); PostgreSQL only."""
    import threading
    import time

    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writing transactions (BEGIN IMMEDIATE); nothing to lock")
    holding, finished = threading.Event(), []

    def issuing():
        try:
            with transaction.atomic():
                assert not revocation.grant_refused(user_id=user.pk, granted_at=timezone.now(), lock=True)
                holding.set()
                time.sleep(0.5)
                finished.append(time.monotonic())
        finally:
            connection.close()

    thread = threading.Thread(target=issuing)
    thread.start()
    assert holding.wait(10)
    _revoke(user)
    revoked_at = time.monotonic()
    thread.join()
    assert finished and finished[0] <= revoked_at


def _admin_sets_password(admin_client, user):
    return admin_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": "a brand new password 789", "password2": "a brand new password 789"},
    )


def test_a_new_password_set_by_an_admin_ends_the_users_sessions_and_grants(
    browser, user, confidential_client, admin_client
):
    """RFC 9700 §4.14.2: a password change is a security event; the not-before time does the rest."""
    tokens = _tokens(browser, confidential_client)
    assert _admin_sets_password(admin_client, user).status_code == HTTPStatus.FOUND
    assert browser.get("/accounts/")["Location"].startswith(LOGIN)
    assert refresh(confidential_client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    (record,) = [r for r in _not_before_records() if r["sub"] == str(user.pk)]
    assert record["detail"]["reason"] == "password_changed" and record["detail"]["by"]


def test_a_password_form_that_did_not_save_changes_nothing(browser, user, admin_client):
    admin_client.post(f"/admin/accounts/user/{user.pk}/password/", {"password1": "a", "password2": "b"})
    assert browser.get("/accounts/").status_code == HTTPStatus.OK
    assert not _not_before_records()


def test_deactivation_ends_the_grants_for_good(browser, user, confidential_client, admin_client):
    """Reactivating the account does not bring back what was granted before it was deactivated."""
    from accounts import services

    tokens = _tokens(browser, confidential_client)
    services.deactivate_user(request=None, user=user)
    user.is_active = True
    user.save()
    assert refresh(confidential_client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert browser.get("/accounts/")["Location"].startswith(LOGIN)


def test_deactivating_in_the_admin_sets_the_time(user, admin_client):
    page = admin_client.get(f"/admin/accounts/user/{user.pk}/change/")
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(is_active="", groups=[], user_permissions=[], is_staff="", is_superuser="")
    data = {k: v for k, v in data.items() if v != ""}
    response = admin_client.post(f"/admin/accounts/user/{user.pk}/change/", data)
    assert response.status_code == HTTPStatus.FOUND, response.content[:500]
    user.refresh_from_db()
    assert not user.is_active and user.not_before is not None
    assert [r["detail"]["reason"] for r in _not_before_records()] == ["deactivated"]


def _not_before_records():
    records = LedgerRecord.objects.filter(event="account.not_before").order_by("id")
    return [json.loads(record.body) for record in records]
