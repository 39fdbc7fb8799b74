"""Celery entry points of the accounts app: call a service, retry."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from accounts.mail_delivery import deliver_sealed_message

logger = logging.getLogger(__name__)


class _MailTask(Task):  # type: ignore[misc]
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """After the last retry (or a message that can never be sent): logged here, counted by uaa/metrics.py
        (uaa_celery_tasks_total{task="accounts.send_mail",outcome="failed"}). Never the sealed content."""
        message_id, template = [*list(args), "", ""][:2]
        logger.error(
            "accounts.mail.failed",
            extra={
                "message_id": message_id,
                "template": template,
                "attempts": self.request.retries + 1,
                "error": type(exc).__name__,
            },
        )


@shared_task(
    base=_MailTask,
    name="accounts.send_mail",
    autoretry_for=(Exception,),
    dont_autoretry_for=(ValueError,),  # a seal no key opens, a header Django refuses: no retry sends it
    retry_backoff=2,
    retry_backoff_max=settings.UAA_EMAIL_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=settings.UAA_EMAIL_MAX_RETRIES,
)
def send_mail_task(message_id: str, template: str, sealed: str) -> bool:
    """Send one queued message (accounts.mail): ``sealed`` is its rendered content, encrypted; ``template``
    names it for the logs. Idempotent per ``message_id``: ``False`` when it was already sent."""
    return deliver_sealed_message(message_id=message_id, sealed=sealed)
