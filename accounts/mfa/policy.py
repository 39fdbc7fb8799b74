"""Who needs a second factor, and what a session's ``amr``/``acr`` say about how the user signed in.

``amr`` values are RFC 8176 §2 method references: ``pwd`` (password), ``otp`` (a TOTP or backup code),
``hwk``/``swk`` (proof of possession of a hardware- or software-secured key: a WebAuthn credential), and
``mfa`` (more than one factor). ``acr`` values are UAA's own URNs (OIDC Core §2 leaves them to the OP):

- ``urn:uaa:acr:pwd``: a password alone;
- ``urn:uaa:acr:mfa``: a password and a second factor.

A session whose ``acr`` is ``mfa`` also satisfies a request for ``pwd`` (it is stronger).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import RecoveryCode, User, WebAuthnCredential

ACR_PWD = "urn:uaa:acr:pwd"
ACR_MFA = "urn:uaa:acr:mfa"
ACR_VALUES_SUPPORTED = [ACR_PWD, ACR_MFA]
_STRENGTH = {ACR_PWD: 1, ACR_MFA: 2}

# Audit ledger event names of MFA changes (recorded with tokens.ledger.append_record).
MFA_ENROLLED = "mfa.enrolled"
MFA_REMOVED = "mfa.removed"
MFA_RESET = "mfa.reset"
MFA_BACKUP_CODES_GENERATED = "mfa.backup_codes_generated"
ACCOUNT_UNLOCKED = "account.unlocked"


def has_factors(user: User) -> bool:
    """Whether the user has a second factor: a confirmed TOTP device, a WebAuthn credential, or unused
    backup codes (look-up secrets, NIST SP 800-63B §5.1.2: a factor of their own, not only a way back in).

    A user who has one must prove it before another is bound (NIST SP 800-63B §6.1.2.1), so this is also
    what refuses forced enrollment (accounts/signin.py).
    """
    return (
        TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        or WebAuthnCredential.objects.filter(user=user).exists()
        or RecoveryCode.objects.filter(user=user, used_at__isnull=True).exists()
    )


def mfa_required(*, user: User, client: object | None = None) -> bool:
    """The global policy (UAA_MFA_REQUIRED), the client's flag, or the user's own enrolled factors."""
    if settings.UAA_MFA_REQUIRED or getattr(client, "requires_mfa", False):
        return True
    return has_factors(user)


def amr_for(factors: Iterable[str]) -> list[str]:
    """RFC 8176: the methods used, plus ``mfa`` when there was more than one factor."""
    methods = list(dict.fromkeys(factors))
    if len(methods) > 1:
        methods.append("mfa")
    return methods


def acr_for(amr: Iterable[str]) -> str:
    return ACR_MFA if "mfa" in amr else ACR_PWD


def supported(requested: Iterable[str]) -> list[str]:
    """The requested ``acr_values`` UAA knows, in the request's order of preference (OIDC Core §3.1.2.1)."""
    return [value for value in requested if value in _STRENGTH]


def satisfies(*, acr: str, requested: Iterable[str]) -> bool:
    """Whether a session with ``acr`` meets at least one of the requested (known) classes.

    ``acr_values`` is a voluntary claim: a request naming only classes UAA does not know is not refused.
    """
    known = supported(requested)
    if not known:
        return True
    strength = _STRENGTH.get(acr, 0)
    return any(strength >= _STRENGTH[value] for value in known)


def backup_codes_left(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
