"""Users in Django admin: helpdesk actions behind permissions of their own; nobody raises privileges.

* "Reset second factors" needs ``accounts.reset_user_mfa``, "Unlock sign-in" ``accounts.unlock_user``
  (checked by Django before the action runs, and the actions are not offered without them).
* A staff account (``is_staff`` or ``is_superuser``) is changed, deleted, reset or unlocked by superusers
  only: a helpdesk that could set a superuser's password and reset their factors could become them.
* ``is_superuser``, ``is_staff``, ``groups`` and ``user_permissions`` are read-only for non-superusers,
  and for everyone on their own account. Group permissions are changed by superusers only.
* A new password and deactivation end the user's sessions and grants made before them (the user's
  not-before time, accounts/revocation.py), as "Reset second factors" does.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import revocation, throttling
from accounts.mfa import backup_codes, enrollment, policy, totp
from accounts.models import User, WebAuthnCredential

PERMISSION_FIELDS = ("is_superuser", "is_staff", "groups", "user_permissions")


def is_staff_account(user: User) -> bool:
    return bool(user.is_staff or user.is_superuser)


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
    search_fields = ["email", "given_name", "family_name", "preferred_username"]
    readonly_fields = [
        "id",
        "last_login",
        "date_joined",
        "updated_at",
        "second_factors",
        "backup_codes_left",
        "sign_in_locked_until",
        "mfa_enrolled_at",
        "not_before",
        "sessions_not_before",
    ]
    actions = ["reset_mfa", "unlock_sign_in"]
    # The profile, picture and website claims are https URLs (accounts.models.https_url): so is a bare host.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("id", "email", "password")}),
        (
            "Profile",
            {
                "fields": (
                    ("given_name", "middle_name", "family_name"),
                    ("nickname", "preferred_username"),
                    "email_verified",
                    ("profile", "picture", "website"),
                    ("gender", "birthdate"),
                    ("zoneinfo", "locale"),
                ),
                "description": "OIDC Core §5.1 claims, released to applications the user allows the scope.",
            },
        ),
        ("Phone", {"fields": (("phone_number", "phone_number_verified"),)}),
        ("Address", {"fields": ("street_address", ("locality", "region"), ("postal_code", "country"))}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (
            "Sign-in security",
            {
                "fields": (
                    "second_factors",
                    "backup_codes_left",
                    "mfa_enrolled_at",
                    "sign_in_locked_until",
                    "not_before",
                    "sessions_not_before",
                ),
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
        return backup_codes.remaining(obj)

    @admin.display(description="sign-in locked until")
    def sign_in_locked_until(self, obj: User) -> str:
        until = throttling.locked_until(email=obj.email)
        return until.isoformat(timespec="seconds") if until else "not locked"

    # --- who may do what -----------------------------------------------------------------------------
    def _may_manage(self, request: HttpRequest, obj: User | None) -> bool:
        """Staff accounts are a superuser's business; ordinary accounts anyone's with the permission."""
        return obj is None or request.user.is_superuser or not is_staff_account(obj)

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return self._may_manage(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return self._may_manage(request, obj) and super().has_delete_permission(request, obj)

    def has_reset_user_mfa_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.reset_user_mfa")

    def has_unlock_user_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.unlock_user")

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        own = obj is not None and obj.pk == request.user.pk
        if obj is not None and (own or not request.user.is_superuser):
            fields += [name for name in PERMISSION_FIELDS if name not in fields]
        return fields

    def _manageable(self, request: HttpRequest, queryset: QuerySet[User]) -> list[User]:
        users = list(queryset)
        allowed = [user for user in users if self._may_manage(request, user)]
        if len(allowed) < len(users):
            self.message_user(
                request,
                f"{len(users) - len(allowed)} staff account(s) left alone: only a superuser changes a staff "
                "account's sign-in.",
                messages.WARNING,
            )
        return allowed

    # --- password and deactivation end what was granted before them ---------------------------------
    def save_model(self, request: HttpRequest, obj: User, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            revocation.revoke(user=obj, request=request, reason=revocation.Reason.DEACTIVATED)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """Django's password form; once it saved a new password (or none), every session and grant of the
        user made before it ends (RFC 9700 §4.14.2: a password change is a security event)."""
        target = self.get_object(request, unquote(id))
        before = target.password if target is not None else None
        response = super().user_change_password(request, id, form_url)
        if target is not None:
            target.refresh_from_db(fields=["password"])
            if target.password != before:
                revocation.revoke(user=target, request=request, reason=revocation.Reason.PASSWORD_CHANGED)
        return response

    # --- the actions ---------------------------------------------------------------------------------
    @admin.action(
        description="Reset second factors (signs the user out everywhere; the next sign-in enrolls again)",
        permissions=["reset_user_mfa"],
    )
    def reset_mfa(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = self._manageable(request, queryset)
        for user in users:
            enrollment.reset_factors(request=request, user=user)
        if users:
            self.message_user(request, f"Second factors reset for {len(users)} user(s).", messages.SUCCESS)

    @admin.action(description="Unlock sign-in (clear failed-attempt lockout)", permissions=["unlock_user"])
    def unlock_sign_in(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = self._manageable(request, queryset)
        unlocked = sum(enrollment.unlock(request=request, user=user) for user in users)
        self.message_user(request, f"{unlocked} account(s) unlocked.", messages.SUCCESS)


admin.site.unregister(Group)

# django-otp's device admin shows every TOTP secret (a copy of someone's second factor) and lets staff bind a
# device to any account, around the rule that only superusers change staff accounts' factors. Factors are
# changed by their owner on the Security page and by "reset second factors" above, never as raw device rows.
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    """A group's permissions are permission fields of every member: superusers change them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return request.user.is_superuser
