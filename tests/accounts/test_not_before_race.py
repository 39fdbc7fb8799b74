"""Attack: a thief with a stolen sign-in cookie keeps refresh tokens through "Sign out everywhere".

The attacker holds a copy of the victim's SSO session cookie (from another device of the victim's) and a
confidential client's credentials are not needed for that: they drive a client the victim already
consented to (``prompt=none``, consent remembered), exchanging every code they get and rotating every
refresh token they hold, in several threads, while the victim presses "Sign out everywhere" with "Also
sign out of applications" ticked. Once that request has returned, and once every request the thief had in
flight has finished, the thief must hold nothing that works: no refresh token rotates, no access token
is active at introspection or accepted by userinfo, and no live token, code or session is left in the
database.

RFC 9700 §4.14.2: refresh tokens are revoked when the user logs out at the authorization server (a
security event); RFC 7009 §2.1: revoking a refresh token revokes its access tokens; RFC 6749 §5.2: a
revoked grant is ``invalid_grant``; Keycloak's "not before" revocation policy: every token issued
before the user's not-before time is refused.

On PostgreSQL the requests really overlap (a statement sees only what was committed when it started);
SQLite serializes every writing transaction, so there the race is milder. Run it on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from http import HTTPStatus
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client as HttpClient
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from tests.conftest import REDIRECT_URI, sign_in
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from tests.uaa.endpoints import introspect, refresh, userinfo

SIGN_OUT_EVERYWHERE = "/accounts/security/sign-out-everywhere"
ROUNDS = 10
THIEVES = 3
TOKENS_BEFORE_SIGN_OUT = 6  # the victim notices once the thief has been at it for a while
SCOPE = "openid offline_access"


def _signed_in(user: Any) -> HttpClient:
    http = HttpClient()
    response = sign_in(http, user)
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    return http


class Thief:
    """Threads that loop prompt=none → code exchange → refresh with a copy of the victim's cookie."""

    def __init__(self, registered: Any, cookie: str) -> None:
        self.registered = registered
        self.cookie = cookie
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.refresh_tokens: list[str] = []  # the newest of each chain the thief holds
        self.access_tokens: list[str] = []
        self.problems: list[str] = []
        self.issued = 0

    def _keep(self, body: dict[str, Any], replaces: str | None = None) -> None:
        with self.lock:
            self.issued += 1
            if replaces in self.refresh_tokens:
                self.refresh_tokens.remove(replaces)
            self.refresh_tokens.append(body["refresh_token"])
            self.access_tokens.append(body["access_token"])

    def _loop(self) -> None:
        browser = HttpClient(raise_request_exception=False)
        browser.cookies[settings.SESSION_COOKIE_NAME] = self.cookie
        try:
            while not self.stop.is_set():
                request = AuthorizationRequest(
                    client_id=self.registered.client_id, redirect_uri=REDIRECT_URI, scope=SCOPE
                )
                response = browser.get(request.url(prompt="none"))
                if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
                    self.problems.append(f"authorize answered {response.status_code}")
                code = query_of(response.get("Location", "")).get("code")
                if not code:
                    time.sleep(0.005)
                    continue
                exchanged = exchange_code(
                    HttpClient(raise_request_exception=False),
                    code=code,
                    request=request,
                    auth=self.registered.basic,
                )
                if exchanged.status_code != HTTPStatus.OK:
                    continue
                body = exchanged.json()
                self._keep(body)
                for _ in range(2):  # and rotate it, as a thief keeping the grant alive would
                    rotated = refresh(self.registered, body["refresh_token"])
                    if rotated.status_code != HTTPStatus.OK:
                        break
                    previous, body = body["refresh_token"], rotated.json()
                    self._keep(body, replaces=previous)
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.problems.append(repr(exc))
        finally:
            connection.close()

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._loop) for _ in range(THIEVES)]
        for thread in threads:
            thread.start()
        return threads


def _one_round(registered: Any) -> list[str]:
    user = UserFactory()
    laptop = _signed_in(user)  # where the victim presses the button
    phone = _signed_in(user)  # the session whose cookie was stolen
    authorize(
        phone, AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, scope=SCOPE)
    )
    thief = Thief(registered, phone.cookies[settings.SESSION_COOKIE_NAME].value)
    threads = thief.start()
    deadline = time.monotonic() + 30
    while thief.issued < TOKENS_BEFORE_SIGN_OUT and time.monotonic() < deadline:
        time.sleep(0.01)
    answer = laptop.post(SIGN_OUT_EVERYWHERE, {"revoke_tokens": "on"})
    problems = [] if answer.status_code == HTTPStatus.FOUND else [f"sign-out answered {answer.status_code}"]
    # What the thief holds the moment the sign-out has returned.
    with thief.lock:
        held = list(thief.refresh_tokens), list(thief.access_tokens)
    thief.stop.set()
    for thread in threads:
        thread.join(timeout=120)
    problems += thief.problems
    # Everything the thief got, including what requests in flight at the sign-out gave them.
    live_refresh = get_refresh_token_model().objects.filter(user=user, revoked__isnull=True).count()
    live_access = get_access_token_model().objects.filter(user=user).count()
    live_codes = get_grant_model().objects.filter(user=user).count()
    if live_refresh or live_access or live_codes:
        problems.append(f"{live_refresh} refresh, {live_access} access tokens, {live_codes} codes left live")
    for token in {*held[0], *thief.refresh_tokens}:
        response = refresh(registered, token)
        if response.status_code == HTTPStatus.OK:
            problems.append("a refresh token the thief holds still rotates")
    for token in {*held[1], *thief.access_tokens}:
        if introspect(registered, token).json() != {"active": False}:
            problems.append("an access token the thief holds is active at introspection")
        if userinfo(token).status_code != HTTPStatus.UNAUTHORIZED:
            problems.append("an access token the thief holds is accepted by userinfo")
    stolen = HttpClient()
    stolen.cookies[settings.SESSION_COOKIE_NAME] = thief.cookie
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, scope=SCOPE)
    if "code" in query_of(stolen.get(request.url(prompt="none")).get("Location", "")):
        problems.append("the stolen cookie still gets codes")
    return problems


@pytest.mark.django_db(transaction=True)
def test_a_stolen_cookie_racing_sign_out_everywhere_keeps_no_working_token(confidential_client):
    """After sign out everywhere (applications too) returns, nothing the thief obtained works, in each of
    ROUNDS rounds of THIEVES threads looping prompt=none, code exchange and refresh (RFC 9700 §4.14.2)."""
    failures = {}
    for round_ in range(ROUNDS):
        problems = _one_round(confidential_client)
        if problems:
            failures[round_] = sorted(set(problems))
    assert not failures, failures
