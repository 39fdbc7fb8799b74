"""The self-service Security page: factors, backup codes, recent sign-ins, sign out everywhere."""

import json
import re
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django_otp.plugins.otp_totp.models import TOTPDevice
from freezegun import freeze_time

from accounts.mfa import backup_codes
from accounts.models import SignIn, WebAuthnCredential
from tests.accounts.conftest import step_up
from tests.conftest import LOGIN, sign_in
from tests.factories import PASSWORD, UserFactory
from tokens.models import LedgerRecord

SECURITY = "/accounts/security"


def events(name):
    return [json.loads(r.body) for r in LedgerRecord.objects.filter(event=name).order_by("id")]


def test_the_page_lists_factors_backup_codes_and_recent_sign_ins(user):
    http = HttpClient(REMOTE_ADDR="192.0.2.10", HTTP_USER_AGENT="Firefox/140 (test)")
    sign_in(http, user)
    backup_codes.generate_codes(user=user)
    WebAuthnCredential.objects.create(user=user, name="YubiKey 5", credential_id="abc", public_key=b"k")
    page = http.get(SECURITY).content.decode()
    assert "Authenticator app" in page
    assert "YubiKey 5" in page
    assert "10 unused backup codes left" in page
    assert "192.0.2.10" in page and "Firefox/140 (test)" in page
    assert "(this session)" in page
    assert page.count('name="csrfmiddlewaretoken"') >= 4  # CSRF on every form


def test_the_page_needs_a_signed_in_user(client, db):
    assert client.get(SECURITY)["Location"].startswith(LOGIN)


def test_removing_a_factor_needs_the_factor_re_entered(user):
    """Even right after the sign-in; and once re-entered, for UAA_MFA_REAUTH_SECONDS only."""
    backup_codes.generate_codes(user=user)  # so that the app is not the user's last factor
    device = TOTPDevice.objects.get(user=user)
    with freeze_time("2030-01-01 09:00") as clock:
        http = HttpClient()
        sign_in(http, user)
        response = http.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})
        assert response["Location"] == "/accounts/security/verify?next=%2Faccounts%2Fsecurity"
        assert TOTPDevice.objects.filter(pk=device.pk).exists()
        page = http.get(response["Location"])
        assert b"needs your second factor again" in page.content
        assert step_up(http, user, next=SECURITY)["Location"] == SECURITY
        clock.tick(timedelta(minutes=10))
        assert http.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})[
            "Location"
        ].startswith("/accounts/security/verify")
        step_up(http, user)
        http.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    (removed,) = events("mfa.removed")
    assert removed["detail"] == {"factor": "totp", "id": device.pk}
    assert removed["sub"] == str(user.pk)


def browser_user(browser):
    from accounts.models import User

    return User.objects.get(pk=browser.session["_auth_user_id"])


def test_a_user_cannot_remove_someone_elses_factor(browser, db):
    other = UserFactory()
    device = TOTPDevice.objects.get(user=other)
    step_up(browser, browser_user(browser))
    browser.post(f"{SECURITY}/factors/remove", {"kind": "totp", "factor_id": device.pk})
    assert TOTPDevice.objects.filter(pk=device.pk).exists()


def test_regenerating_backup_codes_shows_the_new_set_once_and_the_old_stops_working(browser, user):
    old = backup_codes.generate_codes(user=user)
    step_up(browser, user)
    response = browser.post(f"{SECURITY}/backup-codes")
    page = response.content.decode()
    session_data = str(dict(browser.session.items()))
    assert not any(code in session_data for code in re.findall(r"<code>([a-z0-9-]+)</code>", page))
    fresh = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", page)
    assert len(fresh) == 10 and not set(fresh) & set(old)
    assert not backup_codes.use_code(user=user, code=old[0])
    assert backup_codes.use_code(user=user, code=fresh[0])
    assert events("mfa.backup_codes_generated")


