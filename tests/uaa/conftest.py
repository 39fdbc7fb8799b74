"""Fixtures for the protocol tests under tests/uaa."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Argon2 costs ~0.4 s per sign-in and these tests sign in hundreds of times; not their subject."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "uaa.oauth.hashers.ClientSecretHasher",
    ]
