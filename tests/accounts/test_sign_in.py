"""Sign-in and sign-out: the SSO session's front door (OWASP ASVS V2/V3, RFC 6749 §10.12)."""

import re
from http import HTTPStatus

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.test import Client as HttpClient

from accounts.models import User
from accounts.services import create_user
from tests.conftest import ENROLL, MFA, REDIRECT_URI, second_step
from tests.factories import PASSWORD, UserFactory
from tests.oauth_client import AuthorizationRequest, query_of

LOGIN = "/accounts/login"
HOME = "/accounts/"
CSRF_VALUE = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')


def sign_in(http, email, password=PASSWORD, **extra):
    """The password step, then the second factor (or forced enrollment) when the server asks for it."""
    response = http.post(LOGIN, {"email": email, "password": password, **extra})
    if response.status_code == HTTPStatus.FOUND and response["Location"] in (MFA, ENROLL):
        return second_step(http, User.objects.get(email__iexact=email.strip()), response)
    return response


def signed_in_user_id(http):
    return http.session.get(SESSION_KEY)


def test_signing_in_with_email_and_password_starts_a_session(client, user):
    """ASVS V2.1: a user signs in with e-mail and password and lands on the account page."""
    response = sign_in(client, user.email)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == HOME
    assert signed_in_user_id(client) == str(user.pk)
    assert client.get(HOME).status_code == HTTPStatus.OK


@pytest.mark.parametrize(
    "typed", ["Grace.Hopper@Example.COM", "GRACE.HOPPER@EXAMPLE.COM", "  grace.hopper@example.com  "]
)
def test_email_is_matched_case_insensitively(client, db, typed):
    """RFC 5321 §2.4 in practice: people type their address in any case; it is the same account."""
    user = create_user(email="Grace.Hopper@example.com", password=PASSWORD)
    response = sign_in(client, typed)
    assert response.status_code == HTTPStatus.FOUND
    assert signed_in_user_id(client) == str(user.pk)


def test_wrong_password_and_unknown_email_give_the_identical_answer(db):
    """ASVS V2.2.1 / V3.2: a failed sign-in does not reveal whether the account exists."""
    create_user(email="known@example.com", password=PASSWORD)
    wrong_password = sign_in(HttpClient(), "known@example.com", "not the password 123")
    unknown_email = sign_in(HttpClient(), "unknown@example.com", "not the password 123")
    assert wrong_password.status_code == unknown_email.status_code == HTTPStatus.BAD_REQUEST

    def page(response, email):
        return CSRF_VALUE.sub(b"", response.content).replace(email.encode(), b"EMAIL")

    assert page(wrong_password, "known@example.com") == page(unknown_email, "unknown@example.com")
    assert set(wrong_password.headers) == set(unknown_email.headers)
    assert not signed_in_user_id(HttpClient())


