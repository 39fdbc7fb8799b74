"""Attack: skip the second factor by enrolling one of your own (issue 8, item 1).

The attacker knows the victim's password and nothing else. After the password step they ask for the
enrollment page (``/accounts/mfa/enroll``) instead of the challenge (``/accounts/mfa``), hoping to be shown
a fresh TOTP key or WebAuthn registration options, confirm it with their own authenticator, and be signed
in with ``amr=[pwd, otp, mfa]`` while their device stays on the account.

NIST SP 800-63B §6.1.2.1: "the CSP SHALL first require the subscriber to authenticate at the AAL (or a
higher AAL) at which the new authenticator will be used". A user who has a second factor (a confirmed
authenticator app, a passkey or security key, or unused backup codes) must prove it before anything new is
bound; only a user without any may enroll a first one after the password (forced enrollment), and that is
checked again, under a lock on the user's row, when the new factor is confirmed.
"""

from __future__ import annotations

import html
import re
import threading
from http import HTTPStatus

import pytest
from django.contrib.auth import SESSION_KEY
from django.db import connections
from django.test import Client as HttpClient
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.mfa import backup_codes
from accounts.models import BackupCode, WebAuthnCredential
from tests.accounts.authenticator import SoftAuthenticator
from tests.accounts.conftest import VERIFY, step_up
from tests.conftest import ENROLL, LOGIN, MFA, enroll_totp, sign_in
from tests.factories import PASSWORD, UserFactory, totp_code
from tokens.models import LedgerRecord

OPTIONS = re.compile(  # json_script (the enrollment page) writes the id first
    r'<script (?:type="application/json" id="webauthn-options"|id="webauthn-options" type="application/json")'
    r">(.*?)</script>",
    re.S,
)
SECRET_MARKERS = (b'id="manual-key"', b'id="qr"', b'id="webauthn-options"', b"otpauth://")
# Registration options the attacker's authenticator answers when the server showed none of its own.
FORGED_OPTIONS = '{"challenge": "AAAAAAAAAAAAAAAAAAAAAA", "rp": {"id": "testserver"}}'


def _with_totp():
    return UserFactory()


def _with_passkey():
    user = UserFactory(mfa=False)
    WebAuthnCredential.objects.create(user=user, name="Laptop", credential_id="dmljdGlt", public_key=b"k")
    return user


def _with_backup_codes_only():
    user = UserFactory(mfa=False)
    backup_codes.generate_codes(user=user)
    return user


VICTIMS = pytest.mark.parametrize(
    "make_victim",
    [
        pytest.param(_with_totp, id="authenticator-app"),
        pytest.param(_with_passkey, id="passkey-only"),
        pytest.param(_with_backup_codes_only, id="backup-codes-only"),
    ],
)


def _factors(user):
    return {
        "totp": sorted(TOTPDevice.objects.filter(user=user).values_list("pk", "confirmed")),
        "webauthn": sorted(WebAuthnCredential.objects.filter(user=user).values_list("pk", flat=True)),
        "backup": BackupCode.objects.filter(user=user).count(),
    }


def _sign_ins(user):
    return LedgerRecord.objects.filter(event=LedgerRecord.Event.SIGN_IN_SUCCEEDED, actor=str(user.pk)).count()


def _options(response) -> str | None:
    found = OPTIONS.search(response.content.decode())
    return html.unescape(found.group(1)) if found else None


def _code_of_shown_key(user) -> str:
    """What the attacker's app would show for a key the server displayed (any unconfirmed device)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        return "123456"  # nothing was shown: a guess is all the attacker has
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits).token():06d}"


def _assert_nothing_gained(http, user, before):
    assert SESSION_KEY not in http.session  # not signed in
    assert http.get("/accounts/").status_code == HTTPStatus.FOUND
    assert _factors(user) == before  # no device, not even an unconfirmed one; no passkey; same codes
    assert _sign_ins(user) == 0  # no sign-in in the audit ledger


@VICTIMS
def test_the_enrollment_page_after_the_password_shows_no_secret_to_a_user_with_a_factor(
    client, db, make_victim
):
    """NIST SP 800-63B §6.1.2.1: nothing new is bound before the existing factor is proven."""
    victim = make_victim()
    before = _factors(victim)
    assert client.post(LOGIN, {"email": victim.email, "password": PASSWORD})["Location"] == MFA
    page = client.get(ENROLL)
    assert page.status_code == HTTPStatus.FORBIDDEN
    assert not any(marker in page.content for marker in SECRET_MARKERS)
    _assert_nothing_gained(client, victim, before)


@VICTIMS
def test_an_authenticator_app_of_the_attackers_cannot_be_enrolled_after_the_password(client, db, make_victim):
    """The whole attack on the TOTP path: open enrollment, confirm a code from the attacker's app."""
    victim = make_victim()
    before = _factors(victim)
    client.post(LOGIN, {"email": victim.email, "password": PASSWORD})
    client.get(ENROLL)
    response = client.post(ENROLL, {"method": "totp", "code": _code_of_shown_key(victim)})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not any(marker in response.content for marker in SECRET_MARKERS)
    _assert_nothing_gained(client, victim, before)


