"""The staff roles (``manage.py create_staff_roles``): each group does what docs/security.md says and no more.

Attacker: a member of one role reaching for another role's action (a helpdesk member revoking a key,
a key officer resetting a user's factors, a view-only member doing anything).
"""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import cast

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.test import Client as HttpClient
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from accounts.roles import HELPDESK, KEY_OFFICER, ROLES, VIEW_ONLY
from tests.conftest import sign_in
from tests.factories import UserFactory
from tests.staff import offered_actions
from tokens.models import SigningKey
from tokens.rotation import ensure_active_key

USERS = "/admin/accounts/user/"
KEYS = "/admin/tokens/signingkey/"
PAGES = [USERS, KEYS, "/admin/tokens/ledgerrecord/", "/admin/django_celery_beat/periodictask/"]


@pytest.fixture(autouse=True)
def roles(db):
    call_command("create_staff_roles", stdout=io.StringIO())


def member_of(role: str) -> HttpClient:
    user = cast(User, UserFactory(is_staff=True))
    user.groups.add(Group.objects.get(name=role))
    http = HttpClient()
    assert sign_in(http, user).status_code == HTTPStatus.FOUND
    return http


def test_the_command_creates_three_groups_with_exactly_their_permissions():
    for name, perms in ROLES.items():
        group = Group.objects.get(name=name)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert held == set(perms), name


def test_running_it_again_resets_a_group_that_was_widened_by_hand():
    group = Group.objects.get(name=VIEW_ONLY)
    group.permissions.add(Permission.objects.get(codename="revoke_signingkey"))
    out = io.StringIO()
    call_command("create_staff_roles", stdout=out)
    assert not group.permissions.filter(codename="revoke_signingkey").exists()
    assert "key officer: " in out.getvalue()


def test_an_unknown_permission_is_a_command_error(monkeypatch):
    monkeypatch.setitem(ROLES, "broken", ["tokens.no_such_permission"])
    with pytest.raises(CommandError, match=r"tokens\.no_such_permission"):
        call_command("create_staff_roles", stdout=io.StringIO())


def test_view_only_sees_everything_and_is_offered_no_action():
    http = member_of(VIEW_ONLY)
    for page in PAGES:
        response = http.get(page)
        assert response.status_code == HTTPStatus.OK, page
        assert not offered_actions(response.content), page


def test_the_helpdesk_resets_a_users_factors_but_touches_no_key():
    victim = UserFactory()
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    http = member_of(HELPDESK)
    assert offered_actions(http.get(USERS).content) == {"reset_mfa", "unlock_sign_in"}
    http.post(USERS, {"action": "reset_mfa", "_selected_action": [str(victim.pk)]})
    assert not TOTPDevice.objects.filter(user=victim).exists()
    http.post(KEYS, {"action": "revoke", "_selected_action": [key.pk]})
    assert SigningKey.objects.get(pk=key.pk).state == SigningKey.State.ACTIVE


def test_the_key_officer_rotates_and_revokes_keys_but_resets_no_user():
    victim = UserFactory()
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    http = member_of(KEY_OFFICER)
    assert offered_actions(http.get(KEYS).content) == {"rotate_now", "revoke"}
    assert not offered_actions(http.get(USERS).content)
    http.post(USERS, {"action": "reset_mfa", "_selected_action": [str(victim.pk)]})
    assert TOTPDevice.objects.filter(user=victim).exists()
    http.post(KEYS, {"action": "revoke", "_selected_action": [key.pk]})
    assert SigningKey.objects.get(pk=key.pk).state == SigningKey.State.REVOKED
