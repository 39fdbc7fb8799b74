"""Users in Django admin, attacked by staff members holding fewer permissions than an action needs.

Attacker: a staff member, signed in with MFA, whose permissions are the ones named in each test; what
they must not achieve: reset or unlock anyone's sign-in without the permission for it, take over a staff
account, or give themselves (or anyone) more permissions than a superuser gave them.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.contrib.auth.models import Group, Permission
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import throttling
from accounts.models import User
from tests.factories import PASSWORD, UserFactory
from tests.staff import offered_actions, staff_browser

USERS = "/admin/accounts/user/"


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 3
    settings.UAA_LOCKOUT_SECONDS = 600


def lock(user: User) -> None:
    for _ in range(3):
        throttling.record_failure(email=user.email, ip=None)
    assert throttling.locked_until(email=user.email) is not None


def change_form(user: User, **overrides: object) -> dict[str, object]:
    """Every field of the user change form, as a forged POST would send it."""
    data: dict[str, object] = {
        "email": user.email,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "email_verified": "on",
        "is_active": "on",
        "_save": "Save",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def every_permission() -> list[int]:
    """The permissions that lead to every other one (few: the server caps a form at 100 fields)."""
    powerful = ["add_user", "change_user", "delete_user", "change_group", "add_permission", "change_logentry"]
    return list(Permission.objects.filter(codename__in=powerful).values_list("pk", flat=True))


# --- item 1: the actions need their own permissions --------------------------------------------------


def test_view_only_staff_cannot_reset_a_superusers_second_factors(db):
    """A staff member who may only look at users is not offered "reset second factors", and a forged
    POST of the action leaves the superuser's authenticator in place."""
    victim = UserFactory(email="admin@example.com", is_staff=True, is_superuser=True)
    viewer, _ = staff_browser("accounts.view_user")
    assert "reset_mfa" not in offered_actions(viewer.get(USERS).content)
    response = viewer.post(USERS, {"action": "reset_mfa", "_selected_action": [str(victim.pk)]})
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND, HTTPStatus.FORBIDDEN)
    assert TOTPDevice.objects.filter(user=victim).count() == 1


def test_view_only_staff_cannot_unlock_an_account(db):
    """Unlocking ends a lock that guards an account against password guessing: it needs unlock_user."""
    victim = UserFactory()
    lock(victim)
    viewer, _ = staff_browser("accounts.view_user")
    assert "unlock_sign_in" not in offered_actions(viewer.get(USERS).content)
    viewer.post(USERS, {"action": "unlock_sign_in", "_selected_action": [str(victim.pk)]})
    assert throttling.locked_until(email=victim.email) is not None


def test_staff_with_reset_user_mfa_resets_an_ordinary_users_factors(db):
    """The helpdesk role: reset_user_mfa is what the action needs."""
    victim = UserFactory()
    helpdesk, _ = staff_browser("accounts.view_user", "accounts.reset_user_mfa")
    assert "reset_mfa" in offered_actions(helpdesk.get(USERS).content)
    response = helpdesk.post(USERS, {"action": "reset_mfa", "_selected_action": [str(victim.pk)]})
    assert response.status_code == HTTPStatus.FOUND
    assert not TOTPDevice.objects.filter(user=victim).exists()


def test_staff_with_unlock_user_unlocks_an_account(db):
    """The helpdesk role: unlock_user is what the action needs."""
    victim = UserFactory()
    lock(victim)
    helpdesk, _ = staff_browser("accounts.view_user", "accounts.unlock_user")
    assert "unlock_sign_in" in offered_actions(helpdesk.get(USERS).content)
    helpdesk.post(USERS, {"action": "unlock_sign_in", "_selected_action": [str(victim.pk)]})
    assert throttling.locked_until(email=victim.email) is None


def test_the_helpdesk_cannot_reset_a_staff_accounts_factors(db):
    """reset_user_mfa is for ordinary accounts: resetting a superuser's factors is half of taking the
    account over, so only a superuser resets a staff member's factors."""
    victim = UserFactory(is_staff=True, is_superuser=True)
    colleague = UserFactory(is_staff=True)
    helpdesk, _ = staff_browser("accounts.view_user", "accounts.reset_user_mfa")
    response = helpdesk.post(
        USERS, {"action": "reset_mfa", "_selected_action": [str(victim.pk), str(colleague.pk)]}, follow=True
    )
    assert TOTPDevice.objects.filter(user__in=[victim, colleague]).count() == 2
    assert b"only a superuser" in response.content


