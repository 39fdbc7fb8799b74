"""Staff roles: Django groups holding exactly the permissions of each role (docs/security.md, staff roles).

Roles add up from *view-only*; a staff member may be in several groups. Superuser is not a group: it is
the ``is_superuser`` flag, which only another superuser sets (accounts/admin.py). Deliberately in no role:
the tokens of django-oauth-toolkit (its admin shows stored tokens), clients (adding or changing one
decides where codes go and which audiences and scopes it gets), and groups and permissions themselves.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

VIEW_ONLY = "view-only"
HELPDESK = "helpdesk"
KEY_OFFICER = "key officer"

_VIEW = [
    "accounts.view_user",
    "oauth.view_client",
    "oauth.view_consent",
    "tokens.view_signingkey",
    "tokens.view_auditkey",
    "tokens.view_ledgerrecord",  # and "verify now", which reads and changes nothing
    "tokens.view_treehead",
    "django_celery_beat.view_periodictask",
    "django_celery_beat.view_intervalschedule",
    "django_celery_beat.view_crontabschedule",
]

ROLES: dict[str, list[str]] = {
    VIEW_ONLY: _VIEW,
    HELPDESK: [
        *_VIEW,
        "accounts.change_user",  # ordinary accounts only: staff accounts are a superuser's
        "accounts.reset_user_mfa",
        "accounts.unlock_user",
    ],
    KEY_OFFICER: [
        *_VIEW,
        "tokens.rotate_signingkey",
        "tokens.revoke_signingkey",
        "tokens.rotate_auditkey",
        "tokens.seal_ledger",
        "django_celery_beat.change_periodictask",  # enable, disable, run and edit the beat schedule
    ],
}


def role_permissions(names: list[str]) -> list[Permission]:
    """The permissions ``"app_label.codename"``; ``LookupError`` names any that do not exist (yet)."""
    found = {
        f"{perm.content_type.app_label}.{perm.codename}": perm
        for perm in Permission.objects.select_related("content_type").filter(
            codename__in=[name.split(".", 1)[1] for name in names]
        )
    }
    missing = sorted(set(names) - set(found))
    if missing:
        raise LookupError(f"unknown permissions (are the migrations applied?): {', '.join(missing)}")
    return [found[name] for name in names]


@transaction.atomic
def create_staff_roles() -> dict[str, list[str]]:
    """Create (or reset) one group per role with exactly its permissions. Idempotent."""
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(role_permissions(perms))
    return ROLES