@VICTIMS
def test_a_passkey_of_the_attackers_cannot_be_registered_after_the_password(client, db, make_victim):
    """The whole attack on the WebAuthn path: ask for registration options, answer them with a key."""
    victim = make_victim()
    before = _factors(victim)
    client.post(LOGIN, {"email": victim.email, "password": PASSWORD})
    options = _options(client.get(ENROLL)) or FORGED_OPTIONS
    credential = SoftAuthenticator().create(options)
    response = client.post(ENROLL, {"method": "webauthn", "credential": credential, "name": "Attacker"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    _assert_nothing_gained(client, victim, before)


@VICTIMS
@pytest.mark.parametrize("method", ["totp", "webauthn"])
def test_posting_straight_to_enrollment_after_the_password_is_refused(client, db, make_victim, method):
    victim = make_victim()
    before = _factors(victim)
    client.post(LOGIN, {"email": victim.email, "password": PASSWORD})
    data = {"method": method, "code": "123456", "credential": SoftAuthenticator().create(FORGED_OPTIONS)}
    assert client.post(ENROLL, data).status_code == HTTPStatus.FORBIDDEN
    _assert_nothing_gained(client, victim, before)


def test_the_refused_attempt_leaves_the_real_second_factor_working(client, user):
    """The victim (or whoever holds the real factor) still completes the sign-in the ordinary way."""
    client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    client.get(ENROLL)
    response = client.post(MFA, {"method": "totp", "code": totp_code(user)})
    assert response.status_code == HTTPStatus.FOUND
    assert client.session["uaa_amr"] == ["pwd", "otp", "mfa"]


def test_a_user_with_only_backup_codes_is_challenged_for_one(client, db):
    """Unused backup codes are a factor (a look-up secret, NIST SP 800-63B §5.1.2): they are asked for."""
    victim = _with_backup_codes_only()
    codes = backup_codes.generate_codes(user=victim)
    assert client.post(LOGIN, {"email": victim.email, "password": PASSWORD})["Location"] == MFA
    page = client.get(MFA)
    assert b'id="backup-form"' in page.content
    assert client.post(MFA, {"method": "backup", "code": codes[0]}).status_code == HTTPStatus.FOUND
    assert client.session["uaa_amr"] == ["pwd", "otp", "mfa"]


# --- step-up: a signed-in user asked for a second factor ------------------------------------------------
def test_a_step_up_of_a_user_with_a_factor_cannot_turn_into_an_enrollment(settings, db):
    """Policy off: a password-only session of a user who has an app; the step-up must challenge the app."""
    settings.UAA_MFA_REQUIRED = False
    victim = UserFactory(mfa=False)
    http = HttpClient()
    http.post(LOGIN, {"email": victim.email, "password": PASSWORD})
    assert http.session["uaa_acr"] == "urn:uaa:acr:pwd"
    TOTPDevice.objects.create(user=victim, name="app", confirmed=True, tolerance=1)
    before = _factors(victim)
    assert http.get("/accounts/mfa/step-up?next=/accounts/")["Location"] == MFA
    page = http.get(ENROLL)
    assert page.status_code != HTTPStatus.OK
    assert not any(marker in page.content for marker in SECRET_MARKERS)
    assert (
        http.post(ENROLL, {"method": "totp", "code": _code_of_shown_key(victim)}).status_code != HTTPStatus.OK
    )
    assert _factors(victim) == before
    assert http.session.get("uaa_acr") != "urn:uaa:acr:mfa"


def test_a_step_up_of_a_user_without_a_factor_enrolls_one(settings, db):
    """The same step-up for a user with no factor: enrolling the first one is the step up."""
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assert http.get("/accounts/mfa/step-up?next=/accounts/")["Location"] == ENROLL
    assert enroll_totp(http, user)["Location"] == "/accounts/"
    assert http.session["uaa_acr"] == "urn:uaa:acr:mfa"


# --- adding a factor from the Security page (a signed-in user at AAL2) -----------------------------------
def test_a_signed_in_user_adds_an_authenticator_app_from_the_security_page(browser, user):
    """Not a forced enrollment: the user re-entered their factor in this session (a step-up) just now."""
    step_up(browser, user)
    page = browser.get(ENROLL)
    assert page.status_code == HTTPStatus.OK
    assert b"needs a second factor" not in page.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    code = f"{TOTP(device.bin_key, device.step, device.t0, device.digits).token():06d}"
    response = browser.post(ENROLL, {"method": "totp", "code": code})
    assert response.status_code == HTTPStatus.OK
    assert TOTPDevice.objects.filter(user=user, confirmed=True).count() == 2
    assert _sign_ins(user) == 1  # the original sign-in only: adding a factor signs nobody in


def test_a_password_only_session_of_a_user_with_a_factor_cannot_add_another(settings, db):
    """NIST SP 800-63B §6.1.2.1 from the Security page: a session at AAL1 binds nothing while the user has a
    factor it did not prove; it is sent to re-enter the factor first."""
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    TOTPDevice.objects.create(user=user, name="app", confirmed=True, tolerance=1)
    before = _factors(user)
    response = http.get(ENROLL)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(VERIFY)
    credential = SoftAuthenticator().create(FORGED_OPTIONS)
    assert http.post(ENROLL, {"method": "webauthn", "credential": credential}).status_code == HTTPStatus.FOUND
    assert _factors(user) == before


# --- races: a factor appears between the password step and the enrollment's confirmation -----------------
def _at_enrollment(user):
    http = HttpClient()
    assert http.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == ENROLL
    return http


def test_an_enrollment_confirmed_after_another_session_enrolled_a_factor_is_refused(db):
    """Two sign-ins of a user without a factor both reach enrollment; the second to confirm is refused
    (the user has a factor by then, so the password alone no longer allows binding one)."""
    user = UserFactory(mfa=False)
    first, second = _at_enrollment(user), _at_enrollment(user)
    second_options = _options(second.get(ENROLL))
    first.get(ENROLL)  # the first browser is shown a key for its app
    code = _code_of_shown_key(user)
    registered = second.post(
        ENROLL,
        {"method": "webauthn", "credential": SoftAuthenticator().create(second_options), "name": "Key"},
    )
    assert registered.status_code == HTTPStatus.OK
    assert SESSION_KEY in second.session
    response = first.post(ENROLL, {"method": "totp", "code": code})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert SESSION_KEY not in first.session
    assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    assert _sign_ins(user) == 1


def test_a_passkey_registered_after_another_session_enrolled_a_factor_is_refused(db):
    user = UserFactory(mfa=False)
    first, second = _at_enrollment(user), _at_enrollment(user)
    first_options = _options(first.get(ENROLL))
    assert enroll_totp(second, user).status_code == HTTPStatus.FOUND  # the other session got there first
    credential = SoftAuthenticator().create(first_options)
    response = first.post(ENROLL, {"method": "webauthn", "credential": credential, "name": "Late"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert SESSION_KEY not in first.session
    assert not WebAuthnCredential.objects.filter(user=user).exists()
    assert _sign_ins(user) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_enrollments_of_one_user_bind_one_factor():
    """The re-check runs under a lock on the user's row (SELECT ... FOR UPDATE on PostgreSQL; SQLite takes
    the database lock with BEGIN IMMEDIATE): of several sessions confirming at once, one wins."""
    workers = 4
    user = UserFactory(mfa=False)
    browsers = [_at_enrollment(user) for _ in range(workers)]
    answers = [SoftAuthenticator().create(_options(http.get(ENROLL))) for http in browsers]
    barrier = threading.Barrier(workers)
    statuses, errors = [], []

    def confirm(http, credential):
        try:
            barrier.wait()
            statuses.append(http.post(ENROLL, {"method": "webauthn", "credential": credential}).status_code)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=confirm, args=pair) for pair in zip(browsers, answers, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(statuses) == [HTTPStatus.OK] + [HTTPStatus.FORBIDDEN] * (workers - 1)
    assert WebAuthnCredential.objects.filter(user=user).count() == 1
    assert _sign_ins(user) == 1


def test_a_user_who_enrolled_is_challenged_at_the_next_sign_in(db):
    user = UserFactory(mfa=False)
    http = HttpClient()
    sign_in(http, user)
    assert HttpClient().post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == MFA
