"""Clients in Django admin: the secret is shown exactly once, on creation or rotation, never stored raw.

Rotation may keep the old secret working for a grace window (the action bar's *grace seconds*; empty: the
setting ``UAA_CLIENT_SECRET_GRACE_SECONDS``); the client's page and the list show until when, never the
secret nor its hash, and *End the previous secret's grace now* stops it at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.helpers import ActionForm
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.timesince import timeuntil

from uaa.oauth.models import Client, Consent
from uaa.oauth.services import (
    MAX_SECRET_GRACE_SECONDS,
    end_client_secret_grace,
    rotate_client_secret,
    save_registration,
)

GRACE_ERROR = f"Grace seconds: a whole number from 0 to {MAX_SECRET_GRACE_SECONDS} (30 days), or empty."


def _is_true(value: object) -> bool:
    return value in (True, "True")


def _https_by_default(field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    """A URL typed without a scheme means https:// (Django 6's default; no RemovedInDjango60Warning)."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class ClientForm(forms.ModelForm):
    # A choice, not a checkbox: a form posted without it means "required" (a checkbox left out means off).
    require_pkce = forms.TypedChoiceField(
        label="Require PKCE",
        choices=(
            (True, "Required on every authorization request"),
            (False, "Not required for OpenID Connect requests with a nonce (confidential clients only)"),
        ),
        coerce=_is_true,
        required=False,
        empty_value=True,  # type: ignore[arg-type]  # Django takes any value; django-stubs says str
        initial=True,
        help_text=Client._meta.get_field("require_pkce").help_text,
    )

    class Meta:
        model = Client
        formfield_callback = _https_by_default  # the admin's own callback applies formfield_overrides
        fields = [
            "name",
            "client_type",
            "authorization_grant_type",
            "redirect_uris",
            "post_logout_redirect_uris",
            "trusted",
            "requires_mfa",
            "require_pkce",
            "algorithm",
            "allowed_resources",
            "default_audience",
            "allowed_scopes",
            "introspection_resources",
            "allowed_origins",
            "token_endpoint_auth_method",
            "jwks",
            "jwks_uri",
            "rate_limit",
        ]


