"""Signing keys in Django admin: public material only; "rotate now" and "revoke" actions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from tokens.models import SigningKey
from tokens.rotation import request_rotation, revoke_signing_key


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = [
        "kid",
        "algorithm",
        "state",
        "created_at",
        "activate_after",
        "activated_at",
        "retired_at",
        "expired_at",
        "revoked_at",
    ]
    list_filter = ["algorithm", "state"]
    search_fields = ["kid"]
    ordering = ["-created_at"]
    fields = [
        "kid",
        "algorithm",
        "state",
        "kek_id",
        "public_jwk",
        "created_at",
        "activate_after",
        "activated_at",
        "retired_at",
        "expired_at",
        "revoked_at",
    ]
    readonly_fields = fields
    actions = ["rotate_now", "revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False  # states change only through tokens.rotation (the actions below)

    def has_delete_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False

    @admin.action(
        description="Rotate now: publish a next key for these algorithms (signs after pre-publication)"
    )
    def rotate_now(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        for algorithm in sorted(set(queryset.values_list("algorithm", flat=True))):
            report = request_rotation(algorithm=algorithm, now=timezone.now())
            published = ", ".join(report.published) or "already published"
            self.message_user(request, f"{algorithm}: next key {published}; it signs once pre-published.")

    @admin.action(description="Revoke now (emergency): remove from JWKS, reject every token it signed")
    def revoke(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        for kid in list(queryset.values_list("kid", flat=True)):
            revoke_signing_key(kid=kid, now=timezone.now(), reason=f"admin {request.user}")
            self.message_user(request, f"revoked {kid}", level=messages.WARNING)
