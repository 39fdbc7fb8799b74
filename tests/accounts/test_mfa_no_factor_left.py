"""Attack: an account that had a second factor goes back to "whoever knows the password enrolls first".

Attacker: knows the victim's password, not their factor. Forced enrollment (accounts/signin.py
``Stage.ENROLL``) trusts the password alone, which is right for an account that never had a factor and
wrong for one whose owner enrolled one and then ran out of it: the last backup code spent at a sign-in,
or the last app or passkey removed from the Security page with no unused codes left. The attacker must
not be offered enrollment on such an account; the owner is made to replenish their factors while they
still hold a session at AAL2; the last factor cannot be removed while policy requires one; only an admin's
reset (recorded) opens first enrollment again.

NIST SP 800-63B §6.1.2.1: "the CSP SHALL first require the subscriber to authenticate at the AAL (or a
higher AAL) at which the new authenticator will be used"; §6.1.2.3 (replacement of a lost authenticator
goes through account recovery); §5.1.2.1: a look-up secret is used once.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.mfa import backup_codes
from accounts.models import User
from tests.conftest import ENROLL, LOGIN, MFA, REDIRECT_URI, sign_in
from tests.factories import PASSWORD, UserFactory, totp_code
from tests.oauth_client import AuthorizationRequest
from tokens.models import LedgerRecord

REPLENISH = "/accounts/mfa/replenish"
SECURITY = "/accounts/security"
VERIFY = "/accounts/security/verify"


def _records(event):
    return [json.loads(r.body) for r in LedgerRecord.objects.filter(event=event).order_by("id")]


def _backup_codes_only(left=1):
    """A user whose only factor is backup codes, ``left`` of them unused."""
    user = UserFactory(mfa=False)
    codes = backup_codes.generate_codes(user=user)
    for code in codes[: len(codes) - left]:
        assert backup_codes.use_code(user=user, code=code)
    return user, codes[len(codes) - left :]


def _password(http, user, **extra):
    return http.post(LOGIN, {"email": user.email, "password": PASSWORD, **extra})


def _spend_last_code(user, code, next_url="/accounts/"):
    http = HttpClient()
    assert _password(http, user, next=next_url)["Location"] == MFA
    return http, http.post(MFA, {"method": "backup", "code": code})


def _attacker_tries_first_enrollment(user):
    """The attacker's browser: the password, then the enrollment page. Nothing may be bound."""
    http = HttpClient()
    response = _password(http, user)
    assert response.get("Location") != ENROLL, "the password step sent the attacker to enrollment"
    page = http.get(ENROLL)
    assert b"manual-key" not in page.content and b"otpauth" not in page.content
    assert page.status_code in (HTTPStatus.BAD_REQUEST, HTTPStatus.FORBIDDEN)
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert not http.get("/accounts/").status_code == HTTPStatus.OK  # not signed in
    return response


def test_spending_the_last_backup_code_asks_for_a_new_factor_before_anything_else(confidential_client):
    """The user is signed in (AAL2) but must replenish first: not even an authorization request passes."""
    user, (last,) = _backup_codes_only()
    http, response = _spend_last_code(user, last)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == REPLENISH
    assert http.get("/accounts/")["Location"] == REPLENISH
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    answer = http.get(request.url())
    assert answer.status_code == HTTPStatus.FOUND and answer["Location"] == REPLENISH
    page = http.get(REPLENISH)
    assert page.status_code == HTTPStatus.OK
    assert b"last backup code" in page.content


def test_an_account_whose_last_backup_code_was_spent_is_not_open_to_first_enrollment(db):
    """The owner walked away from the replenish page: the attacker's password gets no enrollment."""
    user, (last,) = _backup_codes_only()
    _spend_last_code(user, last)
    response = _attacker_tries_first_enrollment(user)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert b"administrator" in response.content


def test_new_backup_codes_from_the_replenish_page_continue_the_sign_in(confidential_client):
    user, (last,) = _backup_codes_only()
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    http, _ = _spend_last_code(user, last, next_url=request.url())
    shown = http.post(REPLENISH)
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", shown.content.decode())
    assert len(codes) == 10
    onward = re.search(r'href="([^"]*)" id="continue"', shown.content.decode()).group(1).replace("&amp;", "&")
    assert onward == request.url()
    assert http.get("/accounts/").status_code == HTTPStatus.OK  # the interstitial is over
    assert _records("mfa.backup_codes_generated")


