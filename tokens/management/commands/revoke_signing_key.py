"""Emergency revocation of a signing key by kid."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tokens.models import SigningKey
from tokens.rotation import revoke_signing_key


class Command(BaseCommand):
    help = "Revoke a signing key: it leaves the JWKS now, tokens it signed stop verifying, a fresh key signs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kid")
        parser.add_argument("--reason", default="", help="recorded with the revocation")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            key = revoke_signing_key(kid=options["kid"], now=timezone.now(), reason=options["reason"])
        except SigningKey.DoesNotExist as exc:
            raise CommandError(f"No signing key with kid {options['kid']!r}.") from exc
        active = SigningKey.objects.active().for_algorithm(key.algorithm).get()
        self.stdout.write(f"revoked: {key.kid}")
        self.stdout.write(f"active {key.algorithm} key: {active.kid}")
