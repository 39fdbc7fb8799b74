"""The fast client-secret hasher (uaa/oauth/hashers.py) never stands between a person and their account.

Client secrets are 128 random characters, so a single salted SHA-256 is enough for them; a password is not,
and a row that carries the fast hash must not let anyone in with it (NIST SP 800-63B §5.1.1.2: memorized
secrets are stored with a salted, costly key derivation function). Attacker: someone who can write a user
row (a faulty import, an admin tool, a database-only attacker) or a misconfiguration that puts the fast
hasher first in PASSWORD_HASHERS.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.core.exceptions import ImproperlyConfigured

from accounts.models import User
from tests.factories import PASSWORD, UserFactory
from uaa.oauth.hashers import ClientSecretHasher, verify_client_secret

FAST = "uaa.oauth.hashers.ClientSecretHasher"


def fast_hash(raw: str) -> str:
    hasher = ClientSecretHasher()
    return hasher.encode(raw, hasher.salt())


def test_a_user_row_carrying_the_fast_hash_does_not_authenticate(db, client):
    """SP 800-63B §5.1.1.2: a password protected only by the client-secret hash is never accepted — not by
    check_password, not by authenticate(), not by the sign-in page."""
    user = UserFactory(mfa=False)
    user.password = fast_hash(PASSWORD)
    user.save(update_fields=["password"])
    user.refresh_from_db()
    assert user.password.startswith("uaa_sha256$")
    assert user.check_password(PASSWORD) is False
    assert authenticate(email=user.email, password=PASSWORD) is None
    response = client.post("/accounts/login", {"email": user.email, "password": PASSWORD})
    assert response.status_code != HTTPStatus.FOUND or "/accounts/login" in response["Location"]
    assert "_auth_user_id" not in client.session
    user.refresh_from_db()
    assert user.password.startswith("uaa_sha256$")  # and it was not "upgraded" on a successful check


def test_django_password_api_never_verifies_with_the_fast_hasher():
    """django.contrib.auth.hashers.check_password is the user path: it never accepts the fast hash."""
    assert check_password("s3cret", fast_hash("s3cret")) is False
    assert check_password("s3cret", make_password("s3cret", hasher="uaa_sha256")) is False


def test_set_password_refuses_the_fast_hasher_even_when_misconfigured_as_default(db, settings):
    """A PASSWORD_HASHERS list with the fast hasher first must not store passwords with it."""
    settings.PASSWORD_HASHERS = [FAST, "django.contrib.auth.hashers.MD5PasswordHasher"]
    user = User(email="new@example.com")
    with pytest.raises(ImproperlyConfigured):
        user.set_password("correct horse battery staple 43")
    assert not user.password.startswith("uaa_sha256$")


def test_client_secrets_are_still_hashed_fast_and_verified(service_client):
    """Client secrets keep the fast hash (and client authentication works, through verify_client_secret)."""
    stored = service_client.client.client_secret
    assert identify_hasher(stored).algorithm == "uaa_sha256"
    assert verify_client_secret(provided=service_client.secret, stored=stored)
    assert not verify_client_secret(provided=service_client.secret + "x", stored=stored)
    assert not verify_client_secret(provided=stored, stored=stored)  # the digest is not the secret


def test_a_client_authenticates_with_its_secret(client, service_client):
    """RFC 6749 §2.3.1: client_secret_basic still works with the fast hash."""
    response = client.post(
        "/oauth/token",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=service_client.basic,
    )
    assert response.status_code == HTTPStatus.OK, response.content
