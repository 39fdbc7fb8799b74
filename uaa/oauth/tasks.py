"""Celery entry points of the OAuth app: call a service, retry."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone
from oauth2_provider.models import clear_expired

from uaa.oauth import ratelimit
from uaa.oauth.models import RedeemedCode, SpentAssertion

logger = logging.getLogger(__name__)


# The name predates this module (tokens/tasks.py): the beat schedule's rows (tokens/migrations/0003) name it.
@shared_task(
    name="tokens.clear_expired_tokens", autoretry_for=(Exception,), retry_backoff=True, max_retries=3
)
def clear_expired_tokens_task() -> None:
    """django-oauth-toolkit's expired-token cleanup, plus spent codes and client assertions past use, and the
    rate-limit counters whose window has ended (the database store's; Redis's keys expire)."""
    clear_expired()
    deleted, _ = RedeemedCode.objects.filter(expires__lt=timezone.now()).delete()
    assertions, _ = SpentAssertion.objects.filter(expires__lt=timezone.now()).delete()
    counters = ratelimit.prune()
    logger.info(
        "tokens.expired_tokens_cleared",
        extra={"redeemed_codes": deleted, "assertions": assertions, "rate_limit_counters": counters},
    )
