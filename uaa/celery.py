"""Celery app and beat schedule (schedule only, no logic: tasks live in tokens/tasks.py)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")

app = Celery("uaa")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tokens"])


@app.on_after_finalize.connect
def setup_periodic_tasks(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(
        settings.UAA_CLEAR_EXPIRED_TOKENS_EVERY,
        sender.signature("tokens.clear_expired_tokens"),
        name="clear expired tokens",
    )
