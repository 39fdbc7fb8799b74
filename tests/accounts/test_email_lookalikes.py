"""Attack: Unicode look-alikes of a locked account's e-mail address sign in past the lock.

Attacker: knows (or is guessing) the password of alice@example.com and has used up the per-account
limit of wrong passwords (429). They retype the address with characters that PostgreSQL's ``UPPER()``
folds onto the real ones (dotless i U+0131 → ``I``, long s U+017F → ``S``): a
case-insensitive lookup (``email__iexact``) finds Alice's account, while the lock counts a digest of
the typed text, so the look-alike has a fresh counter. They must not get in: every spelling either is
the same account, with the same lock, or is another (non-existent) account that does not sign in.

OWASP ASVS V2.2.1 (anti-automation per account); RFC 8265 §3.4.1 and UTS #15 (NFKC maps compatibility
characters such as the long s, the Kelvin sign and fullwidth letters onto the letters they stand
for); Django's ``AbstractBaseUser.normalize_username`` applies NFKC too. The attack needs PostgreSQL (SQLite's
``LIKE`` folds ASCII only); run this file on both.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.db import IntegrityError, transaction
from django.test import Client as HttpClient

from accounts import services, throttling
from accounts.models import User
from tests.conftest import LOGIN, MFA
from tests.factories import PASSWORD, UserFactory

WRONG = "not the password 123"

# (typed, the account it looks like, the same account?)
SPELLINGS = [
    ("al\u0131ce@example.com", "alice", False),  # dotless i: UPPER() is "I", but it is another letter
    ("al\u0130ce@example.com", "alice", False),  # dotted capital I: lower-cases to "i" + combining dot
    ("ALICE@EXAMPLE.COM", "alice", True),
    ("Alice@Example.com", "alice", True),
    (" alice@example.com ", "alice", True),
    ("\u017fam@example.com", "sam", True),  # long s: NFKC makes it "s"
    ("\u212aate@example.com", "kate", True),  # Kelvin sign: NFKC makes it "K"
]


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 3
    settings.UAA_THROTTLE_IP_FAILURES = 1000


@pytest.fixture
def accounts(db):
    return {name: UserFactory(email=f"{name}@example.com") for name in ("alice", "sam", "kate")}


def _attempt(email: str, password: str = WRONG, ip: str = "198.51.100.7"):
    return HttpClient(REMOTE_ADDR=ip).post(LOGIN, {"email": email, "password": password})


@pytest.mark.parametrize(("typed", "looks_like", "same"), SPELLINGS)
def test_a_look_alike_of_a_locked_address_does_not_sign_in(accounts, typed, looks_like, same):
    """After the limit of wrong passwords for the real address (429), the right password typed with the
    look-alike address is refused: by the same lock (same account) or as a wrong sign-in (another)."""
    real = accounts[looks_like]
    for _ in range(3):
        _attempt(real.email)
    assert _attempt(real.email, PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS
    response = _attempt(typed, PASSWORD)
    assert response.status_code != HTTPStatus.FOUND, f"{typed!r} signed in to the locked {real.email}"
    expected = HTTPStatus.TOO_MANY_REQUESTS if same else HTTPStatus.BAD_REQUEST
    assert response.status_code == expected


@pytest.mark.parametrize(("typed", "looks_like", "same"), SPELLINGS)
def test_a_spelling_is_the_account_exactly_when_it_shares_the_accounts_lock(
    accounts, typed, looks_like, same
):
    """One normalisation for storage, look-up and the lock's key: the account a spelling signs in to is
    the account whose failures that spelling counts."""
    real = accounts[looks_like]
    response = _attempt(typed, PASSWORD)
    assert (response.status_code == HTTPStatus.FOUND and response["Location"] == MFA) is same
    assert (throttling.account_key(typed) == throttling.account_key(real.email)) is same


def test_failures_typed_as_a_look_alike_count_against_the_account_they_sign_in_to(accounts):
    for _ in range(3):
        _attempt("\u017fam@EXAMPLE.com")
    assert _attempt("sam@example.com", PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_password_check_finds_only_the_exact_normalised_address(accounts, rf):
    request = rf.post(LOGIN, REMOTE_ADDR="198.51.100.7")
    assert (
        services.authenticate_password(request=request, email="al\u0131ce@example.com", password=PASSWORD)
        is None
    )
    found = services.authenticate_password(request=request, email="ALICE@example.com", password=PASSWORD)
    assert found == accounts["alice"]
    with pytest.raises(User.DoesNotExist):
        User.objects.get_by_natural_key("al\u0131ce@example.com")


def test_addresses_are_stored_normalised(db):
    user = services.create_user(email="  \u017fAM@Example.COM ", password=PASSWORD)
    assert user.email == "sam@example.com"
    assert UserFactory(email="Bob@Example.com").email == "bob@example.com"


@pytest.mark.parametrize(
    ("other", "existing"),
    [
        ("ALICE@example.com", "alice"),
        (" alice@EXAMPLE.com", "alice"),
        ("\u017fam@example.com", "sam"),
        ("\u212aATE@example.com", "kate"),
    ],
)
def test_a_second_account_whose_address_collides_under_the_normalisation_is_refused(
    accounts, other, existing
):
    with pytest.raises((ValueError, IntegrityError)), transaction.atomic():
        services.create_user(email=other, password=PASSWORD)
    assert User.objects.count() == len(accounts)


def test_the_admin_refuses_a_colliding_address(accounts, admin_client):
    """Django admin's "add user" form: a form error, not an IntegrityError (500)."""
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "\u017fam@example.com",
            "password1": "a long new password 123",
            "password2": "a long new password 123",
        },
    )
    assert response.status_code == HTTPStatus.OK
    assert b"already exists" in response.content
    assert User.objects.filter(email="sam@example.com").count() == 1


def test_a_look_alike_that_is_another_address_is_another_account(accounts):
    """``al\u0131ce`` (dotless i) is not ``alice``: it is a different address, stored as typed (in lower
    case). No new account gets one (a mailbox name is ASCII: accounts.models.validate_account_email,
    tests/accounts/test_email_confusable_accounts.py); one stored before that check stays another account."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.create_user(email="al\u0131ce@example.com", password="another password 456")
    other = UserFactory(email="al\u0131ce@example.com", password="another password 456")
    assert other.email == "al\u0131ce@example.com" and other != accounts["alice"]
    assert _attempt("alice@example.com", "another password 456").status_code == HTTPStatus.BAD_REQUEST


def test_the_normalisation_is_idempotent():
    from accounts.models import canonical_email

    for typed, _looks_like, _same in SPELLINGS:
        once = canonical_email(typed)
        assert canonical_email(once) == once


def _migration():
    import importlib

    return importlib.import_module("accounts.migrations.0005_canonical_emails")


def test_the_migration_normalises_stored_addresses(db):
    from django.apps import apps

    user = UserFactory(email="dora@example.com")
    User.objects.filter(pk=user.pk).update(email="  Dora@EXAMPLE.com")  # as stored before 0005
    _migration().canonicalise(apps, None)
    assert User.objects.get(pk=user.pk).email == "dora@example.com"


def test_the_migration_stops_at_two_accounts_that_become_one_address(db):
    from django.apps import apps

    first, second = UserFactory(email="eve@example.com"), UserFactory(email="other@example.com")
    User.objects.filter(pk=second.pk).update(email="EVE@example.com")
    with pytest.raises(RuntimeError, match=str(first.pk)):
        _migration().canonicalise(apps, None)
    assert User.objects.get(pk=second.pk).email == "EVE@example.com"  # nothing changed
