"""Attack: a stolen refresh token outlives "Sign out everywhere" (issue 8, item 14).

The attacker holds a refresh token issued to one of the user's applications (copied from a lost laptop or
a compromised app). The user notices and presses "Sign out everywhere" on the Security page. With the
box "Also sign out of applications" ticked (the default), the attacker must not get another access token
with it, and a resource server asking introspection must hear that the tokens are inactive.

RFC 7009 §2.1 describes revoking a refresh token and its access tokens; RFC 9700 §4.14.2 recommends
revoking refresh tokens when the user's session ends or they log out; RFC 7662 §2.2: a revoked token's
introspection answer is ``{"active": false}``.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from tests.conftest import sign_in
from tests.factories import UserFactory
from tests.uaa.endpoints import introspect, refresh, userinfo
from tokens import ledger
from tokens.models import LedgerRecord

SIGN_OUT_EVERYWHERE = "/accounts/security/sign-out-everywhere"


@pytest.fixture
def stolen(code_flow, confidential_client):
    """The token response of the user's application; the attacker has a copy of it."""
    return code_flow(confidential_client)["tokens"]


def _records(event):
    return [
        json.loads(body) for body in LedgerRecord.objects.filter(event=event).values_list("body", flat=True)
    ]


def test_a_stolen_refresh_token_stops_working_after_sign_out_everywhere(browser, confidential_client, stolen):
    """RFC 9700 §4.14.2 and RFC 7009 §2.1: the refresh token and its access token are revoked with the
    sessions; the refresh answers invalid_grant (RFC 6749 §5.2), introspection inactive (RFC 7662 §2.2)."""
    assert browser.post(SIGN_OUT_EVERYWHERE, {"revoke_tokens": "on"}).status_code == HTTPStatus.FOUND
    response = refresh(confidential_client, stolen["refresh_token"])
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert "access_token" not in response.json()
    assert introspect(confidential_client, stolen["refresh_token"]).json() == {"active": False}
    assert introspect(confidential_client, stolen["access_token"]).json() == {"active": False}
    assert userinfo(stolen["access_token"]).status_code == HTTPStatus.UNAUTHORIZED


def test_the_security_page_offers_to_sign_out_of_applications_ticked_by_default(browser):
    page = browser.get("/accounts/security").content.decode()
    checkbox = page.split('name="revoke_tokens"', 1)[1].split(">", 1)[0]
    assert 'type="checkbox"' in page and "checked" in checkbox


