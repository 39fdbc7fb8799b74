"""Emergency revocation of a signing key by kid, or of every published key (after a KEK compromise).

For each algorithm it names the key that signs now and whether relying parties that cache the JWKS
already hold it (the standby was pre-published) or, if not, for how long they may reject its tokens.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tokens.models import SigningKey
from tokens.rotation import active_key_cache_gap, algorithms_in_use, revoke_published_keys, revoke_signing_key


class Command(BaseCommand):
    help = (
        "Revoke a signing key: it leaves the JWKS now, tokens it signed stop verifying, the pre-published "
        "standby key signs (and a new standby is published)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kid", nargs="?")
        parser.add_argument(
            "--all-published",
            action="store_true",
            help="revoke every published key (next, active, retired) of every algorithm: a KEK compromise",
        )
        parser.add_argument("--reason", default="", help="recorded with the revocation")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["kid"]) == options["all_published"]:
            raise CommandError("Name one kid, or pass --all-published (and no kid).")
        # No time passed in: each revocation reads the clock once it holds the key (tokens.rotation).
        if options["all_published"]:
            keys = revoke_published_keys(reason=options["reason"])
        else:
            try:
                keys = [revoke_signing_key(kid=options["kid"], reason=options["reason"])]
            except SigningKey.DoesNotExist as exc:
                raise CommandError(f"No signing key with kid {options['kid']!r}.") from exc
        now = timezone.now()
        for key in keys:
            self.stdout.write(f"revoked: {key.kid}")
        for algorithm in sorted({key.algorithm for key in keys} or set(algorithms_in_use())):
            gap = active_key_cache_gap(algorithm=algorithm, now=now)
            self.stdout.write(self.style.WARNING(gap.message) if gap.seconds else gap.message)
            standby = SigningKey.objects.next_in_line().for_algorithm(algorithm).first()
            if standby is not None:
                self.stdout.write(f"standby {algorithm} key: {standby.kid}")
