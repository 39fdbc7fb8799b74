"""TOTP as the second factor (RFC 6238) and its enrollment: QR code, manual key, first code confirms."""

import re
import time
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from freezegun import freeze_time

from accounts.mfa import totp
from tests.conftest import ENROLL, LOGIN, MFA
from tests.factories import PASSWORD, UserFactory


def code_at(device, offset_steps=0):
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits)
    generator.time = time.time() + offset_steps * device.step
    return f"{generator.token():06d}"


@pytest.fixture
def device(user):
    return TOTPDevice.objects.get(user=user)


def password_step(http, user):
    response = http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assert response["Location"] == MFA
    return response


def test_a_current_code_completes_the_sign_in(client, user, device):
    """RFC 6238 §4: the code for the current time step is accepted."""
    password_step(client, user)
    response = client.post(MFA, {"method": "totp", "code": code_at(device)})
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/accounts/"
    assert client.session["uaa_amr"] == ["pwd", "otp", "mfa"]
    assert client.session["uaa_acr"] == "urn:uaa:acr:mfa"


@pytest.mark.parametrize("offset", [-1, 1])
@freeze_time("2030-01-01 09:00:15")  # mid-step: the clock does not cross a step boundary mid-test
def test_one_step_of_clock_drift_is_accepted(offset, device):
    """RFC 6238 §5.2: the verifier SHOULD accept codes from one step behind (or ahead) for network delay."""
    assert totp.verify(device=device, code=code_at(device, offset))


@pytest.mark.parametrize("offset", [-3, 3])
@freeze_time("2030-01-01 09:00:15")
def test_codes_further_out_than_one_step_are_refused(offset, device):
    """RFC 6238 §5.2: a larger acceptable delay window would expose a larger window for attacks."""
    assert not totp.verify(device=device, code=code_at(device, offset))


@freeze_time("2030-01-01 09:00:15")
def test_a_code_is_accepted_only_once(device):
    """RFC 6238 §5.2: the verifier MUST NOT accept the second attempt of the same OTP."""
    code = code_at(device)
    assert totp.verify(device=device, code=code)
    assert not totp.verify(device=device, code=code)


def test_a_replayed_code_fails_the_second_sign_in(user, device):
    """A code seen by someone else (shoulder surfing, a phishing proxy) is worthless once it was used."""
    code = code_at(device)
    first, second = HttpClient(), HttpClient()
    password_step(first, user)
    assert first.post(MFA, {"method": "totp", "code": code}).status_code == HTTPStatus.FOUND
    password_step(second, user)
    response = second.post(MFA, {"method": "totp", "code": code})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"That code is not valid" in response.content
    assert "_auth_user_id" not in second.session


@pytest.mark.parametrize(
    "code", ["", "12345", "1234567", "abcdef", "12 34 5x", "\uff11\uff12\uff13\uff14\uff15\uff16", "0" * 40]
)
def test_malformed_codes_are_refused_with_a_clear_message(client, user, code):
    password_step(client, user)
    response = client.post(MFA, {"method": "totp", "code": code})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"That code is not valid" in response.content
    assert "_auth_user_id" not in client.session


def test_spaces_in_a_typed_code_are_ignored(client, user, device):
    code = code_at(device)
    password_step(client, user)
    response = client.post(MFA, {"method": "totp", "code": f" {code[:3]} {code[3:]} "})
    assert response.status_code == HTTPStatus.FOUND


def test_first_sign_in_without_a_factor_is_sent_to_enrollment(client, db):
    """Policy (UAA_MFA_REQUIRED): a user without a second factor must enroll one; nothing is granted yet."""
    user = UserFactory(mfa=False)
    response = client.post(LOGIN, {"email": user.email, "password": PASSWORD, "next": "/accounts/security"})
    assert response["Location"] == ENROLL
    assert "_auth_user_id" not in client.session
    assert client.get("/accounts/").status_code == HTTPStatus.FOUND  # not signed in
    assert client.get("/accounts/security").status_code == HTTPStatus.FOUND


def test_enrollment_page_shows_a_server_rendered_qr_code_and_the_manual_key(client, db):
    user = UserFactory(mfa=False)
    client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    page = client.get(ENROLL)
    assert page.status_code == HTTPStatus.OK
    html = page.content.decode()
    assert "<svg" in html and "<path" in html  # inline SVG: no external QR service sees the key
    assert "http://" not in html.split("<svg", 1)[1].split("</svg>", 1)[0].replace("http://www.w3.org", "")
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    key = re.search(r'id="manual-key">([A-Z2-7 ]+)<', html).group(1)
    assert key.replace(" ", "") == totp.manual_key(device).replace(" ", "")
    assert device.tolerance == 1


def test_enrollment_is_confirmed_by_a_first_valid_code_and_shows_backup_codes_once(client, db):
    user = UserFactory(mfa=False)
    client.post(LOGIN, {"email": user.email, "password": PASSWORD, "next": "/accounts/security"})
    client.get(ENROLL)
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    wrong = client.post(
        ENROLL, {"method": "totp", "code": "000000" if code_at(device) != "000000" else "111111"}
    )
    assert wrong.status_code == HTTPStatus.BAD_REQUEST
    assert not TOTPDevice.objects.get(pk=device.pk).confirmed
    shown = client.post(ENROLL, {"method": "totp", "code": code_at(device)})
    assert TOTPDevice.objects.get(pk=device.pk).confirmed
    assert client.session["uaa_amr"] == ["pwd", "otp", "mfa"]
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", shown.content.decode())
    assert len(codes) == 10
    assert 'href="/accounts/security"' in shown.content.decode()
    # shown once, in that response only: nothing in the session holds them
    session_data = str(dict(client.session.items()))
    assert not any(code in session_data for code in codes)


def test_the_enrollment_key_is_not_kept_by_a_refused_code_in_another_browser(db):
    """A half-finished sign-in lives in one browser's session: another browser cannot resume it."""
    user = UserFactory(mfa=False)
    first = HttpClient()
    first.post(LOGIN, {"email": user.email, "password": PASSWORD})
    first.get(ENROLL)
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    other = HttpClient()
    response = other.post(ENROLL, {"method": "totp", "code": code_at(device)})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"Sign in again" in response.content
    assert not TOTPDevice.objects.get(pk=device.pk).confirmed
