"""Celery entry points: call a service, retry."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone
from oauth2_provider.models import clear_expired

from tokens.ledger import SealRefused, seal_tree_head
from tokens.rotation import rotate_signing_keys
from uaa.oauth.models import RedeemedCode, SpentAssertion

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


@shared_task(
    name="tokens.clear_expired_tokens", autoretry_for=(Exception,), retry_backoff=True, max_retries=3
)
def clear_expired_tokens_task() -> None:
    """django-oauth-toolkit's expired-token cleanup, plus spent codes and client assertions past use."""
    clear_expired()
    deleted, _ = RedeemedCode.objects.filter(expires__lt=timezone.now()).delete()
    assertions, _ = SpentAssertion.objects.filter(expires__lt=timezone.now()).delete()
    logger.info("tokens.expired_tokens_cleared", extra={"redeemed_codes": deleted, "assertions": assertions})


@shared_task(name="tokens.seal_audit_ledger", autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def seal_audit_ledger_task() -> int | None:
    """Seal the audit records appended since the last tree head (tokens.ledger); the new tree size.

    A refused seal (logged once by the sealer) is not retried: the next beat checks again."""
    try:
        head = seal_tree_head(now=timezone.now())
    except SealRefused:
        return None
    return head.tree_size if head else None
