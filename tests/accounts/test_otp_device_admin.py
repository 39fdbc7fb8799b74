"""django-otp's device admin, attacked by staff members.

Attacker: a staff member signed in with MFA who holds django-otp's device permissions (view, add, change)
but not the right to change staff accounts. What they must not achieve: read anyone's TOTP secret (a
copy of another person's second factor), or bind a device of their own to another account (red team
finding: a device added for the superuser let the attacker sign in as them). Second factors are changed
only by their owner on the Security page and by "reset second factors" on the user page.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.mfa import totp
from tests.factories import UserFactory
from tests.staff import staff_browser

DEVICES = "/admin/otp_totp/totpdevice/"
EVERY_DEVICE_PERMISSION = (
    "otp_totp.view_totpdevice",
    "otp_totp.add_totpdevice",
    "otp_totp.change_totpdevice",
    "otp_totp.delete_totpdevice",
)


@pytest.fixture
def victim(db):
    user = UserFactory(is_staff=True, is_superuser=True)
    device = totp.pending_device(user=user)
    device.confirmed = True
    device.save()
    return user, device


@pytest.mark.parametrize("superuser", [False, True])
def test_no_staff_member_can_read_a_totp_secret_in_admin(victim, superuser):
    """No page of admin shows a device's key or its otpauth:// URI, not even to a superuser."""
    _, device = victim
    http, _ = staff_browser(*EVERY_DEVICE_PERMISSION, superuser=superuser)
    for path in (DEVICES, f"{DEVICES}{device.pk}/change/", f"{DEVICES}{device.pk}/config/"):
        response = http.get(path)
        assert response.status_code == HTTPStatus.NOT_FOUND, path
        assert device.key.encode() not in response.content
        assert b"otpauth://" not in response.content


def test_a_staff_member_cannot_bind_a_device_to_another_account(victim):
    """A forged add-device POST for the superuser changes nothing: the superuser keeps their devices."""
    user, _ = victim
    before = set(TOTPDevice.objects.filter(user=user).values_list("pk", "key"))
    http, _ = staff_browser(*EVERY_DEVICE_PERMISSION)
    response = http.post(
        f"{DEVICES}add/",
        {
            "user": str(user.pk),
            "name": "mine",
            "key": "00" * 20,
            "step": 30,
            "t0": 0,
            "digits": 6,
            "tolerance": 1,
            "drift": 0,
            "confirmed": "on",
        },
    )
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert set(TOTPDevice.objects.filter(user=user).values_list("pk", "key")) == before


def test_the_admin_index_offers_no_device_admin(victim):
    http, _ = staff_browser(*EVERY_DEVICE_PERMISSION)
    response = http.get("/admin/")
    assert response.status_code == HTTPStatus.OK
    assert DEVICES.encode() not in response.content
