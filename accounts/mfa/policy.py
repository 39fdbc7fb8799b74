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
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import BackupCode, User, WebAuthnCredential

ACR_PWD = "urn:uaa:acr:pwd"
ACR_MFA = "urn:uaa:acr:mfa"
ACR_VALUES_SUPPORTED = [ACR_PWD, ACR_MFA]
_STRENGTH = {ACR_PWD: 1, ACR_MFA: 2}


class Factor(StrEnum):
    """A kind of second factor bound to a user: the Security page's ``kind``, MFA records' ``factor``."""

    TOTP = "totp"  # an authenticator app (accounts/mfa/totp.py)
    WEBAUTHN = "webauthn"  # a passkey or security key (accounts/mfa/webauthn.py)


def has_factors(user: User) -> bool:
    """Whether the user has a second factor: a confirmed TOTP device, a WebAuthn credential, or unused
    backup codes (look-up secrets, NIST SP 800-63B §5.1.2: a factor of their own, not only a way back in).

    A user who has one must prove it before another is bound (NIST SP 800-63B §6.1.2.1), so this is also
    what refuses forced enrollment (accounts/signin.py).
    """
    return (
        TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        or WebAuthnCredential.objects.filter(user=user).exists()
        or BackupCode.objects.for_user(user).unused().exists()
    )


def had_factors(user: User) -> bool:
    """Whether the account has had a second factor (``User.mfa_enrolled_at``, read fresh): set when one is
    first bound, however, and cleared only by an admin's reset or the owner's deliberate removal of the
    last one while MFA is optional."""
    return User.objects.filter(pk=user.pk, mfa_enrolled_at__isnull=False).exists()


def first_enrollment_open(user: User) -> bool:
    """Forced first enrollment trusts the password alone, so it is for an account that has never had a
    factor. One whose factors ran out (the last backup code spent, the last app or passkey deleted) is not
    reopened by that: its owner replenishes while signed in, or an admin resets it (NIST SP 800-63B
    §6.1.2.1, §6.1.2.3)."""
    return not has_factors(user) and not had_factors(user)


def mark_enrolled(user_id: Any) -> None:
    """The account has a factor now: first enrollment is closed to it from here on."""
    User.objects.filter(pk=user_id, mfa_enrolled_at__isnull=True).update(mfa_enrolled_at=timezone.now())


def factor_saved(sender: type, instance: Any, created: bool = False, **kwargs: Any) -> None:
    """``post_save`` of a TOTP device or WebAuthn credential, however it was made (enrollment, the otp
    admin, a shell): a confirmed factor marks its user."""
    update_fields = kwargs.get("update_fields")
    if getattr(instance, "confirmed", True) and (
        created or update_fields is None or "confirmed" in update_fields
    ):
        mark_enrolled(instance.user_id)


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
