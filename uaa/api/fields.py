"""Strict request fields for the admin API: a string is a JSON string, a boolean a JSON boolean, a list a
JSON array; a field the resource does not take, or may not be set (an id, a secret, a date), is refused by
name, never ignored (no mass assignment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oauth2_provider.settings import oauth2_settings
from rest_framework import serializers

from uaa.oauth import rfc8252

MAX_URI = rfc8252.MAX_URI


class StrictCharField(serializers.CharField):
    """A JSON string only (DRF's CharField turns 12 or true into "12" / "True")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean only (DRF's BooleanField also takes "yes", 1, "on")."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=str(data)[:20])
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only (DRF's IntegerField also takes "12", 12.0 and true)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictListField(serializers.ListField):
    """A JSON array only (DRF's ListField also takes a form's repeated values)."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return list(super().to_internal_value(data))


def check_redirect_uri(uri: str) -> str:
    """The one redirect URI rule (uaa/oauth/rfc8252.py), with the schemes the server allows. The client
    type is not known here (a change names only what changes): a private-use scheme for a confidential
    client is refused by ``Client.clean``, which the service runs."""
    problem = rfc8252.redirect_uri_problem(
        uri, schemes=oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES, native=True
    )
    if problem:
        raise serializers.ValidationError(problem)
    return uri


def uri_list(**kwargs: Any) -> StrictListField:
    return StrictListField(
        child=StrictCharField(max_length=MAX_URI, validators=[check_redirect_uri]), max_length=20, **kwargs
    )


class StrictSerializer(serializers.Serializer):
    """Refuses members it does not take: unknown ones, and those it only shows (read-only)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({"non_field_errors": ["A JSON object."]})
        writable = {name for name, field in self.fields.items() if not field.read_only}
        errors: dict[str, list[str]] = {}
        for name in data:
            if name in self.fields and name not in writable:
                errors[str(name)[:64]] = ["This field cannot be set."]
            elif name not in self.fields:
                errors[str(name)[:64]] = ["Unknown field."]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
