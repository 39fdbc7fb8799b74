"""WebAuthn (W3C Web Authentication Level 2) as a second factor: register, sign in, refuse bad responses."""

import html
import re
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from accounts.models import WebAuthnCredential
from tests.accounts.authenticator import SoftAuthenticator
from tests.accounts.conftest import step_up
from tests.conftest import ENROLL, LOGIN, MFA
from tests.factories import PASSWORD, UserFactory

OPTIONS = re.compile(  # json_script (the enrollment page) writes the id first
    r'<script (?:type="application/json" id="webauthn-options"|id="webauthn-options" type="application/json")'
    r">(.*?)</script>",
    re.S,
)


def options_of(response):
    return html.unescape(OPTIONS.search(response.content.decode()).group(1))


@pytest.fixture
def enrolled(db):
    """A user who enrolled a passkey (and no app) at their first sign-in."""
    user = UserFactory(mfa=False)
    authenticator = SoftAuthenticator()
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    page = http.get(ENROLL)
    response = http.post(
        ENROLL, {"method": "webauthn", "credential": authenticator.create(options_of(page)), "name": "Laptop"}
    )
    assert response.status_code == HTTPStatus.OK, response.content[:400]
    assert b'id="backup-codes"' in response.content  # the first factor comes with backup codes, shown once
    return user, authenticator, http


def test_registering_a_passkey_at_first_sign_in_completes_it(enrolled):
    """WebAuthn §7.1: the attestation verifies; the credential and its public key are stored."""
    user, _authenticator, http = enrolled
    (credential,) = WebAuthnCredential.objects.filter(user=user)
    assert credential.name == "Laptop"
    assert credential.backed_up is False
    assert http.session["uaa_amr"] == ["pwd", "hwk", "mfa"]  # RFC 8176 §2: proof of possession of a key
    assert http.session["uaa_acr"] == "urn:uaa:acr:mfa"


def test_options_name_the_issuers_host_as_the_relying_party(enrolled):
    user, _authenticator, _http = enrolled
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    options = options_of(http.get(MFA))
    assert '"rpId": "testserver"' in options
    assert '"userVerification": "preferred"' in options


def test_a_passkey_signs_the_user_in_as_second_factor(enrolled):
    """WebAuthn §7.2: the assertion verifies against the stored key, and the counter moves on."""
    user, authenticator, _ = enrolled
    http = HttpClient()
    assert http.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == MFA
    assertion = authenticator.get(options_of(http.get(MFA)))
    response = http.post(MFA, {"method": "webauthn", "credential": assertion})
    assert response.status_code == HTTPStatus.FOUND
    assert http.session["uaa_amr"] == ["pwd", "hwk", "mfa"]
    assert WebAuthnCredential.objects.get(user=user).sign_count == authenticator.sign_count


def test_a_replayed_assertion_is_refused(enrolled):
    """WebAuthn §13.4.3: each ceremony has a fresh challenge, so a captured response is worthless."""
    user, authenticator, _ = enrolled
    first = HttpClient()
    first.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assertion = authenticator.get(options_of(first.get(MFA)))
    assert first.post(MFA, {"method": "webauthn", "credential": assertion}).status_code == HTTPStatus.FOUND
    second = HttpClient()
    second.post(LOGIN, {"email": user.email, "password": PASSWORD})
    second.get(MFA)
    response = second.post(MFA, {"method": "webauthn", "credential": assertion})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"could not be verified" in response.content


def test_an_assertion_made_for_another_origin_is_refused(enrolled):
    """WebAuthn §7.2 step 13: the origin in clientDataJSON must be the relying party's (anti-phishing)."""
    user, authenticator, _ = enrolled
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assertion = authenticator.get(options_of(http.get(MFA)), origin="https://uaa.evil.example")
    response = http.post(MFA, {"method": "webauthn", "credential": assertion})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "_auth_user_id" not in http.session


@pytest.mark.parametrize("credential", ["{}", "not json", "[]", '{"id": 1}', "x" * 20000])
def test_malformed_responses_are_refused_with_a_clear_message(enrolled, credential):
    user, _authenticator, _ = enrolled
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    http.get(MFA)
    response = http.post(MFA, {"method": "webauthn", "credential": credential})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"could not be verified" in response.content


def test_another_users_passkey_does_not_work(enrolled):
    _user, authenticator, _ = enrolled
    other = UserFactory()
    WebAuthnCredential.objects.create(
        user=other, name="Other", credential_id="b3RoZXI", public_key=b"\x00", sign_count=0
    )
    http = HttpClient()
    http.post(LOGIN, {"email": other.email, "password": PASSWORD})
    assertion = authenticator.get(options_of(http.get(MFA)))
    assert (
        http.post(MFA, {"method": "webauthn", "credential": assertion}).status_code == HTTPStatus.BAD_REQUEST
    )


def test_a_synced_passkey_is_a_software_secured_key(db):
    """RFC 8176 §2: swk where the private key is not bound to one device (a backed-up passkey)."""
    user = UserFactory(mfa=False)
    authenticator = SoftAuthenticator(synced=True)
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    page = http.get(ENROLL)
    http.post(
        ENROLL, {"method": "webauthn", "credential": authenticator.create(options_of(page)), "name": "Phone"}
    )
    assert WebAuthnCredential.objects.get(user=user).backed_up is True
    assert http.session["uaa_amr"] == ["pwd", "swk", "mfa"]


def test_a_signed_in_user_adds_a_passkey_from_the_security_page(browser, user):
    """Adding a factor needs the factor re-entered in this session (a step-up), and no new sign-in."""
    step_up(browser, user)
    authenticator = SoftAuthenticator()
    page = browser.get(ENROLL)
    assert page.status_code == HTTPStatus.OK
    credential = authenticator.create(options_of(page))
    response = browser.post(ENROLL, {"method": "webauthn", "credential": credential, "name": "Desk key"})
    assert response.status_code == HTTPStatus.OK  # this user had no backup codes yet: they are shown now
    assert b'id="backup-codes"' in response.content
    assert WebAuthnCredential.objects.get(user=user).name == "Desk key"
    assert "Desk key" in browser.get("/accounts/security").content.decode()


def test_adding_a_factor_long_after_sign_in_asks_for_the_factor_again(user):
    from datetime import timedelta

    from freezegun import freeze_time

    from tests.conftest import sign_in

    with freeze_time("2030-01-01 09:00") as clock:
        http = HttpClient()
        sign_in(http, user)
        clock.tick(timedelta(minutes=6))
        response = http.get(ENROLL)
    assert response["Location"] == "/accounts/security/verify?next=%2Faccounts%2Fmfa%2Fenroll"
