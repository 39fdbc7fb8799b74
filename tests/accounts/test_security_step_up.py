"""Attack: a stolen session cookie changes the victim's second factors during the re-authentication window.

Attacker: holds a copy of the victim's SSO session cookie taken within ``UAA_MFA_REAUTH_SECONDS`` of the
victim's sign-in, but not the victim's factor. With "recent sign-in" as the only condition they could
regenerate the backup codes (and read the new set), add their own authenticator app or passkey, or remove
the victim's; "sign out everywhere" ends the sessions but undoes none of it, and the added factor signs
the attacker in again with the password. Each change must need the second factor re-entered in this
session (a step-up) within the window, by a user who has one; each change and each step-up is recorded.

NIST SP 800-63B §6.1.2.1 (binding an authenticator requires authentication at that AAL), §4.2.3 /
§7.2 (re-authentication before sensitive operations), OWASP ASVS V2.5.1/V3.7.1 (re-authenticate before
changing authenticators), RFC 6238 §5.2 (a TOTP code is accepted once).
"""

from __future__ import annotations

import json
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.conf import settings as django_settings
from django.test import Client as HttpClient
from django_otp.plugins.otp_totp.models import TOTPDevice
from freezegun import freeze_time

from accounts.mfa import backup_codes
from tests.conftest import ENROLL, sign_in
from tests.factories import UserFactory, totp_code
from tokens.models import LedgerRecord

SECURITY = "/accounts/security"
VERIFY = "/accounts/security/verify"


def _records(event):
    return [json.loads(r.body) for r in LedgerRecord.objects.filter(event=event).order_by("id")]


@pytest.fixture
def stolen(user):
    """The victim signed in a moment ago; the thief's browser holds a copy of that session cookie."""
    victim = HttpClient()
    sign_in(victim, user)
    thief = HttpClient()
    thief.cookies[django_settings.SESSION_COOKIE_NAME] = victim.cookies[
        django_settings.SESSION_COOKIE_NAME
    ].value
    assert thief.get(SECURITY).status_code == HTTPStatus.OK
    return thief


def _asked_to_step_up(response):
    return response.status_code == HTTPStatus.FOUND and response["Location"].startswith(VERIFY)


def test_a_stolen_fresh_cookie_cannot_regenerate_the_backup_codes(user, stolen):
    old = backup_codes.generate_codes(user=user)
    response = stolen.post(f"{SECURITY}/backup-codes")
    assert _asked_to_step_up(response)
    assert b"<code>" not in response.content
    assert backup_codes.use_code(user=user, code=old[0])  # the old set still works
    assert len(_records("mfa.backup_codes_generated")) == 0


def test_a_stolen_fresh_cookie_cannot_add_a_factor(user, stolen):
    page = stolen.get(ENROLL)
    assert _asked_to_step_up(page)
    assert not TOTPDevice.objects.filter(user=user, confirmed=False).exists()
    response = stolen.post(ENROLL, {"method": "totp", "code": "123456"})
    assert _asked_to_step_up(response)
    assert TOTPDevice.objects.filter(user=user).count() == 1


def test_a_stolen_fresh_cookie_cannot_remove_a_factor(user, stolen):
    backup_codes.generate_codes(user=user)  # so that the app is not the last factor
    device = TOTPDevice.objects.get(user=user)
    response = stolen.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})
    assert _asked_to_step_up(response)
    assert TOTPDevice.objects.filter(pk=device.pk).exists()


def test_after_re_entering_the_factor_the_change_goes_through_and_both_are_recorded(user):
    http = HttpClient()
    sign_in(http, user)
    assert _asked_to_step_up(http.post(f"{SECURITY}/backup-codes"))
    page = http.get(f"{VERIFY}?next={SECURITY}")
    assert page.status_code == HTTPStatus.OK and b"Confirm it is you" in page.content
    answer = http.post(VERIFY, {"method": "totp", "code": totp_code(user), "next": SECURITY})
    assert answer.status_code == HTTPStatus.FOUND and answer["Location"] == SECURITY
    shown = http.post(f"{SECURITY}/backup-codes")
    assert shown.status_code == HTTPStatus.OK and b"<code>" in shown.content
    (verified,) = _records("mfa.verified")
    assert verified["sub"] == str(user.pk) and verified["amr"] == ["otp"]
    assert len(_records("mfa.backup_codes_generated")) == 1


def test_a_wrong_factor_at_the_step_up_is_refused_counted_and_recorded(user, settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 2
    http = HttpClient()
    sign_in(http, user)
    first = http.post(
        VERIFY, {"method": "totp", "code": "000000" if totp_code(user) != "000000" else "111111"}
    )
    assert first.status_code == HTTPStatus.BAD_REQUEST
    assert _records("sign_in.failed")
    assert _asked_to_step_up(http.post(f"{SECURITY}/backup-codes"))
    second = http.post(VERIFY, {"method": "totp", "code": "abcdef"})
    assert second.status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_step_up_lasts_the_window_only(user, settings):
    settings.UAA_MFA_REAUTH_SECONDS = 300
    with freeze_time("2030-01-01 09:00") as clock:
        http = HttpClient()
        sign_in(http, user)
        http.post(VERIFY, {"method": "totp", "code": totp_code(user)})
        clock.tick(timedelta(seconds=301))
        assert _asked_to_step_up(http.post(f"{SECURITY}/backup-codes"))


def test_a_step_up_of_another_session_does_not_count(user, stolen):
    """The step-up belongs to the session that made it; a second browser of the victim's does not lend it."""
    own = HttpClient()
    sign_in(own, user)
    own.post(VERIFY, {"method": "totp", "code": totp_code(user)})
    assert _asked_to_step_up(stolen.post(f"{SECURITY}/backup-codes"))


def test_a_user_who_never_had_a_factor_adds_one_after_a_recent_sign_in(db, settings):
    """Nothing to step up with (MFA optional, no factor): the password of a recent sign-in is all."""
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    http = HttpClient()
    sign_in(http, user)
    page = http.get(ENROLL)
    assert page.status_code == HTTPStatus.OK and b"manual-key" in page.content


def test_the_security_page_says_a_change_needs_the_factor(user, browser):
    assert b"second factor" in browser.get(f"{VERIFY}?next={SECURITY}").content
