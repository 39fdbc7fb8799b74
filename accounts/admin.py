from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import throttling
from accounts.mfa import enrollment, policy, recovery, totp
from accounts.models import User, WebAuthnCredential


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = [
        "email",
        "given_name",
        "family_name",
        "is_active",
        "is_staff",
        "has_second_factor",
        "last_login",
        "date_joined",
    ]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "given_name", "family_name"]
    readonly_fields = [
        "id",
        "last_login",
        "date_joined",
        "updated_at",
        "second_factors",
        "backup_codes_left",
        "sign_in_locked_until",
    ]
    actions = ["reset_mfa", "unlock_sign_in"]
    fieldsets = (
        (None, {"fields": ("id", "email", "password")}),
        ("Profile", {"fields": ("given_name", "family_name", "email_verified")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (
            "Sign-in security",
            {
                "fields": ("second_factors", "backup_codes_left", "sign_in_locked_until"),
                "description": "Reset second factors and Unlock sign-in are actions on the user list.",
            },
        ),
        ("Dates", {"fields": ("last_login", "date_joined", "updated_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    @admin.display(boolean=True, description="second factor")
    def has_second_factor(self, obj: User) -> bool:
        return policy.has_factors(obj)

    @admin.display(description="second factors")
    def second_factors(self, obj: User) -> str:
        names = [f"authenticator app ({device.name})" for device in totp.confirmed_devices(obj)]
        names += [
            f"passkey ({credential.name})" for credential in WebAuthnCredential.objects.filter(user=obj)
        ]
        return ", ".join(names) or "none"

    @admin.display(description="unused backup codes")
    def backup_codes_left(self, obj: User) -> int:
        return recovery.remaining(obj)

    @admin.display(description="sign-in locked until")
    def sign_in_locked_until(self, obj: User) -> str:
        until = throttling.locked_until(email=obj.email)
        return until.isoformat(timespec="seconds") if until else "not locked"

    @admin.action(description="Reset second factors (the user enrolls again at the next sign-in)")
    def reset_mfa(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            enrollment.reset_factors(request=request, user=user)
        self.message_user(request, f"Second factors reset for {queryset.count()} user(s).", messages.SUCCESS)

    @admin.action(description="Unlock sign-in (clear failed-attempt lockout)")
    def unlock_sign_in(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        unlocked = sum(enrollment.unlock(request=request, user=user) for user in queryset)
        self.message_user(request, f"{unlocked} account(s) unlocked.", messages.SUCCESS)
