"""Celery entry points of the tokens app: call a service, retry (the OAuth app's: uaa/oauth/tasks.py)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from tokens.ledger import SealRefused, seal_tree_head
from tokens.rotation import rotate_signing_keys

logger = logging.getLogger(__name__)


@shared_task(name="tokens.rotate_signing_keys", autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def rotate_signing_keys_task() -> dict[str, list[str]]:
    """Advance the signing-key lifecycle (tokens.rotation). Idempotent: it acts only when a key is due."""
    report = rotate_signing_keys(now=timezone.now())
    if report.changed:
        logger.info(
            "tokens.rotation_ran", extra={"activated": report.activated, "published": report.published}
        )
    return {"published": report.published, "activated": report.activated, "expired": report.expired}


@shared_task(name="tokens.seal_audit_ledger", autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def seal_audit_ledger_task() -> int | None:
    """Seal the audit records appended since the last tree head (tokens.ledger); the new tree size.

    A refused seal (logged once by the sealer) is not retried: the next beat checks again."""
    try:
        head = seal_tree_head(now=timezone.now())
    except SealRefused:
        return None
    return head.tree_size if head else None
