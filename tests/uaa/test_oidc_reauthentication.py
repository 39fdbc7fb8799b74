"""OIDC Core §3.1.2.1 ``prompt=login`` and ``max_age``: a re-authentication the request asked for is bound
to that request server-side, so it cannot be skipped by opening the way back from the sign-in page.

Attacker: someone at a browser that is already signed in (an unlocked computer, a copied session cookie)
who does not know the password. The client asked for ``prompt=login`` or ``max_age=0`` to be sure the
person at the keyboard is the user (a payment, a settings change). They must not get a code without a
sign-in that happened after the request, and the ID token's ``auth_time`` must show that sign-in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client as HttpClient
from freezegun import freeze_time

from tests.conftest import LOGIN, REDIRECT_URI, sign_in
from tests.oauth_client import AuthorizationRequest, exchange_code, query_of
from tests.uaa.endpoints import verified
from uaa.oauth.models import AuthorizationCode

SIGNED_IN_AT = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
REQUESTED_AT = SIGNED_IN_AT + timedelta(minutes=5)
ISSUER = "http://testserver"


@pytest.fixture
def trusted_client(client_factory):
    """A first-party client: no consent page, so any request that passes the sign-in checks gets a code."""
    return client_factory(name="First party", trusted=True)


@pytest.fixture
def signed_in(user):
    """A browser that signed in at SIGNED_IN_AT; the clock is at REQUESTED_AT, five minutes later."""
    with freeze_time(SIGNED_IN_AT) as clock:
        http = HttpClient()
        assert sign_in(http, user).status_code == HTTPStatus.FOUND
        clock.move_to(REQUESTED_AT)
        yield http, clock


def _request(registered):
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)


def _next_of(response):
    location = urlsplit(response["Location"])
    assert location.path == LOGIN, response["Location"]
    return parse_qs(location.query)["next"][0]


def _auth_time(registered, request, code):
    response = exchange_code(HttpClient(), code=code, request=request, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    _, claims = verified(response.json()["id_token"])
    return claims["auth_time"]


REAUTHENTICATION_DEMANDS = [{"prompt": "login"}, {"max_age": "0"}, {"prompt": "login", "max_age": "0"}]


@pytest.mark.parametrize("demand", REAUTHENTICATION_DEMANDS)
def test_opening_the_way_back_without_signing_in_gets_no_code(signed_in, trusted_client, demand):
    """OIDC Core §3.1.2.1 prompt=login: "The Authorization Server SHOULD prompt the End-User for
    reauthentication"; max_age: "If the elapsed time is greater than this value, the OP MUST attempt to
    actively re-authenticate the End-User" (max_age=0 is equivalent to prompt=login). The ``next`` URL of
    the sign-in redirect, opened directly, is the same request: it asks for the sign-in again."""
    http, clock = signed_in
    request = _request(trusted_client)
    way_back = _next_of(http.get(request.url(**demand)))
    clock.tick(timedelta(seconds=5))
    response = http.get(way_back)
    assert response.status_code == HTTPStatus.FOUND
    assert not response["Location"].startswith(REDIRECT_URI), response["Location"]
    assert urlsplit(response["Location"]).path == LOGIN
    assert not AuthorizationCode.objects.exists()


@pytest.mark.parametrize("demand", REAUTHENTICATION_DEMANDS)
def test_after_a_real_sign_in_the_code_carries_the_new_auth_time(signed_in, user, trusted_client, demand):
    """OIDC Core §2 auth_time: "Time when the End-User authentication occurred", here the sign-in the
    request asked for, after the request began; §3.1.2.1: one sign-in satisfies it (no loop)."""
    http, clock = signed_in
    request = _request(trusted_client)
    way_back = _next_of(http.get(request.url(**demand)))
    clock.tick(timedelta(seconds=40))  # a new TOTP time step: the earlier code may not be replayed
    signed_in_again = sign_in(http, user, next=way_back)
    assert signed_in_again["Location"] == way_back
    response = http.get(way_back)
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["state"] == request.state
    auth_time = _auth_time(trusted_client, request, params["code"])
    assert auth_time == int((REQUESTED_AT + timedelta(seconds=40)).timestamp())
    assert auth_time >= int(REQUESTED_AT.timestamp())


def test_a_slow_sign_in_still_satisfies_a_short_max_age(signed_in, user, trusted_client):
    """OIDC Core §3.1.2.1 max_age: the sign-in the request asked for answers it even when the user took
    longer than max_age to type the password and the code (no loop back to the sign-in page)."""
    http, clock = signed_in
    request = _request(trusted_client)
    way_back = _next_of(http.get(request.url(max_age="10")))
    clock.tick(timedelta(seconds=45))
    sign_in(http, user, next=way_back)
    clock.tick(timedelta(seconds=20))  # 20 s after the sign-in, with max_age=10
    response = http.get(way_back)
    assert query_of(response["Location"])["code"]


def test_the_reauthentication_answers_one_request_only(signed_in, user, trusted_client):
    """OIDC Core §3.1.2.1: the re-authentication is for the request that asked for it. Once its code is
    issued, the same URL opened again (history, a bookmark) asks for another sign-in."""
    http, clock = signed_in
    request = _request(trusted_client)
    way_back = _next_of(http.get(request.url(prompt="login")))
    clock.tick(timedelta(seconds=40))
    sign_in(http, user, next=way_back)
    assert query_of(http.get(way_back)["Location"])["code"]
    clock.tick(timedelta(seconds=5))
    again = http.get(way_back)
    assert urlsplit(again["Location"]).path == LOGIN
    assert AuthorizationCode.objects.count() == 1


def test_a_sign_in_for_one_request_does_not_answer_another(signed_in, user, trusted_client):
    """OIDC Core §3.1.2.1: each prompt=login request is answered by a sign-in after it began."""
    http, clock = signed_in
    first = _request(trusted_client)
    way_back = _next_of(http.get(first.url(prompt="login")))
    clock.tick(timedelta(seconds=40))
    sign_in(http, user, next=way_back)
    clock.tick(timedelta(seconds=5))
    second = _request(trusted_client)
    response = http.get(second.url(prompt="login"))
    assert urlsplit(response["Location"]).path == LOGIN


def test_a_signed_out_browser_signs_in_once_for_prompt_login(user, trusted_client):
    """OIDC Core §3.1.2.1: a visitor with no session is asked to sign in once, and that sign-in is the
    re-authentication prompt=login asked for."""
    http = HttpClient()
    request = _request(trusted_client)
    way_back = _next_of(http.get(request.url(prompt="login", max_age="0")))
    sign_in(http, user, next=way_back)
    assert query_of(http.get(way_back)["Location"])["code"]


def test_the_way_back_keeps_the_request_as_it_came(signed_in, trusted_client):
    """OIDC Core §3.1.2.3: after authenticating, the server resumes the same request; nothing in it is
    dropped, so nothing the client asked for can be lost on the way."""
    http, _clock = signed_in
    request = _request(trusted_client)
    url = request.url(prompt="login consent", max_age="0")
    assert _next_of(http.get(url)) == url


# --- prompt=none: the error for what the request would need ---------------------------------------


def test_prompt_none_with_max_age_zero_is_login_required(signed_in, trusted_client):
    """OIDC Core §3.1.2.6 login_required: the request cannot complete without authenticating the user."""
    http, _clock = signed_in
    request = _request(trusted_client)
    params = query_of(http.get(request.url(prompt="none", max_age="0"))["Location"])
    assert params == {"error": "login_required", "state": request.state, "iss": ISSUER}
