"""First-run setup for a local server: a key-encryption key, signing keys, and an admin user."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.utils import timezone

from accounts.models import User
from accounts.services import create_user
from tokens.envelope import KeyDecryptionError, ensure_kek_file
from tokens.keys import verify_stored_keys
from tokens.ledger.audit_keys import verify_audit_keys
from tokens.models import SigningKey
from tokens.rotation import algorithms_in_use, rotate_signing_keys


class Command(BaseCommand):
    help = (
        "Ensure a KEK (DEBUG only), an active and a pre-published standby signing key per algorithm in use, "
        "and an admin user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin-email", default="admin@example.com")
        parser.add_argument(
            "--no-admin", action="store_true", help="keys only (production: use createsuperuser)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["admin_email"].strip().lower()
        if not options["no_admin"]:
            try:
                validate_email(email)
            except ValidationError as exc:
                raise CommandError(
                    f"--admin-email {options['admin_email']!r} is not an e-mail address."
                ) from exc
        if settings.DEBUG and not settings.UAA_KEK and settings.UAA_KEK_FILE:
            ensure_kek_file(Path(settings.UAA_KEK_FILE))
        try:
            verified = verify_stored_keys() + verify_audit_keys()
        except KeyDecryptionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"stored signing keys readable with UAA_KEK: {verified}")
        rotate_signing_keys(now=timezone.now())  # an active key and a pre-published standby per algorithm
        for algorithm in algorithms_in_use():
            keys = SigningKey.objects.for_algorithm(algorithm)
            key, standby = keys.active().get(), keys.next_in_line().get()
            self.stdout.write(f"signing key {algorithm}: {key.kid} ({key.state}), standby {standby.kid}")
        if options["no_admin"]:
            return
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("admin user: already present")
            return
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(
                f"{email} already belongs to a user who is not an admin; pass another --admin-email."
            )
        password = secrets.token_urlsafe(18)
        create_user(email=email, password=password, is_staff=True, is_superuser=True)
        self.stdout.write(self.style.SUCCESS(f"admin user: {email}"))
        self.stdout.write(
            self.style.SUCCESS(f"password:   {password}   (shown once; change it in the admin)")
        )