def test_renaming_a_passkey(browser, user):
    credential = WebAuthnCredential.objects.create(
        user=user, name="Key", credential_id="abc", public_key=b"k"
    )
    browser.post(f"{SECURITY}/factors/rename", {"factor_id": credential.pk, "name": "Office key"})
    credential.refresh_from_db()
    assert credential.name == "Office key"


def test_sign_out_everywhere_ends_every_session_of_the_user(user):
    laptop, phone = HttpClient(), HttpClient()
    sign_in(laptop, user)
    sign_in(phone, user)
    bystander_user = UserFactory()
    bystander = HttpClient()
    sign_in(bystander, bystander_user)
    assert laptop.post(f"{SECURITY}/sign-out-everywhere").status_code == HTTPStatus.FOUND
    assert laptop.get("/accounts/").status_code == HTTPStatus.FOUND
    assert phone.get("/accounts/").status_code == HTTPStatus.FOUND
    assert bystander.get("/accounts/").status_code == HTTPStatus.OK
    assert not SignIn.objects.filter(user=user, ended_at=None).exists()


@pytest.mark.parametrize(
    "path", ["/factors/remove", "/factors/rename", "/backup-codes", "/sign-out-everywhere"]
)
def test_every_security_form_is_csrf_protected(user, path):
    """ASVS V4.2.2: a cross-site form cannot change the user's factors or sign them out."""
    http = HttpClient(enforce_csrf_checks=True)
    sign_in(http, user, csrfmiddlewaretoken=http.get(LOGIN).context["csrf_token"])
    assert http.get("/accounts/").status_code == HTTPStatus.OK
    assert http.post(SECURITY + path, {"kind": "totp", "factor_id": 1}).status_code == HTTPStatus.FORBIDDEN


def test_admin_reset_removes_every_factor_is_recorded_and_forces_enrollment(user, admin_client):
    backup_codes.generate_codes(user=user)
    response = admin_client.post(
        "/admin/accounts/user/", {"action": "reset_mfa", "_selected_action": [str(user.pk)]}
    )
    assert response.status_code == HTTPStatus.FOUND
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert backup_codes.remaining(user) == 0
    (reset,) = events("mfa.reset")
    assert reset["sub"] == str(user.pk)
    assert reset["detail"]["totp"] == 1 and reset["detail"]["by"]
    http = HttpClient()
    assert http.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == "/accounts/mfa/enroll"


def test_the_admin_user_page_shows_factors_backup_codes_and_the_lock(user, admin_client, settings):
    from accounts import throttling

    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 1
    backup_codes.generate_codes(user=user)
    throttling.record_failure(email=user.email, ip="192.0.2.1")
    page = admin_client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    assert "authenticator app (Authenticator app)" in page
    assert "Unused backup codes" in page
    assert "not locked" not in page


def test_sign_out_everywhere_reaches_a_session_whose_id_changed_at_an_abandoned_step_up(user, settings):
    """The session id changes when a step-up starts; the sign-in record follows it even if the user
    never finishes, so "sign out everywhere" still ends that session."""
    laptop = HttpClient()
    sign_in(laptop, user)
    laptop.get("/accounts/mfa/step-up?next=/accounts/")  # new session id, second factor never sent
    assert laptop.get("/accounts/").status_code == HTTPStatus.OK  # still signed in as before
    assert SignIn.objects.get(user=user, ended_at=None).session_key == laptop.cookies["uaa_session"].value
    phone = HttpClient()
    sign_in(phone, user)
    phone.post(f"{SECURITY}/sign-out-everywhere")
    assert laptop.get("/accounts/").status_code == HTTPStatus.FOUND


def test_signing_in_again_in_the_same_browser_supersedes_the_earlier_record(browser, user):
    sign_in(browser, user)  # e.g. prompt=login
    (current,) = SignIn.objects.filter(user=user, ended_at=None)
    assert current.session_key == browser.cookies["uaa_session"].value
    assert SignIn.objects.filter(user=user).count() == 2
