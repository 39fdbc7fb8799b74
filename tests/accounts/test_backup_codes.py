"""Backup codes: generated at enrollment, stored as digests, each usable once, regenerated on request."""

import hashlib
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from accounts.mfa import backup_codes
from accounts.models import BackupCode
from tests.conftest import LOGIN, MFA
from tests.factories import PASSWORD


@pytest.fixture
def codes(user):
    return backup_codes.generate_codes(user=user)


def test_codes_are_stored_as_digests_never_in_plain_text(user, codes):
    """Secrets are stored as digests and shown raw exactly once (docs/security.md)."""
    stored = list(BackupCode.objects.filter(user=user).values_list("digest", flat=True))
    assert len(stored) == len(codes) == 10
    for code in codes:
        assert all(code not in digest and code.replace("-", "") not in digest for digest in stored)
    normalized = codes[0].replace("-", "")
    assert hashlib.sha256(f"{user.pk}:{normalized}".encode()).hexdigest() in stored


def test_a_code_works_once(user, codes):
    assert backup_codes.use_code(user=user, code=codes[0])
    assert not backup_codes.use_code(user=user, code=codes[0])
    assert backup_codes.remaining(user) == 9


def test_a_code_may_be_typed_in_upper_case_and_without_the_hyphen(user, codes):
    assert backup_codes.use_code(user=user, code=codes[1].upper().replace("-", " "))


def test_one_users_code_does_not_work_for_another(user, codes, django_user_model):
    from tests.factories import UserFactory

    other = UserFactory()
    assert not backup_codes.use_code(user=other, code=codes[0])
    assert backup_codes.remaining(user) == 10


def test_regenerating_replaces_the_old_set(user, codes):
    fresh = backup_codes.generate_codes(user=user)
    assert not backup_codes.use_code(user=user, code=codes[0])
    assert backup_codes.use_code(user=user, code=fresh[0])


def test_signing_in_with_a_backup_code_then_reusing_it_fails(user, codes):
    """A used backup code is refused with a clear message, and counts as a failed attempt."""
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    response = http.post(MFA, {"method": "backup", "code": codes[0]})
    assert response.status_code == HTTPStatus.FOUND
    assert http.session["uaa_amr"] == ["pwd", "otp", "mfa"]
    again = HttpClient()
    again.post(LOGIN, {"email": user.email, "password": PASSWORD})
    response = again.post(MFA, {"method": "backup", "code": codes[0]})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"not valid or was already used" in response.content
    assert "_auth_user_id" not in again.session
