"""Keys and the beat schedule in Django admin: listed, rotatable, revocable; private material never shown."""

from __future__ import annotations

import base64
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django.utils import timezone

from tests.conftest import sign_in
from tests.factories import UserFactory
from tokens.envelope import unwrap_private_key
from tokens.models import SigningKey
from tokens.rotation import ensure_active_key, rotate_signing_keys
from tokens.signals import signing_key_changed


@pytest.fixture
def admin_browser(db) -> HttpClient:
    staff = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    assert sign_in(http, staff).status_code == HTTPStatus.FOUND
    return http


def test_the_key_list_shows_kid_algorithm_state_and_lifecycle_times(admin_browser):
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    page = admin_browser.get("/admin/tokens/signingkey/").content.decode()
    for text in (key.kid, "RS256", "active", "Activated at", "Retired at"):
        assert text in page


def test_no_admin_page_shows_private_key_material(admin_browser):
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    der = unwrap_private_key(key)
    page = admin_browser.get(f"/admin/tokens/signingkey/{key.pk}/change/").content.decode()
    assert key.kid in page
    assert base64.b64encode(der[-64:]).decode()[:40] not in page
    assert '"d"' not in page and "PRIVATE KEY" not in page
    assert admin_browser.get("/admin/tokens/signingkey/add/").status_code == HTTPStatus.FORBIDDEN


def test_rotate_now_action_publishes_a_next_key(admin_browser):
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    response = admin_browser.post(
        "/admin/tokens/signingkey/", {"action": "rotate_now", "_selected_action": [key.pk]}, follow=True
    )
    assert response.status_code == HTTPStatus.OK
    assert SigningKey.objects.for_algorithm("ES256").next_in_line().count() == 1


def test_revoke_action_replaces_the_active_key_at_once(admin_browser):
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    admin_browser.post(
        "/admin/tokens/signingkey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    assert SigningKey.objects.get(pk=key.pk).state == "revoked"
    assert SigningKey.objects.active().for_algorithm("RS256").exclude(pk=key.pk).count() == 1
    assert key.kid not in admin_browser.get("/.well-known/jwks.json").content.decode()


def test_the_beat_schedule_is_visible_and_editable_in_admin(admin_browser):
    page = admin_browser.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "rotate signing keys" in page
    assert "clear expired tokens" in page


def test_a_failure_in_the_middle_of_a_rotation_leaves_the_keys_as_they_were(db, settings):
    """A worker that dies mid-rotation: the transaction rolls back; nothing half-rotated remains."""
    settings.UAA_KEY_ROTATION_PERIOD = 60
    settings.UAA_KEY_PREPUBLISH_SECONDS = settings.UAA_JWKS_MAX_AGE
    start = timezone.now() - timedelta(days=1)
    rotate_signing_keys(now=start)  # one active key per algorithm
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    rotate_signing_keys(now=start + timedelta(seconds=30))  # publishes the next keys
    before = sorted(SigningKey.objects.values_list("kid", "state"))

    def crash(sender, event, **kwargs):
        if event == "activated":
            raise RuntimeError("worker died")

    signing_key_changed.connect(crash)
    try:
        with pytest.raises(RuntimeError, match="worker died"):
            rotate_signing_keys(now=timezone.now())
    finally:
        signing_key_changed.disconnect(crash)
    assert sorted(SigningKey.objects.values_list("kid", "state")) == before
    assert SigningKey.objects.active().for_algorithm("RS256").get().kid == active.kid
    assert active.kid in rotate_signing_keys(now=timezone.now()).retired
