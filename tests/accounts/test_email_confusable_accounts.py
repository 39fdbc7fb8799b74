"""Attack: an account created under an address that looks like (or delivers to) another user's.

Attacker: whoever may create accounts (a client with ``uaa.users.write``, a helpdesk member in the Django
admin) creates ``alice@ex\u0430mple.com`` with a Cyrillic a (U+0430), or a spelling that mail delivers to
Alice's mailbox, to be mistaken for Alice by people and by relying parties that key on the ``email``
claim. Every creation path goes through one check (accounts/models.py ``validate_account_email``):

- one stored form (``canonical_email``: NFKC, lower case), unique as stored: a case, width or
  compatibility variant of an existing address is that address and is refused as existing;
- the local part is an RFC 5321 §4.1.2 dot-atom in ASCII (no quoted string: ``"alice"`` is the mailbox
  ``alice``; no RFC 6531 UTF-8 local part, where look-alike letters live);
- the domain is a host name (no address literal), and a non-ASCII one must be a valid IDNA label by label
  (RFC 5891 §5.4: a U-label that round-trips; an A-label that decodes) of a single script per label
  (UTS #39 §5.2 "highly restrictive": no Latin ``ex`` and a Cyrillic a in one label; UTS #46 would map a
  zero-width joiner away, delivering to ``example.com`` under another stored address).
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User, validate_account_email
from tests.api.conftest import call, client_credentials_token
from tests.factories import PASSWORD, UserFactory
from tests.staff import staff_browser
from uaa.oauth.models import Client

USERS = "/api/v1/users"
ADD_USER = "/admin/accounts/user/add/"

SAME_ACCOUNT = [
    "ALICE@EXAMPLE.COM",
    "Alice@Example.Com",
    "alice@EXAMPLE.com",
    " alice@example.com ",
    "\uff41\uff4c\uff49\uff43\uff45@example.com",  # fullwidth: NFKC makes it alice
    "alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # fullwidth domain
]
LOOK_ALIKES = [
    "alice@ex\u0430mple.com",  # Cyrillic a (U+0430) in a Latin label
    "alice@xn--exmple-4nf.com",  # the same, as its A-label
    "\u0430lice@example.com",  # Cyrillic a in the local part
    "alic\u0435@example.com",  # Cyrillic e (U+0435)
    "alice@exa\u200dmple.com",  # zero-width joiner: IDNA 2003 / UTS #46 map it away
    "alice@exa\u00admple.com",  # soft hyphen, likewise
    '"alice"@example.com',  # a quoted string is the same mailbox
    '"alice@example.com"@example.org',
    "alice@example.com.",  # trailing dot: the same host
    "alice.@example.com",
    "alice@[127.0.0.1]",  # an address literal is no domain to look at
    "alice@xn--zz.com",  # an A-label that does not decode
    "alice@\u0435x\u0430mple.\u0441om",  # mixed scripts in every label
    # Red team: the Hangul fillers show as nothing and count as Hangul letters (Latin + Hangul is a mix the
    # script rule allows); every other character that shows as nothing is refused with them.
    "alice@example\u3164.com",
    "alice@exam\u1160ple.com",
    "alice@exam\u115fple.com",
    "alice@exam\uffa0ple.com",
    "alice@exam\u034fple.com",  # combining grapheme joiner
    "alice@exam\ufe0fple.com",  # variation selector
    "alice@exam\u2800ple.com",  # braille blank
]
ACCEPTED = [
    "bob@example.com",
    "alice@b\u00fccher.example",
    "alice@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
]


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@example.com")


@pytest.fixture
def api_token(client_factory):
    automation = client_factory(
        name="Automation",
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        redirect_uris=[],
        post_logout_redirect_uris=[],
        allowed_scopes=["uaa.users.write"],
    )
    return client_credentials_token(automation, "uaa.users.write")


@pytest.mark.parametrize("email", SAME_ACCOUNT + LOOK_ALIKES)
def test_the_api_refuses_a_look_alike_of_an_existing_account(alice, api_token, email):
    response = call("POST", USERS, api_token, {"email": email})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert "email" in response.json()["fields"]
    assert User.objects.count() == 1


@pytest.mark.parametrize("email", SAME_ACCOUNT + LOOK_ALIKES)
def test_the_django_admin_refuses_a_look_alike_of_an_existing_account(alice, email):
    http, _admin = staff_browser(superuser=True)
    before = User.objects.count()
    response = http.post(
        ADD_USER, {"email": email, "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"}
    )
    assert response.status_code == HTTPStatus.OK, response.status_code  # the form again, with its errors
    assert "email" in response.context["adminform"].form.errors
    assert User.objects.count() == before


@pytest.mark.parametrize("email", SAME_ACCOUNT + LOOK_ALIKES)
def test_the_manager_refuses_a_look_alike_of_an_existing_account(alice, email):
    """``create_user`` (manage.py bootstrap, accounts.services) takes the same check."""
    with pytest.raises((ValueError, ValidationError)):  # ValueError: the address exists
        User.objects.create_user(email, PASSWORD)
    assert User.objects.count() == 1


@pytest.mark.parametrize("email", ACCEPTED)
def test_other_addresses_and_single_script_domains_are_accepted(alice, api_token, email):
    response = call("POST", USERS, api_token, {"email": email})
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert User.objects.get(pk=response.json()["id"]).email == email


@pytest.mark.parametrize("email", LOOK_ALIKES)
def test_the_check_refuses_look_alikes_whatever_exists(db, email):
    with pytest.raises(ValidationError):
        validate_account_email(email)
