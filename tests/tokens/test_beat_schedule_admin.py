"""The schedules behind the periodic tasks, attacked by staff who may edit schedules but not tasks.

Attacker: a staff member holding django-celery-beat's ``change_intervalschedule`` / ``change_crontabschedule``
/ ``delete_intervalschedule`` (no role created by create_staff_roles has them, but an operator may hand them
out thinking they are harmless) and not ``change_periodictask``. Editing the schedule a task runs on edits
that task: stretching "every 60 s" to "every 10⁹ s" stops key rotation or sealing as surely as disabling it,
and deleting a schedule deletes its tasks (a cascade). They must not do either; whoever may change the tasks
may change their schedules, and that change is recorded like any admin change, naming them.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.staff import staff_browser
from tokens.models import LedgerRecord

INTERVALS = "/admin/django_celery_beat/intervalschedule/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def change_form(http, interval: IntervalSchedule, **values: object) -> dict[str, object]:
    """The change form's fields as the page sends them (the tasks inline's management form included),
    with ``values`` changed."""
    tasks = list(interval.periodictask_set.order_by("pk").values_list("pk", flat=True))
    data: dict[str, object] = {
        "every": interval.every,
        "period": interval.period,
        "periodictask_set-TOTAL_FORMS": len(tasks),
        "periodictask_set-INITIAL_FORMS": len(tasks),
        "periodictask_set-MIN_NUM_FORMS": 0,
        "periodictask_set-MAX_NUM_FORMS": 1000,
    }
    for n, pk in enumerate(tasks):
        data[f"periodictask_set-{n}-id"] = pk
        data[f"periodictask_set-{n}-interval"] = interval.pk
    data.update(values)
    return data


def rotation_schedule() -> IntervalSchedule:
    task = PeriodicTask.objects.filter(task="tokens.rotate_signing_keys").select_related("interval").get()
    assert task.interval is not None
    return task.interval


def test_schedule_permissions_alone_cannot_stretch_a_tasks_schedule(db):
    interval = rotation_schedule()
    every = interval.every
    http, _ = staff_browser(
        "django_celery_beat.view_intervalschedule",
        "django_celery_beat.change_intervalschedule",
        "django_celery_beat.view_periodictask",
    )
    response = http.post(f"{INTERVALS}{interval.pk}/change/", change_form(http, interval, every=10**9))
    assert response.status_code == HTTPStatus.FORBIDDEN
    interval.refresh_from_db()
    assert interval.every == every


def test_schedule_permissions_alone_cannot_delete_a_schedule_and_its_tasks(db):
    interval = rotation_schedule()
    tasks = PeriodicTask.objects.count()
    http, _ = staff_browser(
        "django_celery_beat.view_intervalschedule",
        "django_celery_beat.delete_intervalschedule",
        "django_celery_beat.view_periodictask",
    )
    response = http.post(f"{INTERVALS}{interval.pk}/delete/", {"post": "yes"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    response = http.post(
        INTERVALS, {"action": "delete_selected", "_selected_action": [interval.pk], "post": "yes"}
    )
    assert IntervalSchedule.objects.filter(pk=interval.pk).exists()
    assert PeriodicTask.objects.count() == tasks


def test_staff_who_may_change_the_tasks_may_change_their_schedules_and_are_recorded(db):
    interval = rotation_schedule()
    http, officer = staff_browser(
        "django_celery_beat.view_intervalschedule",
        "django_celery_beat.change_intervalschedule",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
    )
    response = http.post(f"{INTERVALS}{interval.pk}/change/", change_form(http, interval, every=120))
    assert response.status_code == HTTPStatus.FOUND, response.content[:400]
    interval.refresh_from_db()
    assert interval.every == 120
    record = LedgerRecord.objects.filter(event="admin.change").latest("leaf_index")
    assert record.actor == str(officer.pk)
    assert json.loads(record.body)["subject"] == f"django_celery_beat.intervalschedule:{interval.pk}"
