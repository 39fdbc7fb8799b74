"""Create the staff roles as Django groups: view-only, helpdesk, key officer (docs/operations.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.roles import create_staff_roles


class Command(BaseCommand):
    help = (
        "Create (or reset to exactly their permissions) the groups view-only, helpdesk and key officer. "
        "Add staff to them in the admin (Users → Groups); superusers need no group."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            roles = create_staff_roles()
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        for name, perms in roles.items():
            self.stdout.write(f"{name}: {', '.join(perms)}")
