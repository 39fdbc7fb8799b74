"""Key-encryption-key rotation: re-wrap every private key (signing and audit keys) under the first UAA_KEK."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tokens.envelope import KeyDecryptionError, configured_keks
from tokens.keys import rewrap_signing_keys
from tokens.ledger.audit_keys import rewrap_audit_keys


class Command(BaseCommand):
    help = (
        "Re-wrap every stored private key under the current KEK (the first in UAA_KEK). "
        "Set UAA_KEK=new,old everywhere first; remove the old KEK only after this command succeeds."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = rewrap_signing_keys() + rewrap_audit_keys()
        except KeyDecryptionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"re-wrapped {count} key(s) under KEK {configured_keks()[0].kek_id}")