class ClientActionForm(ActionForm):
    """The action bar, with the grace window a rotation gives the old secret (read by ``rotate_secret``
    only, so that a bad value is reported as such, not as "no action selected")."""

    grace_seconds = forms.CharField(
        label="Grace seconds (rotation):",
        required=False,
        widget=forms.TextInput(attrs={"size": 8, "inputmode": "numeric"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        default = settings.UAA_CLIENT_SECRET_GRACE_SECONDS
        self.fields["grace_seconds"].widget.attrs["placeholder"] = str(default)
        self.fields["grace_seconds"].widget.attrs["title"] = (
            f"How long the old secret goes on working beside the new one; empty: {default} "
            "(UAA_CLIENT_SECRET_GRACE_SECONDS), 0: it stops at once."
        )


def grace_seconds(value: str) -> int | None:
    """The action bar's grace seconds: ``None`` when empty (the setting), else 0 to 30 days."""
    text = value.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or int(text) > MAX_SECRET_GRACE_SECONDS:
        raise ValueError(GRACE_ERROR)
    return int(text)


def _until(until: datetime | None) -> str:
    if until is None:
        return ""
    return f"{timezone.localtime(until):%Y-%m-%d %H:%M:%S %Z} (in {timeuntil(until)})"


def previous_secret_state(client: Client) -> str:
    """ "valid until ..." while the previous secret's grace window runs, else that there is none."""
    until = client.previous_secret_valid_until(timezone.now())
    return f"valid until {_until(until)}" if until is not None else "none: only the current secret works"


class ClientAdmin(admin.ModelAdmin):
    form = ClientForm
    action_form = ClientActionForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = [
        "name",
        "client_id",
        "client_type",
        "authorization_grant_type",
        "redirect_uris",
        "trusted",
        "requires_mfa",
        "require_pkce",
        "previous_secret",
        "created",
    ]
    list_filter = [
        "client_type",
        "authorization_grant_type",
        "trusted",
        "requires_mfa",
        "require_pkce",
        "algorithm",
        "created",
    ]
    search_fields = ["name", "client_id", "redirect_uris"]
    readonly_fields = ["client_id", "secret_state", "previous_secret", "created", "updated"]
    actions = ["rotate_secret", "end_secret_grace"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "client_id",
                    "client_type",
                    "authorization_grant_type",
                    "trusted",
                    "requires_mfa",
                    "require_pkce",
                )
            },
        ),
        ("Redirects", {"fields": ("redirect_uris", "post_logout_redirect_uris", "allowed_origins")}),
        ("Tokens", {"fields": ("algorithm",)}),
        (
            "What this client may request: resources it calls (RFC 8707) and scopes (RFC 6749 §3.3)",
            {"fields": ("allowed_resources", "default_audience", "allowed_scopes")},
        ),
        (
            "What this client serves, as a resource server (RFC 7662 introspection)",
            {"fields": ("introspection_resources",)},
        ),
        (
            "Client authentication",
            {"fields": ("token_endpoint_auth_method", "secret_state", "previous_secret", "jwks", "jwks_uri")},
        ),
        ("Rate limit (docs/operations.md, Rate limits)", {"fields": ("rate_limit",)}),
        ("Dates", {"fields": ("created", "updated")}),
    )

    @admin.display(description="client secret")
    def secret_state(self, obj: Client) -> str:
        """What the current secret is, never the secret or its hash."""
        if obj.pk is None:
            return "made when the client is saved, and shown once"
        if obj.client_type != Client.CLIENT_CONFIDENTIAL:
            return "none (a public client)"
        stored = "stored hashed" if obj.hash_client_secret else "stored in plain (rotate it)"
        if obj.secret_rotated_at is None:
            return f"set at registration, {stored}"
        return f"rotated {timezone.localtime(obj.secret_rotated_at):%Y-%m-%d %H:%M:%S %Z}, {stored}"

    @admin.display(description="previous secret")
    def previous_secret(self, obj: Client) -> str:
        if obj.client_type != Client.CLIENT_CONFIDENTIAL:
            return "-"
        return previous_secret_state(obj)

    def save_model(self, request: HttpRequest, obj: Client, form: forms.ModelForm, change: bool) -> None:
        """A new client is registered by the service (its secret and its ``client.registered`` record);
        a change is saved as Django's admin saves it."""
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = save_registration(client=obj, actor=str(request.user.pk))
        request._uaa_new_secret = issued.client_secret  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: Client, post_url_continue: str | None = None
    ) -> HttpResponse:
        return self._secret_page(request, obj, getattr(request, "_uaa_new_secret", None), created=True)

    def _secret_page(
        self, request: HttpRequest, obj: Client, secret: str | None, *, created: bool
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "client": obj,
            "client_secret": secret,
            "created": created,
            "title": "Client credentials",
            "previous_secret_until": _until(obj.previous_secret_valid_until(timezone.now())),
        }
        return TemplateResponse(request, "admin/oauth/client/credentials.html", context)

    @admin.action(description="Rotate the secret of the selected client (shown once)", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Client]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(
                request, "Select exactly one confidential client to rotate its secret.", level="error"
            )
            return None
        client = queryset.get()
        if client.client_type != Client.CLIENT_CONFIDENTIAL:
            self.message_user(request, "Public clients have no secret.", level="error")
            return None
        try:
            grace = grace_seconds(str(request.POST.get("grace_seconds", "")))
            secret = rotate_client_secret(client=client, actor=str(request.user.pk), grace_seconds=grace)
        except ValueError as exc:
            self.message_user(request, str(exc), level="error")
            return None
        return self._secret_page(request, client, secret, created=False)

    @admin.action(
        description="End the previous secret's grace now (the old secret stops working)",
        permissions=["change"],
    )
    def end_secret_grace(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        ended = [
            client.name or client.client_id
            for client in queryset.filter(client_type=Client.CLIENT_CONFIDENTIAL)
            if end_client_secret_grace(client=client, actor=str(request.user.pk))
        ]
        if ended:
            names = ", ".join(sorted(ended))
            self.message_user(request, f"The previous secret no longer works for: {names}.", level="success")
        else:
            self.message_user(request, "No selected client had a previous secret in its grace window.")


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ["user", "client", "scopes", "granted_at"]
    search_fields = ["user__email", "client__name", "client__client_id"]
    readonly_fields = ["user", "client", "scopes", "granted_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
