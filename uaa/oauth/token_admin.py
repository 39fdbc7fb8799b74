"""django-oauth-toolkit's access and refresh tokens in Django admin: "revoke" needs the change permission
and is recorded.

DOT's own admin offers "Revoke selected … tokens" to anyone who may open the list: a staff member with a
view permission could sign every user out of every application. Here the action needs
``oauth2_provider.change_accesstoken`` (or ``change_refreshtoken``) and writes one ``token.revoked`` record
per token (its SHA-256 digest only) naming the admin in ``detail.by``, in the revocation's transaction.
Plugged in through DOT's ``ACCESS_TOKEN_ADMIN_CLASS`` and ``REFRESH_TOKEN_ADMIN_CLASS`` settings.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from oauth2_provider.admin import AccessTokenAdmin as DOTAccessTokenAdmin
from oauth2_provider.admin import RefreshTokenAdmin as DOTRefreshTokenAdmin

from tokens import ledger
from tokens.models import LedgerRecord


def _record_revocations(request: HttpRequest, tokens: list[Any], *, kind: str) -> None:
    for token in tokens:
        ledger.append_record(
            event=LedgerRecord.Event.TOKEN_REVOKED,
            client_id=getattr(token.application, "client_id", ""),
            sub=str(token.user_id or ""),
            hashes={kind: token.token_checksum},
            detail={"reason": "admin", "by": str(request.user.pk)},
            **ledger.request_metadata(request),
        )


class AccessTokenAdmin(DOTAccessTokenAdmin):
    @admin.action(description=DOTAccessTokenAdmin.revoke_tokens.short_description, permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            _record_revocations(request, list(queryset.select_related("application")), kind="access_token")
            super().revoke_tokens(request, queryset)


class RefreshTokenAdmin(DOTRefreshTokenAdmin):
    @admin.action(description=DOTRefreshTokenAdmin.revoke_tokens.short_description, permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            live = list(queryset.filter(revoked__isnull=True).select_related("application"))
            _record_revocations(request, live, kind="refresh_token")
            super().revoke_tokens(request, queryset)
