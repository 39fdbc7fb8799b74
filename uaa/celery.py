"""Celery app (schedule only, no logic: tasks live in tokens/tasks.py, uaa/oauth/tasks.py and
accounts/tasks.py).

Beat uses django-celery-beat's database scheduler, so operators see and change the schedule in
Django admin (Periodic tasks). The default entries are seeded by the migration
``tokens/migrations/0003_default_schedule.py``: signing-key rotation every 5 minutes (it acts only
when a key is due) and expired-token cleanup every hour.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")

app = Celery("uaa")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tokens", "uaa.oauth", "accounts"])
