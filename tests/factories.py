"""factory_boy factories for the models tests build on, and the second factor they sign in with."""

from __future__ import annotations

import time

import factory
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User

PASSWORD = "correct horse battery staple 42"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with a password and, unless ``mfa=False``, a confirmed authenticator app (TOTP device):
    MFA is required by default (UAA_MFA_REQUIRED), so that is what an ordinary account looks like."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    given_name = "Ada"
    family_name = "Lovelace"
    email_verified = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj: User, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            obj.save()

    @factory.post_generation
    def mfa(obj: User, create: bool, extracted: object, **kwargs: object) -> None:
        if create and extracted is not False:
            TOTPDevice.objects.create(user=obj, name="Authenticator app", confirmed=True, tolerance=1)


def totp_code(user: User, *, at: float | None = None) -> str:
    """What the user's authenticator app shows now (RFC 6238), computed from the device's stored key.

    A code is accepted once (RFC 6238 §5.2), and tests sign the same user in several times within one
    30-second step; the device's replay marker is cleared first, as if the app had moved to a new step.
    Tests of replay protection call ``TOTP`` themselves and never use this helper.
    """
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
    assert device is not None, "the user has no authenticator app (UserFactory(mfa=False)?)"
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() if at is None else at
    return f"{totp.token():0{device.digits}d}"
