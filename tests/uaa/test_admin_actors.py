"""Every admin action leaves an audit record that names the admin who took it.

Attacker: a staff member who changes something in the admin and later denies it (or an insider hoping a
bulk change goes unnoticed). Each action below must leave a ledger record naming the acting admin by
their ``sub``: in ``sub`` itself, or in ``detail.by`` where the record is about another user (``sub`` is
that user). DESIGN (audit ledger): "client and key changes" and security events append a record.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from accounts import throttling
from tests.factories import UserFactory
from tests.staff import ledger_records, staff_browser
from tokens import ledger
from tokens.models import LedgerRecord
from tokens.rotation import ensure_active_key
from uaa.oauth.models import Client

TASKS = "/admin/django_celery_beat/periodictask/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "uaa.oauth.hashers.ClientSecretHasher",
    ]


@pytest.fixture
def root(db):
    return staff_browser(superuser=True)


@pytest.fixture
def dispatched(monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr("celery.app.task.Task.apply_async", lambda task, *a, **k: sent.append(task.name))
    return sent


def actor_records(event: str, sub: str) -> list[dict]:
    return [record for record in ledger_records(event) if record.get("sub") == sub]


def test_reset_second_factors_names_the_admin(root):
    http, admin = root
    victim = UserFactory()
    http.post("/admin/accounts/user/", {"action": "reset_mfa", "_selected_action": [str(victim.pk)]})
    [record] = ledger_records(LedgerRecord.Event.MFA_RESET)
    assert record["sub"] == str(victim.pk) and record["detail"]["by"] == str(admin.pk)


def test_unlock_sign_in_names_the_admin(root, settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 3
    http, admin = root
    victim = UserFactory()
    for _ in range(3):
        throttling.record_failure(email=victim.email, ip=None)
    http.post("/admin/accounts/user/", {"action": "unlock_sign_in", "_selected_action": [str(victim.pk)]})
    [record] = ledger_records(LedgerRecord.Event.ACCOUNT_UNLOCKED)
    assert record["sub"] == str(victim.pk) and record["detail"]["by"] == str(admin.pk)


def test_rotate_now_names_the_admin(root):
    """The review: key.published from "rotate now" had no actor."""
    http, admin = root
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    http.post("/admin/tokens/signingkey/", {"action": "rotate_now", "_selected_action": [key.pk]})
    [record] = ledger_records(LedgerRecord.Event.KEY_PUBLISHED)
    assert record["sub"] == str(admin.pk)
    assert record["detail"]["alg"] == "ES256"


def test_revoke_names_the_admin_in_sub_and_not_in_free_text(root):
    """The review: key.revoked named the actor only inside a free-text reason."""
    http, admin = root
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    http.post("/admin/tokens/signingkey/", {"action": "revoke", "_selected_action": [key.pk]})
    [revoked] = ledger_records(LedgerRecord.Event.KEY_REVOKED)
    assert revoked["sub"] == str(admin.pk) and revoked["subject"] == key.kid
    assert admin.email not in str(revoked)
    replacement = [r for r in ledger_records(LedgerRecord.Event.KEY_ACTIVATED) if r["subject"] != key.kid]
    assert replacement and replacement[-1]["sub"] == str(admin.pk)


def test_rotating_the_audit_key_names_the_admin(root):
    """The review: audit-key rotation carried no actor."""
    http, admin = root
    ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="svc")
    head = ledger.seal_tree_head(now=timezone.now())
    http.post("/admin/tokens/auditkey/", {"action": "rotate", "_selected_action": [head.audit_key.pk]})
    [retired] = ledger_records(LedgerRecord.Event.AUDIT_KEY_RETIRED)
    assert retired["sub"] == str(admin.pk) and retired["subject"] == head.audit_key.kid
    assert actor_records(LedgerRecord.Event.AUDIT_KEY_CREATED, str(admin.pk))


def test_sealing_from_the_admin_names_the_admin(root):
    http, admin = root
    assert http.post("/admin/tokens/ledgerrecord/seal/").status_code == HTTPStatus.FOUND
    [record] = actor_records(LedgerRecord.Event.ADMIN_CHANGE, str(admin.pk))
    assert record["detail"]["action"] == "seal" and record["detail"]["model"] == "tokens.treehead"


def test_rotating_a_client_secret_names_the_admin(root, client_factory):
    """The review: client.secret_rotated carried no actor."""
    http, admin = root
    registered = client_factory(name="Billing", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])
    response = http.post(
        "/admin/oauth/client/", {"action": "rotate_secret", "_selected_action": [registered.client.pk]}
    )
    assert response.status_code == HTTPStatus.OK
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)
    assert record["sub"] == str(admin.pk) and record["client_id"] == registered.client_id


@pytest.mark.parametrize(
    ("action", "recorded"),
    [
        ("disable_tasks", "disable"),
        ("enable_tasks", "enable"),
        ("toggle_tasks", "disable"),  # the tasks were enabled: a toggle disables them
        ("run_tasks", "run"),
    ],
)
def test_each_beat_action_writes_a_record_per_task_naming_the_admin(root, action, recorded, dispatched):
    """The review: disabling periodic tasks (a queryset.update) wrote no ledger record at all."""
    http, admin = root
    tasks = list(PeriodicTask.objects.order_by("pk"))
    http.post(TASKS, {"action": action, "_selected_action": [task.pk for task in tasks]})
    records = actor_records(LedgerRecord.Event.ADMIN_CHANGE, str(admin.pk))
    assert sorted(r["detail"]["object_id"] for r in records) == sorted(str(task.pk) for task in tasks)
    assert {r["detail"]["action"] for r in records} == {recorded}
    assert {r["detail"]["model"] for r in records} == {"django_celery_beat.periodictask"}
    assert {r["detail"]["task"] for r in records} == {task.task for task in tasks}


def test_saving_and_deleting_a_periodic_task_in_its_form_names_the_admin(root):
    http, admin = root
    task = PeriodicTask.objects.get(name="clear expired tokens")
    form = {
        "name": task.name,
        "regtask": task.task,
        "task": task.task,
        "description": "",
        "interval": task.interval_id,
        "start_time_0": "",
        "start_time_1": "",
        "args": "[]",
        "kwargs": "{}",
        "expire_seconds": "",
        "queue": "",
        "exchange": "",
        "routing_key": "",
        "priority": "",
        "headers": "{}",
        "_save": "Save",
    }  # "enabled" left out: the form switches the task off
    response = http.post(f"{TASKS}{task.pk}/change/", form)
    assert response.status_code == HTTPStatus.FOUND, response.content[:2000]
    task.refresh_from_db()
    assert not task.enabled
    assert http.post(f"{TASKS}{task.pk}/delete/", {"post": "yes"}).status_code == HTTPStatus.FOUND
    records = actor_records(LedgerRecord.Event.ADMIN_CHANGE, str(admin.pk))
    assert [(r["detail"]["action"], r["detail"]["object_id"]) for r in records] == [
        ("change", str(task.pk)),
        ("delete", str(task.pk)),
    ]
    assert "enabled" in " ".join(records[0]["detail"]["fields"]).lower()
