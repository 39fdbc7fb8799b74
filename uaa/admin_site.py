"""The admin site: Django's, with the objects an admin action names checked before the action runs.

A bulk action (delete, revoke, rotate, ...) names its objects by primary key in ``_selected_action``, and
Django filters ``pk__in`` with the values as posted: a value that cannot be a primary key (NUL, which
PostgreSQL refuses in text; "not-a-uuid" for the user model; a number beyond the column's range) raised
ValidationError or DataError in the action, a 500. Such a request is malformed: the 400 page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

from uaa.oauth.http import storable_text

View = Callable[..., HttpResponse]


def is_primary_key(model: Any, value: str) -> bool:
    """Whether ``value`` could be a primary key of ``model``: the field's own conversion and validators
    (a UUID's form, an integer column's range, a varchar's length), and text a database can hold."""
    field = model._meta.pk
    if not storable_text(value):
        return False
    try:
        field.run_validators(field.to_python(value))
    except (ValidationError, ValueError, TypeError, OverflowError):
        return False
    return True


def _checked_selection(view: View, model_admin: admin.ModelAdmin[Any]) -> View:
    @functools.wraps(view)
    def changelist(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST" and "action" in request.POST:
            selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            if not all(is_primary_key(model_admin.model, value) for value in selected):
                from uaa.oauth.views import bad_request  # the views import the admin's neighbours

                return bad_request(request)
        return view(request, *args, **kwargs)

    return changelist


class UAAAdminSite(admin.AdminSite):
    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        model_admin = getattr(view, "__self__", None)
        if isinstance(model_admin, admin.ModelAdmin) and getattr(view, "__name__", "") == "changelist_view":
            view = _checked_selection(view, model_admin)
        return super().admin_view(view, cacheable)


class UAAAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``UAAAdminSite`` as ``admin.site`` (INSTALLED_APPS)."""

    default_site = "uaa.admin_site.UAAAdminSite"
