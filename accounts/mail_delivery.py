"""Sealing and sending one queued message (accounts/mail.py queues it; accounts/tasks.py's worker sends it).

Apart from accounts/mail.py so that the task module depends on this and not on the module that queues the
task (no import cycle: accounts.mail -> accounts.tasks -> accounts.mail_delivery). Logs under
``accounts.mail``, as the queueing does: one logger for a message's life.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.crypto import salted_hmac

logger = logging.getLogger("accounts.mail")

_SEAL_SALT = "uaa.accounts.mail.seal"


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
