"""E-mail for password reset, registration and e-mail change: templates, sealing, queueing, checks.

``send_templated_mail("email/<name>", to, context)`` renders ``templates/email/<name>_subject.txt``,
``<name>.txt`` and ``<name>.html`` (autoescaped) in the caller, builds the message (Django refuses a CR or LF
in a header with ``BadHeaderError`` there, before anything is queued) and queues ``accounts.send_mail`` on
commit. What the broker carries is the rendered message sealed (AES-256-GCM under a key derived from
``SECRET_KEY``): a reset link in a body is a secret, and whoever reads the broker (or its logs) must not learn
it; a reference to the database would need the content stored there instead, past its use. The worker opens
the seal, sends, and records the message id (``SentMail``) so that a retried or redelivered task does not
send twice a message the backend reported as sent. docs/email.md is the operator's page.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation

from accounts.mail_delivery import deliver_sealed_message, open_sealed_message, seal_message

logger = logging.getLogger(__name__)

__all__ = [
    "MailNotConfigured",
    "RefusingBackend",
    "deliver_sealed_message",
    "open_sealed_message",
    "render_templated_mail",
    "seal_message",
    "send_templated_mail",
]


class MailNotConfigured(RuntimeError):
    """No e-mail backend is configured (production without ``EMAIL_URL``): refused, never dropped."""


class RefusingBackend(BaseEmailBackend):
    """The backend without ``EMAIL_URL`` (or with one that cannot be read): every send raises, so the task
    retries, then fails, is logged and counted; never a silent drop."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        raise MailNotConfigured("EMAIL_URL is not set (or not readable): no e-mail can be sent.")


# --- rendering and queueing (the web process) -------------------------------------------------------------
def render_templated_mail(
    template: str, to: str | Sequence[str], context: Mapping[str, Any], *, language: str | None = None
) -> EmailMultiAlternatives:
    """The message of ``template`` for ``to``: plain text and HTML alternative, subject on one line. Raises
    ``django.core.mail.BadHeaderError`` for a CR or LF in the subject or an address (a header injection)."""
    recipients = [to] if isinstance(to, str) else list(to)
    with translation.override(language or translation.get_language() or settings.LANGUAGE_CODE):
        subject = render_to_string(f"{template}_subject.txt", dict(context)).strip()
        text = render_to_string(f"{template}.txt", dict(context))
        html = render_to_string(f"{template}.html", dict(context))
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, recipients)
    message.attach_alternative(html, "text/html")
    message.message()  # Django's header checks: BadHeaderError for a newline in the subject or an address
    return message


def send_templated_mail(
    template: str, to: str | Sequence[str], context: Mapping[str, Any], *, language: str | None = None
) -> uuid.UUID:
    """Render ``template`` now and send it through the worker once the current transaction commits; returns
    the message id. A header injection raises ``BadHeaderError`` here and nothing is queued."""
    from accounts.tasks import send_mail_task

    message = render_templated_mail(template, to, context, language=language)
    message_id = uuid.uuid4()
    sealed = seal_message(
        {
            "id": str(message_id),
            "template": template,
            "from": message.from_email,
            "to": list(message.to),
            "subject": message.subject,
            "text": message.body,
            "html": str(message.alternatives[0][0]),
        }
    )
    transaction.on_commit(lambda: send_mail_task.delay(str(message_id), template, sealed))
    logger.info("accounts.mail.queued", extra={"message_id": str(message_id), "template": template})
    return message_id


# --- configuration checks (registered by accounts/apps.py) -------------------------------------------------
def mail_configuration_messages(settings: Any) -> list[checks.CheckMessage]:
    """accounts.E001: an ``EMAIL_URL`` that cannot be read, or a ``DEFAULT_FROM_EMAIL`` that is no single
    address on one line; accounts.W001: production (no ``DEBUG``) without ``EMAIL_URL``."""
    found: list[checks.CheckMessage] = []
    problem = getattr(settings, "UAA_EMAIL_URL_PROBLEM", "")
    if problem:
        found.append(checks.Error(problem, id="accounts.E001"))
    sender = str(getattr(settings, "DEFAULT_FROM_EMAIL", ""))
    if "\r" in sender or "\n" in sender or "@" not in parseaddr(sender)[1]:
        found.append(
            checks.Error("DEFAULT_FROM_EMAIL must be one e-mail address on one line.", id="accounts.E001")
        )
    if not problem and not getattr(settings, "UAA_EMAIL_CONFIGURED", True) and not settings.DEBUG:
        found.append(
            checks.Warning(
                "EMAIL_URL is not set: every e-mail (password reset, verification) is refused and fails "
                "after its retries (docs/email.md).",
                id="accounts.W001",
            )
        )
    return found


def check_mail_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The system check: the e-mail settings' errors and warning."""
    return mail_configuration_messages(settings)
