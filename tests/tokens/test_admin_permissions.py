"""Keys, the ledger and the beat schedule in Django admin, attacked by staff with view permissions only.

Attacker: a staff member, signed in with MFA, who may look at signing keys, audit keys, the ledger and
the periodic tasks (``view_*``) and nothing else. They must not rotate or revoke a signing key, rotate the
audit key, seal the ledger, or switch off (or run) a scheduled task, neither by the action drop-down nor
by a forged POST; a key officer with the matching permission does each of these.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from tests.staff import offered_actions, staff_browser
from tokens import ledger
from tokens.models import AuditKey, LedgerRecord, SigningKey, TreeHead
from tokens.rotation import ensure_active_key

KEYS = "/admin/tokens/signingkey/"
AUDIT_KEYS = "/admin/tokens/auditkey/"
LEDGER = "/admin/tokens/ledgerrecord/"
TASKS = "/admin/django_celery_beat/periodictask/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dispatched(monkeypatch):
    """Every task that "run selected tasks" hands to the broker, instead of sending it."""
    sent: list[str] = []

    def apply_async(task, *args, **kwargs):
        sent.append(task.name)

    monkeypatch.setattr("celery.app.task.Task.apply_async", apply_async)
    return sent


def key_states() -> list[tuple[str, str]]:
    return sorted(SigningKey.objects.values_list("kid", "state"))


def schedule() -> list[tuple[str, bool]]:
    return sorted(PeriodicTask.objects.values_list("name", "enabled"))


# --- signing keys --------------------------------------------------------------------------------


def test_view_only_staff_cannot_rotate_or_revoke_signing_keys(db):
    """Neither action is offered to a staff member with view_signingkey only; forged POSTs of both change
    no key: no next key is published and the active ES256 key stays active and published."""
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    viewer, _ = staff_browser("tokens.view_signingkey")
    page = viewer.get(KEYS)
    assert page.status_code == HTTPStatus.OK
    assert not {"rotate_now", "revoke"} & offered_actions(page.content)
    before = key_states()
    for action in ("rotate_now", "revoke"):
        viewer.post(KEYS, {"action": action, "_selected_action": [key.pk], "index": 0})
    assert key_states() == before
    assert key.kid in viewer.get("/.well-known/jwks.json").content.decode()


def test_a_key_officer_with_rotate_signingkey_rotates(db):
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    officer, _ = staff_browser("tokens.view_signingkey", "tokens.rotate_signingkey")
    assert offered_actions(officer.get(KEYS).content) >= {"rotate_now"}
    assert "revoke" not in offered_actions(officer.get(KEYS).content)
    officer.post(KEYS, {"action": "rotate_now", "_selected_action": [key.pk]})
    assert SigningKey.objects.for_algorithm("ES256").next_in_line().count() == 1


def test_a_key_officer_with_revoke_signingkey_revokes(db):
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    officer, _ = staff_browser("tokens.view_signingkey", "tokens.revoke_signingkey")
    assert "rotate_now" not in offered_actions(officer.get(KEYS).content)
    officer.post(KEYS, {"action": "revoke", "_selected_action": [key.pk]})
    assert SigningKey.objects.get(pk=key.pk).state == SigningKey.State.REVOKED


# --- the audit key and the ledger ----------------------------------------------------------------


def test_view_only_staff_cannot_rotate_the_audit_key(db):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    head = ledger.seal_tree_head(now=timezone.now())
    viewer, _ = staff_browser("tokens.view_auditkey")
    assert "rotate" not in offered_actions(viewer.get(AUDIT_KEYS).content)
    viewer.post(AUDIT_KEYS, {"action": "rotate", "_selected_action": [head.audit_key.pk]})
    assert list(AuditKey.objects.values_list("kid", "state")) == [(head.audit_key.kid, "active")]


def test_a_key_officer_with_rotate_auditkey_rotates_it(db):
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    head = ledger.seal_tree_head(now=timezone.now())
    officer, _ = staff_browser("tokens.view_auditkey", "tokens.rotate_auditkey")
    officer.post(AUDIT_KEYS, {"action": "rotate", "_selected_action": [head.audit_key.pk]})
    assert AuditKey.objects.active().get().kid != head.audit_key.kid


def test_view_only_staff_cannot_seal_the_ledger_by_posting_to_the_seal_view(db):
    """The seal view is a URL of its own: a POST to it straight away is refused with 403 and seals
    nothing. The button is not shown."""
    viewer, _ = staff_browser("tokens.view_ledgerrecord")
    assert "Seal now" not in viewer.get(LEDGER).content.decode()
    assert viewer.post(LEDGER + "seal/").status_code == HTTPStatus.FORBIDDEN
    assert not TreeHead.objects.exists()


def test_view_only_staff_may_verify_the_ledger(db):
    """Verifying reads and changes nothing: an auditor with view_ledgerrecord runs it."""
    ledger.seal_tree_head(now=timezone.now())
    viewer, _ = staff_browser("tokens.view_ledgerrecord")
    response = viewer.post(LEDGER + "verify/", follow=True)
    assert response.status_code == HTTPStatus.OK
    assert "OK:" in response.content.decode()


def test_staff_who_cannot_view_the_ledger_cannot_verify_it(db):
    other, _ = staff_browser("tokens.view_signingkey")
    assert other.post(LEDGER + "verify/").status_code == HTTPStatus.FORBIDDEN


def test_staff_with_seal_ledger_seals(db):
    officer, _ = staff_browser("tokens.view_ledgerrecord", "tokens.seal_ledger")
    assert "Seal now" in officer.get(LEDGER).content.decode()
    assert officer.post(LEDGER + "seal/").status_code == HTTPStatus.FOUND
    assert TreeHead.objects.count() == 1


# --- the beat schedule (django-celery-beat) ------------------------------------------------------


@pytest.mark.parametrize("action", ["disable_tasks", "enable_tasks", "toggle_tasks", "run_tasks"])
def test_view_only_staff_cannot_change_or_run_the_beat_schedule(db, action, dispatched):
    """Shown in the review: view_periodictask alone disabled rotation, token cleanup and sealing."""
    PeriodicTask.objects.filter(name="clear expired tokens").update(enabled=False)
    before = schedule()
    viewer, _ = staff_browser("django_celery_beat.view_periodictask")
    page = viewer.get(TASKS)
    assert page.status_code == HTTPStatus.OK and "rotate signing keys" in page.content.decode()
    assert action not in offered_actions(page.content)
    every = list(PeriodicTask.objects.values_list("pk", flat=True))
    viewer.post(TASKS, {"action": action, "_selected_action": every, "index": 0})
    assert schedule() == before
    assert dispatched == []


@pytest.mark.parametrize("action", ["disable_tasks", "enable_tasks", "toggle_tasks"])
def test_staff_with_change_periodictask_change_the_schedule(db, action):
    rotation = PeriodicTask.objects.get(name="rotate signing keys")
    rotation.enabled = action == "disable_tasks"
    rotation.save()
    operator, _ = staff_browser(
        "django_celery_beat.view_periodictask", "django_celery_beat.change_periodictask"
    )
    assert action in offered_actions(operator.get(TASKS).content)
    operator.post(TASKS, {"action": action, "_selected_action": [rotation.pk]})
    rotation.refresh_from_db()
    assert rotation.enabled is (action != "disable_tasks")


def test_staff_with_change_periodictask_run_a_task(db, dispatched):
    rotation = PeriodicTask.objects.get(name="rotate signing keys")
    operator, _ = staff_browser(
        "django_celery_beat.view_periodictask", "django_celery_beat.change_periodictask"
    )
    operator.post(TASKS, {"action": "run_tasks", "_selected_action": [rotation.pk]})
    assert dispatched == ["tokens.rotate_signing_keys"]