def test_a_refresh_token_rotated_before_sign_out_everywhere_is_revoked_too(
    browser, confidential_client, stolen
):
    """The attacker refreshed first (RFC 9700 §4.14.2 rotation): the token they now hold is revoked."""
    current = refresh(confidential_client, stolen["refresh_token"]).json()
    browser.post(SIGN_OUT_EVERYWHERE, {"revoke_tokens": "on"})
    assert refresh(confidential_client, current["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(confidential_client, current["access_token"]).json() == {"active": False}


def test_the_revocation_is_in_the_audit_ledger_with_digests_only(browser, user, confidential_client, stolen):
    """One record per revoked token (its SHA-256 digest, never the token) and the sign-out's summary."""
    browser.post(SIGN_OUT_EVERYWHERE, {"revoke_tokens": "on"})
    (revoked,) = [r for r in _records(LedgerRecord.Event.TOKEN_REVOKED) if r["sub"] == str(user.pk)]
    assert revoked["client_id"] == confidential_client.client_id
    assert revoked["hashes"] == {
        "refresh_token": ledger.sha256_hex(stolen["refresh_token"]),
        "access_token": ledger.sha256_hex(stolen["access_token"]),
    }
    assert revoked["detail"]["reason"] == "sign_out_everywhere"
    (summary,) = _records(LedgerRecord.Event.SIGNED_OUT)
    (not_before,) = _records("account.not_before")  # committed first (accounts/revocation.py)
    assert not_before["detail"]["reason"] == "sign_out_everywhere"
    assert not_before["detail"]["applications"] is True
    assert summary["detail"] == {
        "everywhere": True,
        "not_before": not_before["detail"]["not_before"],
        "sessions": 1,
        "refresh_tokens_revoked": 1,
        "access_tokens_revoked": 1,
        "authorization_codes_revoked": 0,
    }
    everything = LedgerRecord.objects.values_list("body", flat=True)
    assert not any(stolen["refresh_token"] in body or stolen["access_token"] in body for body in everything)


def test_another_users_tokens_are_left_alone(browser, confidential_client, code_flow, stolen):
    other = UserFactory()
    other_browser = HttpClient()
    sign_in(other_browser, other)
    from tests.conftest import REDIRECT_URI
    from tests.oauth_client import AuthorizationRequest, authorize, exchange_code

    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    params = authorize(other_browser, request)
    theirs = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=confidential_client.basic
    ).json()
    browser.post(SIGN_OUT_EVERYWHERE, {"revoke_tokens": "on"})
    assert refresh(confidential_client, theirs["refresh_token"]).status_code == HTTPStatus.OK


def test_the_user_may_keep_applications_signed_in(browser, user, confidential_client, stolen):
    """Unticked, only the browser sessions end, as before: the choice is the user's, and recorded."""
    browser.post(SIGN_OUT_EVERYWHERE, {})
    assert browser.get("/accounts/").status_code == HTTPStatus.FOUND
    assert refresh(confidential_client, stolen["refresh_token"]).status_code == HTTPStatus.OK
    (summary,) = _records(LedgerRecord.Event.SIGNED_OUT)
    assert summary["detail"]["refresh_tokens_revoked"] == 0


def test_an_unredeemed_authorization_code_is_revoked_too(browser, user, confidential_client):
    """A code issued just before the sign-out cannot be exchanged after it (RFC 6749 §4.1.2: the code is
    bound to the user's authorization, which the user just withdrew)."""
    from tests.conftest import REDIRECT_URI
    from tests.oauth_client import AuthorizationRequest, authorize, exchange_code

    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    params = authorize(browser, request)
    browser.post(SIGN_OUT_EVERYWHERE, {"revoke_tokens": "on"})
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=confidential_client.basic
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert not get_access_token_model().objects.filter(user=user).exists()
    assert not get_refresh_token_model().objects.filter(user=user, revoked__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_refresh_rotating_during_sign_out_everywhere_leaves_no_live_successor(
    browser, user, confidential_client, stolen
):
    """The attacker's refresh holds the token's row lock (as the token endpoint does while it rotates) when
    the user signs out everywhere; the successor it commits meanwhile is revoked too (RFC 9700 §4.14.2).
    On PostgreSQL the sign-out waits for the lock, and a statement that started before the successor was
    committed does not see it; SQLite serializes the two transactions."""
    import threading
    import time

    from django.db import connections, transaction

    refresh_tokens, access_tokens = get_refresh_token_model(), get_access_token_model()
    locked, errors = threading.Event(), []

    def rotate():
        try:
            with transaction.atomic():
                old = refresh_tokens.objects.select_for_update().get(
                    token_checksum=ledger.sha256_hex(stolen["refresh_token"])
                )
                locked.set()
                time.sleep(1.0)  # the sign-out is now waiting for this row
                access = access_tokens.objects.create(
                    user=user,
                    application=old.application,
                    token="successor-access",
                    scope="openid",
                    expires=old.access_token.expires,
                )
                refresh_tokens.objects.create(
                    user=user,
                    application=old.application,
                    token="successor-refresh",
                    access_token=access,
                    token_family=old.token_family,
                )
                old.revoke()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    rotation = threading.Thread(target=rotate)
    rotation.start()
    assert locked.wait(10)
    assert browser.post(SIGN_OUT_EVERYWHERE, {"revoke_tokens": "on"}).status_code == HTTPStatus.FOUND
    rotation.join()
    assert not errors, errors
    assert not refresh_tokens.objects.filter(user=user, revoked__isnull=True).exists()
    assert not access_tokens.objects.filter(user=user).exists()
