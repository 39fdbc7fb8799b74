"""Shared fixtures: users, clients, signed-in browsers, and a code-flow helper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client as HttpClient

from tests.factories import PASSWORD, UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, basic_auth, exchange_code
from tokens.keys import clear_key_cache, clear_public_key_cache
from uaa.oauth.models import Client
from uaa.oauth.services import register_client

REDIRECT_URI = "https://rp.example.com/callback"


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
    response = http.post("/accounts/login", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
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