def test_an_authenticator_app_from_the_replenish_page_continues_the_sign_in(db):
    from django_otp.oath import TOTP

    user, (last,) = _backup_codes_only()
    http, _ = _spend_last_code(user, last)
    page = http.get(ENROLL)
    assert page.status_code == HTTPStatus.OK and b"manual-key" in page.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    code = f"{TOTP(device.bin_key, device.step, device.t0, device.digits).token():06d}"
    shown = http.post(ENROLL, {"method": "totp", "code": code})
    assert shown.status_code == HTTPStatus.OK and b"backup-codes" in shown.content
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    assert http.get("/accounts/").status_code == HTTPStatus.OK


def test_the_replenish_stage_does_not_let_another_factor_be_removed_or_enrollment_be_skipped(db):
    """The interstitial allows binding a factor or new codes, nothing else of the Security page."""
    other, (last,) = _backup_codes_only()
    http, _ = _spend_last_code(other, last)
    assert http.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": 1})["Location"] == REPLENISH


def _verify(http, user):
    """The step-up the Security page asks for before a change (re-enter the second factor)."""
    return http.post(VERIFY, {"method": "totp", "code": totp_code(user), "next": SECURITY})


def test_the_last_factor_cannot_be_removed_while_mfa_is_required(user):
    """The owner (or a thief with their session) cannot take the account back to first enrollment."""
    http = HttpClient()
    sign_in(http, user)
    _verify(http, user)
    device = TOTPDevice.objects.get(user=user)
    response = http.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert response.status_code in (HTTPStatus.FOUND, HTTPStatus.BAD_REQUEST, HTTPStatus.FORBIDDEN)
    assert not _records("mfa.removed")
    assert _password(HttpClient(), user)["Location"] == MFA


def test_the_app_can_go_while_unused_backup_codes_remain(user):
    """Another factor remains (NIST SP 800-63B §5.1.2: look-up secrets are a factor)."""
    backup_codes.generate_codes(user=user)
    http = HttpClient()
    sign_in(http, user)
    assert _verify(http, user).status_code == HTTPStatus.FOUND
    device = TOTPDevice.objects.get(user=user)
    http.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    assert _password(HttpClient(), user)["Location"] == MFA  # asked for a backup code


def test_an_account_whose_factor_vanished_is_not_open_to_first_enrollment(user):
    """However the factor went (deleted in the database, the otp admin), the account had one."""
    TOTPDevice.objects.filter(user=user).delete()
    _attacker_tries_first_enrollment(user)


def test_with_mfa_optional_the_owner_may_remove_their_last_factor(user, settings):
    """Policy off (UAA_MFA_REQUIRED=false): a deliberate opt-out, recorded; the account is then a
    password account, as it was before it had a factor."""
    settings.UAA_MFA_REQUIRED = False
    http = HttpClient()
    sign_in(http, user)
    _verify(http, user)
    device = TOTPDevice.objects.get(user=user)
    http.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    (removed,) = _records("mfa.removed")
    assert removed["detail"]["last"] is True
    assert User.objects.get(pk=user.pk).mfa_enrolled_at is None
    assert _password(HttpClient(), user)["Location"] == "/accounts/"


def test_an_admin_reset_reopens_first_enrollment_is_recorded_and_ends_the_users_sessions(user, admin_client):
    http = HttpClient()
    sign_in(http, user)
    admin_client.post("/admin/accounts/user/", {"action": "reset_mfa", "_selected_action": [str(user.pk)]})
    (reset,) = _records("mfa.reset")
    assert reset["detail"]["first_enrollment"] == "reopened"
    assert User.objects.get(pk=user.pk).mfa_enrolled_at is None
    assert http.get("/accounts/")["Location"].startswith(LOGIN)  # the reset ends the user's sessions
    (not_before,) = [r for r in _records("account.not_before") if r["sub"] == str(user.pk)]
    assert not_before["detail"]["reason"] == "mfa_reset" and not_before["detail"]["by"]
    assert _password(HttpClient(), user)["Location"] == ENROLL


def test_a_factor_bound_any_way_marks_the_account(db):
    with_app, without = UserFactory(), UserFactory(mfa=False)  # the factory creates the TOTP device directly
    assert User.objects.get(pk=with_app.pk).mfa_enrolled_at is not None
    assert User.objects.get(pk=without.pk).mfa_enrolled_at is None
    user, _codes = _backup_codes_only(left=3)
    assert User.objects.get(pk=user.pk).mfa_enrolled_at is not None


@pytest.mark.parametrize("left", [2])
def test_a_backup_code_that_is_not_the_last_signs_in_as_before(db, left):
    user, codes = _backup_codes_only(left=left)
    _http, response = _spend_last_code(user, codes[0])
    assert response["Location"] == "/accounts/"