def test_a_superuser_resets_a_staff_accounts_factors(db):
    victim = UserFactory(is_staff=True)
    root, _ = staff_browser(superuser=True)
    root.post(USERS, {"action": "reset_mfa", "_selected_action": [str(victim.pk)]})
    assert not TOTPDevice.objects.filter(user=victim).exists()


# --- item 6: nobody raises their own privileges --------------------------------------------------------


def test_staff_with_change_user_cannot_make_themselves_superuser(db):
    """A forged POST to one's own change form with is_superuser, groups and every permission changes none
    of them: the permission fields are read-only for non-superusers."""
    group = Group.objects.create(name="everything")
    group.permissions.set(every_permission())
    editor, me = staff_browser("accounts.view_user", "accounts.change_user")
    forged = change_form(
        me, is_staff="on", is_superuser="on", groups=[group.pk], user_permissions=every_permission()
    )
    response = editor.post(f"{USERS}{me.pk}/change/", forged)
    assert response.status_code in (HTTPStatus.FOUND, HTTPStatus.OK, HTTPStatus.FORBIDDEN)
    me.refresh_from_db()
    assert not me.is_superuser
    assert not me.groups.exists()
    assert set(me.user_permissions.values_list("codename", flat=True)) == {"view_user", "change_user"}


def test_staff_with_change_user_cannot_make_an_accomplice_staff_or_superuser(db):
    accomplice = UserFactory()
    editor, _ = staff_browser("accounts.view_user", "accounts.change_user")
    forged = change_form(
        accomplice,
        given_name="Renamed",
        is_staff="on",
        is_superuser="on",
        user_permissions=every_permission(),
    )
    assert editor.post(f"{USERS}{accomplice.pk}/change/", forged).status_code == HTTPStatus.FOUND
    accomplice.refresh_from_db()
    assert accomplice.given_name == "Renamed"  # the profile is theirs to edit
    assert not accomplice.is_staff and not accomplice.is_superuser
    assert not accomplice.user_permissions.exists()


def test_staff_with_change_user_cannot_take_over_a_superuser(db):
    """Changing a superuser's e-mail or password is an account takeover: a non-superuser's change_user
    covers ordinary accounts only."""
    victim = UserFactory(is_staff=True, is_superuser=True)
    editor, _ = staff_browser("accounts.view_user", "accounts.change_user")
    response = editor.post(f"{USERS}{victim.pk}/change/", change_form(victim, email="mine@evil.example"))
    assert response.status_code == HTTPStatus.FORBIDDEN
    password = {"password1": "a new password 12345", "password2": "a new password 12345"}
    password_url = f"{USERS}{victim.pk}/password/"
    forged = {**password, "usable_password": "true"}
    assert editor.post(password_url, forged).status_code == HTTPStatus.FORBIDDEN
    victim.refresh_from_db()
    assert victim.email != "mine@evil.example"
    assert victim.check_password(PASSWORD)


def test_a_superuser_cannot_change_their_own_permission_fields(db):
    """Nobody edits their own permission fields: a superuser cannot drop (or lend out) their own rights
    by accident in the same form; another superuser does it."""
    root, me = staff_browser(superuser=True)
    response = root.post(f"{USERS}{me.pk}/change/", change_form(me, given_name="Root"))
    assert response.status_code == HTTPStatus.FOUND
    me.refresh_from_db()
    assert me.given_name == "Root"
    assert me.is_superuser and me.is_staff


def test_a_superuser_grants_another_user_staff_and_permissions(db):
    target = UserFactory()
    root, _ = staff_browser(superuser=True)
    view_user = Permission.objects.get(codename="view_user")
    response = root.post(
        f"{USERS}{target.pk}/change/", change_form(target, is_staff="on", user_permissions=[view_user.pk])
    )
    assert response.status_code == HTTPStatus.FOUND
    target.refresh_from_db()
    assert target.is_staff and target.has_perm("accounts.view_user")


def test_staff_with_change_group_cannot_add_permissions_to_a_group(db):
    """A group's permissions are permission fields of every member: only superusers change them."""
    group = Group.objects.create(name="helpdesk")
    editor, me = staff_browser("auth.view_group", "auth.change_group")
    me.groups.add(group)
    response = editor.post(
        f"/admin/auth/group/{group.pk}/change/", {"name": "helpdesk", "permissions": every_permission()}
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not group.permissions.exists()


def test_the_change_page_shows_the_permission_fields_read_only_to_the_helpdesk(db):
    target = UserFactory()
    editor, _ = staff_browser("accounts.view_user", "accounts.change_user")
    page = editor.get(f"{USERS}{target.pk}/change/").content.decode()
    assert 'name="given_name"' in page
    for field in ("is_superuser", "is_staff", "groups", "user_permissions"):
        assert f'name="{field}"' not in page, field
