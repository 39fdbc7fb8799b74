"""Run the signing-key lifecycle now (what the beat schedule runs), or request a rotation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from tokens.models import SigningKey
from tokens.rotation import request_rotation, rotate_signing_keys


class Command(BaseCommand):
    help = (
        "Advance signing keys along next → active → retired → expired, keeping a standby (next) key "
        "published; --now promotes the standby once it has been published for the pre-publication window."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now",
            dest="algorithm",
            choices=SigningKey.Algorithm.values,
            help="rotate this algorithm's key as soon as a next key has been published long enough",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["algorithm"]:
            report = request_rotation(algorithm=options["algorithm"], now=now)
        else:
            report = rotate_signing_keys(now=now)
        for event in ("published", "activated", "retired", "expired"):
            for kid in getattr(report, event):
                self.stdout.write(f"{event}: {kid}")
        if not report.changed:
            self.stdout.write("no key was due")
