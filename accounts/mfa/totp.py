"""RFC 6238 TOTP as a second factor, on django-otp's ``TOTPDevice``.

Six digits, 30-second steps, one step of drift either way (RFC 6238 §5.2), and each code accepted once:
``TOTPDevice.last_t`` remembers the last step used, and a code of that step or an earlier one is refused
(§5.2: "the verifier MUST NOT accept the second attempt of the same OTP"). The device row is locked while
a code is checked, so two workers cannot both accept the same code.
"""

from __future__ import annotations

import base64
import re

import segno
from django.conf import settings
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User

CODE = re.compile(r"\d{6}")
DRIFT_STEPS = 1


def normalize(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "")


def is_well_formed(code: str) -> bool:
    return CODE.fullmatch(normalize(code)) is not None


def pending_device(*, user: User) -> TOTPDevice:
    """The user's unconfirmed device (a new key each time enrollment starts over)."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(
        user=user, name="Authenticator app", confirmed=False, tolerance=DRIFT_STEPS, digits=6, step=30
    )


def unconfirmed_device(*, user: User, device_id: int | None) -> TOTPDevice | None:
    if device_id is None:
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=False, pk=device_id).first()


def manual_key(device: TOTPDevice) -> str:
    """The RFC 4648 base32 key, in groups of four, for typing into an app without a camera."""
    key = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def provisioning_uri(device: TOTPDevice) -> str:
    """The otpauth:// URI (Key Uri Format) with issuer and account name."""
    return device.config_url


def qr_code_svg(device: TOTPDevice) -> str:
    """The provisioning URI as an inline SVG QR code, rendered here: no external service sees the key."""
    return segno.make(provisioning_uri(device), error="m").svg_inline(
        scale=5, title=f"{settings.UAA_MFA_ISSUER_NAME} authenticator key"
    )


def verify(*, device: TOTPDevice, code: str) -> bool:
    """Check ``code`` against one device, with drift and replay protection, under a row lock."""
    if not is_well_formed(code):
        return False
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        return bool(locked.verify_token(normalize(code)))


def verify_for_user(*, user: User, code: str) -> bool:
    """Whether ``code`` is valid for one of the user's confirmed devices."""
    if not is_well_formed(code):
        return False
    return any(verify(device=device, code=code) for device in confirmed_devices(user))


def confirmed_devices(user: User) -> list[TOTPDevice]:
    return list(TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id"))
