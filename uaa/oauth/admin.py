"""Clients in Django admin: the secret is shown exactly once, on creation or rotation, never stored raw."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from uaa.oauth.models import Client, Consent
from uaa.oauth.services import rotate_client_secret, save_registration


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


class ClientAdmin(admin.ModelAdmin):
    form = ClientForm
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
    readonly_fields = ["client_id", "created", "updated"]
    actions = ["rotate_secret"]
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
        ("Client authentication", {"fields": ("token_endpoint_auth_method", "jwks", "jwks_uri")}),
        ("Rate limit (docs/operations.md, Rate limits)", {"fields": ("rate_limit",)}),
        ("Dates", {"fields": ("created", "updated")}),
    )

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
        try:
            secret = rotate_client_secret(client=client, actor=str(request.user.pk))
        except ValueError:
            self.message_user(request, "Public clients have no secret.", level="error")
            return None
        return self._secret_page(request, client, secret, created=False)


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ["user", "client", "scopes", "granted_at"]
    search_fields = ["user__email", "client__name", "client__client_id"]
    readonly_fields = ["user", "client", "scopes", "granted_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
