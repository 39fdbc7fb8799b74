"""Shared fixtures: users, clients, signed-in browsers, and a code-flow helper."""

from __future__ import annotations

import html
import importlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.http import HttpResponseRedirect
from django.test import Client as HttpClient

from tests.factories import PASSWORD, UserFactory, totp_code
from tests.oauth_client import AuthorizationRequest, authorize, basic_auth, exchange_code
from tokens.keys import clear_key_cache, clear_public_key_cache
from uaa.oauth import client_cache
from uaa.oauth.models import Client
from uaa.oauth.services import register_client

REDIRECT_URI = "https://rp.example.com/callback"

LOGIN = "/accounts/login"
MFA = "/accounts/mfa"
ENROLL = "/accounts/mfa/enroll"


def pytest_configure(config: pytest.Config) -> None:
    """The test database's directory, ``UAA_VAR_DIR`` (var/test): uaa/settings.py creates none."""
    from pathlib import Path

    from django.conf import settings

    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)


def sign_in(http: HttpClient, user: Any, password: str = PASSWORD, **data: Any) -> Any:
    """Sign in through the real pages: the password step, then (when asked) the TOTP step with a code
    computed from the user's device. Returns the last response (a redirect to ``next`` on success)."""
    response = http.post(LOGIN, {"email": user.email, "password": password, **data})
    return second_step(http, user, response)


def second_step(http: HttpClient, user: Any, response: Any) -> Any:
    """After a password step that asked for one: submit a TOTP code, or enroll when asked to."""
    if response.status_code != 302 or response["Location"] not in (MFA, ENROLL):
        return response
    if response["Location"] == ENROLL:
        return enroll_totp(http, user)
    factor = {"method": "totp", "code": totp_code(user)}
    if "uaa_csrf" in http.cookies:  # for clients that enforce CSRF checks: the cookie's secret
        factor["csrfmiddlewaretoken"] = http.cookies["uaa_csrf"].value
    return http.post(MFA, factor)


def enroll_totp(http: HttpClient, user: Any) -> Any:
    """Forced enrollment through the real page: open it, read the new key, confirm with a first code."""
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    page = http.get(ENROLL)
    assert page.status_code == 200, page.content[:300]
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    code = f"{TOTP(device.bin_key, device.step, device.t0, device.digits).token():06d}"
    data = {"method": "totp", "code": code}
    if "uaa_csrf" in http.cookies:
        data["csrfmiddlewaretoken"] = http.cookies["uaa_csrf"].value
    response = http.post(ENROLL, data)
    # The first backup codes are shown in that response; its "continue" link leads where the sign-in was
    # going. Hand that on as the redirect a user's click amounts to.
    found = re.search(r'href="([^"]*)" id="continue"', response.content.decode())
    if response.status_code == 200 and found:
        return HttpResponseRedirect(html.unescape(found.group(1)))
    return response


@dataclass
class RegisteredClient:
    client: Client
    secret: str | None

    @property
    def client_id(self) -> str:
        return self.client.client_id

    @property
    def basic(self) -> str:
        assert self.secret
        return basic_auth(self.client_id, self.secret)


@pytest.fixture(autouse=True)
def _fresh_key_caches() -> None:
    clear_key_cache()
    clear_public_key_cache()
    client_cache.clear()


@pytest.fixture(autouse=True)
def _own_audit_witness(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test's ledger starts empty, so each gets its own witness file (tokens/witness.py)."""
    settings.UAA_AUDIT_WITNESS = str(tmp_path_factory.getbasetemp() / "witness" / f"{uuid.uuid4().hex}.json")


@pytest.fixture(scope="session", autouse=True)
def _flush_past_the_ledger_delete_guard() -> Iterator[None]:
    """Transactional tests end with a flush, which on SQLite is a DELETE of every row: the ledger's delete
    guard (tokens migration 0011) refuses it, as it should anyone else, so it is lifted for the flush only.
    On PostgreSQL the flush is a TRUNCATE, which the guard lets through."""
    from django.db import connection

    if connection.vendor != "sqlite":
        yield
        return
    guard = importlib.import_module("tokens.migrations.0011_ledger_delete_guard")
    operations = type(connection.ops)
    flush = operations.execute_sql_flush

    def execute_sql_flush(self: Any, sql_list: Iterable[str]) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = %s", [guard.NAME])
            guarded = cursor.fetchone() is not None
            cursor.execute(guard.SQLITE_DROP)
        try:
            flush(self, sql_list)
        finally:
            if guarded:
                with self.connection.cursor() as cursor:
                    cursor.execute(guard.SQLITE_CREATE)

    operations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
    yield
    operations.execute_sql_flush = flush  # type: ignore[method-assign]


@pytest.fixture
def user(db: Any) -> Any:
    return UserFactory()


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def client_factory(db: Any) -> Callable[..., RegisteredClient]:
    def make(**kwargs: Any) -> RegisteredClient:
        defaults: dict[str, Any] = {
            "name": "Relying Party",
            "client_type": Client.CLIENT_CONFIDENTIAL,
            "grant_type": Client.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": [REDIRECT_URI],
            "post_logout_redirect_uris": ["https://rp.example.com/bye"],
        }
        defaults.update(kwargs)
        issued = register_client(**defaults)
        return RegisteredClient(client=issued.client, secret=issued.client_secret)

    return make


@pytest.fixture
def confidential_client(client_factory: Callable[..., RegisteredClient]) -> RegisteredClient:
    return client_factory()


@pytest.fixture
def public_client(client_factory: Callable[..., RegisteredClient]) -> RegisteredClient:
    return client_factory(name="SPA", client_type=Client.CLIENT_PUBLIC)


@pytest.fixture
def service_client(client_factory: Callable[..., RegisteredClient]) -> RegisteredClient:
    return client_factory(
        name="Service",
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        redirect_uris=[],
        post_logout_redirect_uris=[],
        default_audience=["https://api.example.com"],
    )


@pytest.fixture
def browser(user: Any) -> HttpClient:
    """A browser with an SSO session for ``user`` (signed in through the real sign-in page)."""
    http = HttpClient()
    response = sign_in(http, user)
    assert response.status_code == 302, response.content[:300]
    assert response["Location"] != MFA
    return http


@pytest.fixture
def code_flow(browser: HttpClient) -> Callable[..., dict[str, Any]]:
    """Run authorization code + PKCE for a client; returns the token response JSON and the request."""

    def run(registered: RegisteredClient, **overrides: Any) -> dict[str, Any]:
        request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, **overrides)
        params = authorize(browser, request)
        auth = registered.basic if registered.secret else None
        response = exchange_code(HttpClient(), code=params["code"], request=request, auth=auth)
        assert response.status_code == 200, response.content
        return {"tokens": response.json(), "request": request, "params": params, "auth": auth}

    return run
