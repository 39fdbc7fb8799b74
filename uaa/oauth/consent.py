"""Remembered consent: what a user has already granted a client."""

from __future__ import annotations

from typing import Any

from uaa.oauth import audit
from uaa.oauth.models import Client, Consent


def covers(*, user: Any, client_id: str, scopes: list[str]) -> bool:
    granted = (
        Consent.objects.filter(user=user, client__client_id=client_id)
        .values_list("scopes", flat=True)
        .first()
    )
    return granted is not None and set(scopes) <= set(granted)


def remember(*, user: Any, client_id: str, scopes: list[str]) -> None:
    client = Client.objects.get(client_id=client_id)
    consent, created = Consent.objects.get_or_create(
        user=user, client=client, defaults={"scopes": sorted(set(scopes))}
    )
    if not created and not set(scopes) <= set(consent.scopes):
        consent.scopes = sorted(set(consent.scopes) | set(scopes))
        consent.save(update_fields=["scopes", "granted_at"])


def refuse(*, user: Any, client_id: str, scopes: list[str], request: Any) -> None:
    """The user said no on the consent page: nothing is remembered, the refusal is recorded."""
    audit.authorization_denied(user=user, client_id=client_id, scopes=scopes, http_request=request)
