"""Backup codes: a set generated at enrollment, shown once, stored as SHA-256 digests, each used once.

Each code is 10 characters from a 31-letter alphabet without look-alikes (about 49 bits), typed with or
without the hyphen and in any case. A code's digest binds it to its user, so a digest table leak tells
nothing and one user's code never matches another's. Checking compares against every unused code with
``hmac.compare_digest`` and marks the match used under a row lock, so a code works once across workers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.mfa import policy
from accounts.models import BackupCode, User

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
LENGTH = 10


def normalize(code: str) -> str:
    return "".join(ch for ch in (code or "").lower() if ch not in " -\t")


def _digest(user: User, code: str) -> str:
    return hashlib.sha256(f"{user.pk}:{normalize(code)}".encode()).hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def is_well_formed(code: str) -> bool:
    value = normalize(code)
    return len(value) == LENGTH and all(ch in ALPHABET for ch in value)


def generate_codes(*, user: User) -> list[str]:
    """Replace the user's codes with a new set; the raw codes are returned once and never stored."""
    codes = [_new_code() for _ in range(settings.UAA_BACKUP_CODE_COUNT)]
    with transaction.atomic():
        BackupCode.objects.for_user(user).delete()
        BackupCode.objects.bulk_create(BackupCode(user=user, digest=_digest(user, code)) for code in codes)
        policy.mark_enrolled(user.pk)  # look-up secrets are a factor (NIST SP 800-63B §5.1.2)
    return codes


def use_code(*, user: User, code: str) -> bool:
    """Spend one unused code: ``True`` once per code, ``False`` for anything else."""
    if not is_well_formed(code):
        return False
    wanted = _digest(user, code)
    with transaction.atomic():
        unused = list(BackupCode.objects.select_for_update().for_user(user).unused())
        match = None
        for candidate in unused:  # every candidate is compared: no early exit
            if hmac.compare_digest(candidate.digest, wanted):
                match = candidate
        if match is None:
            return False
        match.used_at = timezone.now()
        match.save(update_fields=["used_at"])
    return True


def remaining(user: User) -> int:
    return BackupCode.objects.for_user(user).unused().count()
