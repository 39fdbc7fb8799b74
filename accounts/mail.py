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

import base64
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core import checks
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.crypto import salted_hmac

logger = logging.getLogger(__name__)

_SEAL_SALT = "uaa.accounts.mail.seal"


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


# --- sealing: what the broker carries ---------------------------------------------------------------------
def _seal_key(secret: str) -> bytes:
    return salted_hmac(_SEAL_SALT, b"aes-256-gcm", secret=secret, algorithm="sha256").digest()


def seal_message(content: Mapping[str, Any]) -> str:
    """``content`` as JSON, encrypted and authenticated under a key derived from ``SECRET_KEY``."""
    nonce = os.urandom(12)
    body = AESGCM(_seal_key(settings.SECRET_KEY)).encrypt(nonce, json.dumps(content).encode(), None)
    return base64.urlsafe_b64encode(nonce + body).decode("ascii")


def open_sealed_message(sealed: str) -> dict[str, Any]:
    """The content of ``sealed``, under ``SECRET_KEY`` or one of ``SECRET_KEY_FALLBACKS`` (a rotation between
    queueing and sending). ``ValueError`` when none opens it."""
    raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
    for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        try:
            content: dict[str, Any] = json.loads(AESGCM(_seal_key(secret)).decrypt(raw[:12], raw[12:], None))
        except InvalidTag:
            continue
        return content
    raise ValueError("the sealed message opens under no SECRET_KEY")


# --- sending (the worker) ---------------------------------------------------------------------------------
def deliver_sealed_message(*, message_id: str, sealed: str) -> bool:
    """Send the message unless ``SentMail`` already records it; ``True`` when this call sent it. A backend
    failure raises (the task retries). The gap left: a process that dies between the backend's success and
    the record sends it again on redelivery (the receiver may drop it by its Message-ID)."""
    from accounts.models import SentMail

    if SentMail.objects.filter(message_id=message_id).exists():
        logger.info("accounts.mail.already_sent", extra={"message_id": message_id})
        return False
    content = open_sealed_message(sealed)
    if content["id"] != message_id:
        raise ValueError("the sealed message is not the one the task names")
    domain = parseaddr(content["from"])[1].rpartition("@")[2] or "localhost"
    message = EmailMultiAlternatives(
        content["subject"],
        content["text"],
        content["from"],
        content["to"],
        headers={"Message-ID": f"<{message_id}@{domain}>"},
    )
    message.attach_alternative(content["html"], "text/html")
    message.send()
    SentMail.objects.get_or_create(message_id=message_id, defaults={"template": content["template"][:100]})
    logger.info("accounts.mail.sent", extra={"message_id": message_id, "template": content["template"]})
    return True


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
