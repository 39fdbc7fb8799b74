"""Staff members for admin tests: a staff account with exactly the permissions named, signed in through
the real sign-in pages (password, then the authenticator app), as an attacker on the staff would be."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, cast

from django.contrib.auth.models import Permission
from django.test import Client as HttpClient

from accounts.models import User
from tests.conftest import sign_in
from tests.factories import UserFactory
from tokens.models import LedgerRecord


def grant(user: User, *perms: str) -> None:
    """Give ``user`` the permissions ``"app_label.codename"``; each must exist."""
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


def staff_browser(*perms: str, superuser: bool = False, **fields: Any) -> tuple[HttpClient, User]:
    """A browser signed in (with MFA) as a new staff user holding ``perms`` and nothing else."""
    user = cast(User, UserFactory(is_staff=True, is_superuser=superuser, **fields))
    grant(user, *perms)
    http = HttpClient()
    response = sign_in(http, user)
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    return http, user


def offered_actions(page: bytes) -> set[str]:
    """The actions a change list offers in its action drop-down."""
    text = page.decode()
    start = text.find('name="action"')
    if start == -1:
        return set()
    end = text.find("</select>", start)
    return {
        part.split('"', 1)[0]
        for part in text[start:end].split('<option value="')[1:]
        if part.split('"', 1)[0]
    }


def ledger_records(event: str) -> list[dict[str, Any]]:
    return [
        json.loads(body)
        for body in LedgerRecord.objects.filter(event=event).order_by("id").values_list("body", flat=True)
    ]
