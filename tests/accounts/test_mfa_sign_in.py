"""The sign-in state machine: password → pending (this browser only) → second factor → signed in."""

from datetime import timedelta
from http import HTTPStatus

from django.contrib.auth import SESSION_KEY
from django.test import Client as HttpClient
from freezegun import freeze_time

from accounts.models import SignIn
from tests.conftest import LOGIN, MFA, sign_in
from tests.factories import PASSWORD, UserFactory, totp_code

HOME = "/accounts/"


def test_the_password_alone_grants_nothing(client, user):
    """Between the steps the user is not signed in: no page, no authorization."""
    response = client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assert response["Location"] == MFA
    assert SESSION_KEY not in client.session
    assert client.get(HOME).status_code == HTTPStatus.FOUND
    assert client.get("/accounts/security").status_code == HTTPStatus.FOUND


def test_the_session_id_changes_after_each_factor(client, user):
    """ASVS V3.2.1: a new session identifier on authentication, here at each step."""
    client.get(LOGIN)
    before = client.cookies["uaa_session"].value if "uaa_session" in client.cookies else None
    client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    after_password = client.cookies["uaa_session"].value
    client.post(MFA, {"method": "totp", "code": totp_code(user)})
    after_factor = client.cookies["uaa_session"].value
    assert len({before, after_password, after_factor}) == 3


def test_the_pending_sign_in_cannot_be_resumed_in_another_browser(client, user):
    client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    other = HttpClient()
    response = other.post(MFA, {"method": "totp", "code": totp_code(user)})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert SESSION_KEY not in other.session


def test_the_pending_sign_in_expires(client, user, settings):
    with freeze_time("2030-01-01 09:00") as clock:
        client.post(LOGIN, {"email": user.email, "password": PASSWORD})
        clock.tick(timedelta(seconds=settings.UAA_MFA_PENDING_SECONDS + 1))
        response = client.post(MFA, {"method": "totp", "code": totp_code(user)})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"took too long" in response.content
    assert SESSION_KEY not in client.session


def test_the_challenge_page_offers_the_users_factors(client, user):
    client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    page = client.get(MFA)
    assert page.status_code == HTTPStatus.OK
    assert b'name="code"' in page.content
    assert b"Use a backup code" in page.content
    assert b'id="webauthn-options"' not in page.content  # no passkey registered


def test_policy_off_lets_a_user_without_factors_in_with_a_password(client, settings, db):
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    response = client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assert response["Location"] == HOME
    assert client.session["uaa_amr"] == ["pwd"]
    assert client.session["uaa_acr"] == "urn:uaa:acr:pwd"


def test_policy_off_still_asks_a_user_with_a_factor_for_it(client, settings, user):
    settings.UAA_MFA_REQUIRED = False
    assert client.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == MFA


def test_each_sign_in_is_recorded_with_ip_and_user_agent(user):
    http = HttpClient(REMOTE_ADDR="192.0.2.44", HTTP_USER_AGENT="TestBrowser/1.0")
    sign_in(http, user)
    (record,) = SignIn.objects.filter(user=user)
    assert record.ip == "192.0.2.44"
    assert record.user_agent == "TestBrowser/1.0"
    assert record.amr == ["pwd", "otp", "mfa"]
    assert record.session_key == http.cookies["uaa_session"].value


def test_mfa_changes_and_sign_ins_are_in_the_audit_ledger(client, db):
    import json

    from tokens.models import LedgerRecord

    user = UserFactory(mfa=False)
    from tests.conftest import second_step

    second_step(client, user, client.post(LOGIN, {"email": user.email, "password": PASSWORD}))
    events = [json.loads(body) for body in LedgerRecord.objects.order_by("id").values_list("body", flat=True)]
    names = [event["event"] for event in events]
    assert names[-3:] == ["mfa.enrolled", "mfa.backup_codes_generated", "sign_in.succeeded"]
    assert events[-3]["detail"]["factor"] == "totp"
    assert events[-1]["acr"] == "urn:uaa:acr:mfa"


# --- timeouts -------------------------------------------------------------------------------------------
def test_an_idle_session_ends(user, settings):
    with freeze_time("2030-01-01 09:00") as clock:
        http = HttpClient()
        sign_in(http, user)
        clock.tick(timedelta(seconds=settings.UAA_SESSION_IDLE_TIMEOUT - 60))
        assert http.get(HOME).status_code == HTTPStatus.OK  # activity keeps it alive
        clock.tick(timedelta(seconds=settings.UAA_SESSION_IDLE_TIMEOUT - 60))
        assert http.get(HOME).status_code == HTTPStatus.OK
        clock.tick(timedelta(seconds=settings.UAA_SESSION_IDLE_TIMEOUT + 1))
        assert http.get(HOME).status_code == HTTPStatus.FOUND
    assert SignIn.objects.get(user=user).ended_at is not None


def test_a_session_ends_at_its_absolute_limit_however_active(user, settings):
    settings.SESSION_COOKIE_AGE = 3 * 3600
    with freeze_time("2030-01-01 09:00") as clock:
        http = HttpClient()
        sign_in(http, user)
        for _ in range(5):
            clock.tick(timedelta(minutes=35))
            assert http.get(HOME).status_code == HTTPStatus.OK
        clock.tick(timedelta(minutes=30))
        assert http.get(HOME).status_code == HTTPStatus.FOUND


def test_rp_initiated_logout_also_closes_the_sign_in_record(code_flow, confidential_client, browser, user):
    tokens = code_flow(confidential_client)["tokens"]
    browser.get(
        f"/oauth/logout?id_token_hint={tokens['id_token']}&post_logout_redirect_uri=https://rp.example.com/bye"
    )
    assert SignIn.objects.get(user=user).ended_at is not None


def test_a_user_sent_to_enrollment_cannot_skip_to_the_client(client, db, confidential_client):
    """Forced enrollment: until a factor is set up, the authorization request still asks for sign-in."""
    from tests.conftest import ENROLL, REDIRECT_URI
    from tests.oauth_client import AuthorizationRequest, query_of

    user = UserFactory(mfa=False)
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = client.post(LOGIN, {"email": user.email, "password": PASSWORD, "next": request.url()})
    assert response["Location"] == ENROLL
    skipped = client.get(request.url())
    assert skipped.status_code == HTTPStatus.FOUND
    assert skipped["Location"].startswith(LOGIN + "?next=")
    silent = query_of(client.get(request.url(prompt="none"))["Location"])
    assert silent["error"] == "login_required"
    assert "code" not in silent
