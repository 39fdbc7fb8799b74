"""Fixtures for the admin API: admin clients registered for admin scopes, their tokens, JSON calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client as HttpClient

from tests.conftest import RegisteredClient
from tests.uaa.endpoints import token_request
from uaa.oauth.models import Client

ALL_ADMIN = (
    "uaa.clients.read uaa.clients.write uaa.users.read uaa.users.write uaa.keys.read uaa.keys.write "
    "uaa.audit.read"
)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "uaa.oauth.hashers.ClientSecretHasher",
    ]


def client_credentials_token(registered: RegisteredClient, scope: str) -> str:
    response = token_request(registered, {"grant_type": "client_credentials", "scope": scope})
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


@pytest.fixture
def admin_client(client_factory: Callable[..., RegisteredClient]) -> Callable[..., RegisteredClient]:
    """A client-credentials client registered for ``scopes`` (all admin scopes by default)."""

    def make(scopes: str = ALL_ADMIN, **kwargs: Any) -> RegisteredClient:
        return client_factory(
            name="Automation",
            grant_type=Client.GRANT_CLIENT_CREDENTIALS,
            redirect_uris=[],
            post_logout_redirect_uris=[],
            allowed_scopes=scopes.split(),
            **kwargs,
        )

    return make


@pytest.fixture
def admin_token(admin_client: Callable[..., RegisteredClient]) -> Callable[[str], str]:
    """An access token from a client registered for, and granted, ``scope``."""

    def make(scope: str = ALL_ADMIN) -> str:
        return client_credentials_token(admin_client(scope), scope)

    return make


def call(method: str, path: str, token: str | None = None, body: Any = None, **extra: Any) -> Any:
    """One API request; ``body`` is sent as JSON unless it is already bytes or str."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    headers.update(extra)
    kwargs: dict[str, Any] = {}
    if body is not None:
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        kwargs = {"data": data, "content_type": extra.pop("content_type", "application/json")}
        headers.pop("content_type", None)
    return getattr(HttpClient(), method.lower())(path, **kwargs, **headers)