def test_inactive_user_cannot_sign_in_and_gets_the_same_answer(client, user):
    """ASVS V2.2: a deactivated account cannot sign in, and the answer does not say it exists."""
    user.is_active = False
    user.save()
    response = sign_in(client, user.email)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"The e-mail address or password is not correct." in response.content
    assert signed_in_user_id(client) is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"email": "", "password": ""},
        {"email": "not-an-address", "password": PASSWORD},
        {"email": "a\x00@example.com", "password": PASSWORD},
        {"email": "user@example.com", "password": "x" * 5000},
        {"email": "<script>alert(1)</script>@example.com", "password": PASSWORD},
    ],
)
def test_malformed_sign_in_input_gets_the_generic_failure(client, db, data):
    """ASVS V5.1: bad input is a 400 with the same message, never a 500 or an echo of markup."""
    response = client.post(LOGIN, data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"The e-mail address or password is not correct." in response.content
    assert b"<script>alert(1)</script>" not in response.content


def test_the_password_is_never_sent_back_in_the_page(client, user):
    """ASVS V2.1: a failed attempt does not put the typed password into the re-rendered form."""
    response = sign_in(client, user.email, "typed-secret-password-98765")
    assert b"typed-secret-password-98765" not in response.content


def test_session_key_changes_at_sign_in(client, user):
    """ASVS V3.2.1 (session fixation): a new session identifier on authentication."""
    session = client.session
    session["before"] = "sign-in"
    session.save()
    before = session.session_key
    sign_in(client, user.email)
    after = client.cookies["uaa_session"].value
    assert after != before
    planted = HttpClient()
    planted.cookies["uaa_session"] = before
    assert planted.get(HOME).status_code == HTTPStatus.FOUND  # the old id is not signed in


def test_session_cookie_is_http_only_and_same_site_lax(client, user):
    """ASVS V3.4.2/V3.4.3: the session cookie is HttpOnly and SameSite=Lax (sent on top-level redirects)."""
    response = sign_in(client, user.email)
    cookie = response.cookies["uaa_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["domain"]


def test_csrf_cookie_is_http_only_and_same_site_lax(client, db):
    """The CSRF cookie is not readable by scripts either; the token travels in the form."""
    response = client.get(LOGIN)
    cookie = response.cookies["uaa_csrf"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "http://testserver.evil.example/",
        "https:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http://testserver@evil.example/",
        " https://evil.example",
        "\thttps://evil.example",
    ],
)
def test_next_pointing_elsewhere_is_ignored(client, user, target):
    """RFC 6749 §10.15 / ASVS V5.1.5: no open redirect through the sign-in page's next parameter."""
    response = sign_in(client, user.email, next=target)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == HOME
    page = client.get(LOGIN + "?next=" + target.replace("&", "%26"))
    assert target.strip().encode() not in page.content


def test_next_on_this_server_is_followed(client, user):
    """OIDC Core §3.1.2.3: after signing in, the user continues the request that sent them here."""
    target = "/oauth/authorize?client_id=abc&state=xyz"
    response = sign_in(client, user.email, next=target)
    assert response["Location"] == target


def test_next_survives_a_failed_attempt(client, user):
    """A mistyped password does not lose the place the user was going to."""
    target = "/oauth/authorize?client_id=abc&state=xyz"
    failed = client.post(
        LOGIN + "?next=" + "/oauth/authorize%3Fclient_id%3Dabc%26state%3Dxyz", {"email": user.email}
    )
    assert failed.status_code == HTTPStatus.BAD_REQUEST
    assert b'name="next" value="/oauth/authorize?client_id=abc&amp;state=xyz"' in failed.content
    assert sign_in(client, user.email, next=target)["Location"] == target


def test_sign_in_form_is_csrf_protected(user):
    """ASVS V4.2.2 (login CSRF): a cross-site form cannot sign the victim in to the attacker's account."""
    http = HttpClient(enforce_csrf_checks=True)
    response = sign_in(http, user.email)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert signed_in_user_id(http) is None
    token = http.get(LOGIN).context["csrf_token"]
    response = sign_in(http, user.email, csrfmiddlewaretoken=token)
    assert response.status_code == HTTPStatus.FOUND


def test_sign_out_by_post_ends_the_session(browser, user):
    """ASVS V3.3.1: signing out invalidates the session on the server."""
    old_key = browser.cookies["uaa_session"].value
    response = browser.post("/accounts/logout")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == LOGIN
    assert browser.get(HOME).status_code == HTTPStatus.FOUND
    replay = HttpClient()
    replay.cookies["uaa_session"] = old_key
    assert replay.get(HOME).status_code == HTTPStatus.FOUND


def test_sign_out_by_get_only_asks(browser):
    """ASVS V3.3: a link or image cannot sign the user out; GET shows a confirmation form."""
    response = browser.get("/accounts/logout")
    assert response.status_code == HTTPStatus.OK
    assert browser.get(HOME).status_code == HTTPStatus.OK


def test_sign_out_form_is_csrf_protected(user):
    """ASVS V4.2.2: a cross-site form cannot sign the user out."""
    http = HttpClient(enforce_csrf_checks=True)
    token = http.get(LOGIN).context["csrf_token"]
    sign_in(http, user.email, csrfmiddlewaretoken=token)
    assert http.post("/accounts/logout").status_code == HTTPStatus.FORBIDDEN
    assert http.get(HOME).status_code == HTTPStatus.OK


def test_argon2_is_the_password_hasher(settings, db, real_password_hashing):
    """ASVS V2.4.1: passwords are stored with Argon2 (OWASP's first choice)."""
    assert settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    user = create_user(email="argon@example.com", password=PASSWORD)
    assert user.password.startswith("argon2$argon2id$")
    assert PASSWORD not in user.password


def test_an_older_hash_is_upgraded_to_argon2_at_sign_in(client, db, real_password_hashing):
    """ASVS V2.4: a password stored with an older hasher is re-hashed with Argon2 when it is next used."""
    user = UserFactory(email="legacy@example.com")
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save()
    assert sign_in(client, user.email).status_code == HTTPStatus.FOUND
    user.refresh_from_db()
    assert user.password.startswith("argon2$")


def test_sign_in_records_last_login(client, user):
    """The admin sees when an account was last used."""
    assert user.last_login is None
    sign_in(client, user.email)
    user.refresh_from_db()
    assert user.last_login is not None


def test_sign_in_page_is_shown_to_a_signed_in_user(browser):
    """OIDC Core §3.1.2.1 prompt=login sends a signed-in user here; the page must offer the form."""
    response = browser.get(LOGIN)
    assert response.status_code == HTTPStatus.OK
    assert b'name="password"' in response.content


def test_deactivating_a_user_ends_their_open_sessions(browser, user, confidential_client):
    """ASVS V3.3.4: a deactivated account loses access at once, including sessions already open."""
    user.is_active = False
    user.save()
    assert browser.get(HOME).status_code == HTTPStatus.FOUND
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = browser.get(request.url(prompt="none"))
    assert query_of(response["Location"])["error"] == "login_required"


def test_changing_the_password_ends_other_sessions(browser, user):
    """ASVS V3.3.3: after a password change, other sessions must sign in again."""
    user.set_password("a brand new password 2030")
    user.save()
    assert browser.get(HOME).status_code == HTTPStatus.FOUND
