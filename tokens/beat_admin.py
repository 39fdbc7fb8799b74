"""django-celery-beat's periodic tasks in Django admin: every action needs ``change_periodictask`` and is
recorded in the audit ledger.

Beat's own admin offers "enable", "disable", "toggle" and "run" to anyone who may open the list, and its
bulk ``queryset.update`` writes no ``LogEntry``, so no record either. Here each action needs the change
permission (Django neither offers nor runs it otherwise) and writes one ``admin.change`` record per task
naming the admin, in the transaction of the change. Saving or deleting a task in its form is recorded
through Django's ``LogEntry`` like any admin change (tokens.receivers.record_admin_change). Registered in
place of beat's admin by tokens/admin.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from tokens.receivers import record_admin_action

MODEL = "django_celery_beat.periodictask"


def actor_of(request: HttpRequest) -> str:
    """The acting admin as the ledger names users: their ``sub`` (the primary key)."""
    return str(request.user.pk)


class AuditedPeriodicTaskAdmin(PeriodicTaskAdmin):
    def _record(
        self, request: HttpRequest, tasks: Iterable[PeriodicTask], *, action: str, fields: Sequence[str]
    ) -> None:
        for task in tasks:
            record_admin_action(
                actor=actor_of(request),
                model=MODEL,
                object_id=str(task.pk),
                action=action,
                fields=fields,
                task=task.task,  # the task's dotted name; never its arguments
            )

    @admin.action(description=PeriodicTaskAdmin.enable_tasks.short_description, permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        with transaction.atomic():
            tasks = list(queryset)
            super().enable_tasks(request, queryset)
            self._record(request, tasks, action="enable", fields=["enabled"])

    @admin.action(description=PeriodicTaskAdmin.disable_tasks.short_description, permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        with transaction.atomic():
            tasks = list(queryset)
            super().disable_tasks(request, queryset)
            self._record(request, tasks, action="disable", fields=["enabled", "last_run_at"])

    @admin.action(description=PeriodicTaskAdmin.toggle_tasks.short_description, permissions=["change"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        """Recorded as what happened to each task: "enable" or "disable"."""
        with transaction.atomic():
            pks = list(queryset.values_list("pk", flat=True))
            super().toggle_tasks(request, queryset)
            tasks = list(PeriodicTask.objects.filter(pk__in=pks).order_by("pk"))
            self._record(request, [t for t in tasks if t.enabled], action="enable", fields=["enabled"])
            self._record(request, [t for t in tasks if not t.enabled], action="disable", fields=["enabled"])

    @admin.action(description=PeriodicTaskAdmin.run_tasks.short_description, permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        """Recorded before the tasks are sent; a task beat does not know is refused (by beat's admin)
        with nothing sent and nothing recorded."""
        self.celery_app.loader.import_default_modules()
        tasks = list(queryset)
        with transaction.atomic():
            if all(self.celery_app.tasks.get(task.task) is not None for task in tasks):
                self._record(request, tasks, action="run", fields=[])
            super().run_tasks(request, queryset)


class TaskScheduleAdminMixin:
    """A schedule's admin where changing or deleting a schedule also needs ``change_periodictask``.

    A schedule is part of every task that runs on it: stretching the interval the rotation task uses stops
    rotation as surely as disabling the task, and deleting a schedule deletes its tasks (Django already asks
    for ``delete_periodictask`` for that cascade). So whoever may change the schedules must also be allowed
    to change the tasks. The save itself is recorded through Django's ``LogEntry`` as every admin change is
    (tokens.receivers.record_admin_change), naming the admin.
    """

    def _may_change_tasks(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_celery_beat.change_periodictask")

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._may_change_tasks(request)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_change_tasks(request)  # type: ignore[misc]


def register_schedule_admins(site: admin.AdminSite) -> None:
    """Re-register beat's four schedule admins with :class:`TaskScheduleAdminMixin` in front."""
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label == "django_celery_beat" and model is not PeriodicTask:
            site.unregister(model)
            audited = type(type(model_admin).__name__, (TaskScheduleAdminMixin, type(model_admin)), {})
            site.register(model, audited)
