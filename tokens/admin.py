"""Signing keys in Django admin: read-only, public material only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from tokens.models import SigningKey


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ["kid", "algorithm", "state", "created_at", "activated_at", "retired_at", "revoked_at"]
    list_filter = ["algorithm", "state"]
    search_fields = ["kid"]
    fields = [
        "kid",
        "algorithm",
        "state",
        "kek_id",
        "public_jwk",
        "created_at",
        "activated_at",
        "retired_at",
        "expired_at",
        "revoked_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False
