"""Adding, renaming and removing factors, and the admin's reset: each change with its audit record.

A change and its ``LedgerRecord`` share one transaction (tokens/ledger/records.py). Records name the factor's
kind and id, never a key, a code or a credential's public key.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import revocation, throttling
from accounts.mfa import backup_codes, policy, totp, webauthn
from accounts.models import BackupCode, User, WebAuthnCredential
from tokens import ledger
from tokens.models import LedgerRecord


def _record(event: LedgerRecord.Event, *, user: User, request: HttpRequest | None, **detail: object) -> None:
    actor = getattr(request, "user", None)
    by = str(actor.pk) if actor is not None and actor.is_authenticated and actor.pk != user.pk else ""
    ledger.append_record(
        event=event,
        sub=str(user.pk),
        detail={**detail, **({"by": by} if by else {})},
        **ledger.request_metadata(request),
    )


def confirm_totp(*, request: HttpRequest, user: User, device_id: int | None, code: str) -> bool:
    """Enrollment ends with a first valid code from the new device (which also counts as used).

    A wrong code counts towards the account's and the IP's failure limits like any other code.
    """
    device = totp.unconfirmed_device(user=user, device_id=device_id)
    if device is None or not totp.verify(device=device, code=code):
        throttling.record_failure(email=user.email, ip=throttling.client_ip(request))
        return False
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        _record(
            LedgerRecord.Event.MFA_ENROLLED,
            user=user,
            request=request,
            factor=policy.Factor.TOTP,
            id=device.pk,
        )
    return True


def register_webauthn(
    *, request: HttpRequest, user: User, credential_json: str, challenge: bytes, name: str
) -> WebAuthnCredential:
    with transaction.atomic():
        credential = webauthn.register(
            user=user, credential_json=credential_json, challenge=challenge, name=name
        )
        _record(
            LedgerRecord.Event.MFA_ENROLLED,
            user=user,
            request=request,
            factor=policy.Factor.WEBAUTHN,
            id=credential.pk,
        )
    return credential


def rename_webauthn(*, user: User, credential_id: int, name: str) -> bool:
    name = name.strip()[:64]
    return bool(name) and bool(
        WebAuthnCredential.objects.filter(user=user, pk=credential_id).update(name=name)
    )


FACTOR_MODELS: dict[str, type[TOTPDevice] | type[WebAuthnCredential]] = {
    policy.Factor.TOTP: TOTPDevice,
    policy.Factor.WEBAUTHN: WebAuthnCredential,
}


class LastFactor(Exception):
    """Removing this factor would leave none while policy requires one (UAA_MFA_REQUIRED)."""


def remove_factor(*, request: HttpRequest, user: User, kind: str, factor_id: int) -> bool:
    """Remove one of the user's factors, unless it is the last one (no other app, passkey or unused backup
    code) and policy requires a factor: then ``LastFactor``, and nothing changes. With MFA optional the
    last one may go: the owner opts out, so first enrollment is open to the account again (recorded)."""
    model = FACTOR_MODELS.get(kind)
    if model is None:
        return False
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()
        factor = model.objects.filter(user=user, pk=factor_id)
        if not factor.exists():
            return False
        factor.delete()
        last = not policy.has_factors(user)
        if last and settings.UAA_MFA_REQUIRED:
            transaction.set_rollback(True)
            raise LastFactor("the last second factor cannot be removed while MFA is required")
        if last:
            User.objects.filter(pk=user.pk).update(mfa_enrolled_at=None)
        _record(
            LedgerRecord.Event.MFA_REMOVED,
            user=user,
            request=request,
            factor=kind,
            id=factor_id,
            **({"last": True} if last else {}),
        )
    return True


def new_backup_codes(*, request: HttpRequest, user: User) -> list[str]:
    """A fresh set (the old one stops working); shown to the user once by the caller."""
    with transaction.atomic():
        codes = backup_codes.generate_codes(user=user)
        _record(LedgerRecord.Event.MFA_BACKUP_CODES_GENERATED, user=user, request=request, count=len(codes))
    return codes


def first_backup_codes(*, request: HttpRequest, user: User) -> list[str] | None:
    """Backup codes with a new factor when the user has none left unused; ``None`` when they still do."""
    if BackupCode.objects.for_user(user).unused().exists():
        return None
    return new_backup_codes(request=request, user=user)


def reset_factors(*, request: HttpRequest | None, user: User) -> None:
    """An admin's reset: every factor and backup code goes, and so does ``mfa_enrolled_at``: this
    deliberately reopens first enrollment, so the next sign-in with the password enrolls a new factor
    (recorded as ``first_enrollment: reopened``). The user's sessions and tokens end first
    (accounts/revocation.py): whoever held them may be why the factors were reset."""
    revocation.revoke(user=user, request=request, reason=revocation.Reason.MFA_RESET)
    with transaction.atomic():
        totp_count, _ = TOTPDevice.objects.filter(user=user).delete()
        webauthn_count, _ = WebAuthnCredential.objects.filter(user=user).delete()
        BackupCode.objects.for_user(user).delete()
        User.objects.filter(pk=user.pk).update(mfa_enrolled_at=None)
        _record(
            LedgerRecord.Event.MFA_RESET,
            user=user,
            request=request,
            totp=totp_count,
            webauthn=webauthn_count,
            first_enrollment="reopened",
        )


def unlock(*, request: HttpRequest | None, user: User) -> bool:
    with transaction.atomic():
        cleared = throttling.unlock(email=user.email)
        if cleared:
            _record(LedgerRecord.Event.ACCOUNT_UNLOCKED, user=user, request=request)
    return cleared
