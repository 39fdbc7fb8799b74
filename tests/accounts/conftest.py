"""Fixtures for tests/accounts."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def real_password_hashing() -> None:
    """Marks a test that needs the configured hashers (Argon2); see ``_fast_password_hashing``."""


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    """Argon2 costs ~0.3 s per hash; only the tests that ask for ``real_password_hashing`` pay it."""
    if "real_password_hashing" in request.fixturenames:
        return
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "uaa.oauth.hashers.ClientSecretHasher",
    ]


VERIFY = "/accounts/security/verify"


def step_up(http: Any, user: Any, **data: Any) -> Any:
    """Re-enter the user's authenticator-app code on the step-up page, as the Security page asks before a
    change of factors (accounts/signin.py ``verify_again``)."""
    from tests.factories import totp_code

    response = http.post(VERIFY, {"method": "totp", "code": totp_code(user), **data})
    assert response.status_code == 302, response.content[:300]
    return response
