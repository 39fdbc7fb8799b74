"""Strict request fields for the admin API: a string is a JSON string, a boolean a JSON boolean, a list a
JSON array; a field the resource does not take, or may not be set (an id, a secret, a date), is refused by
name, never ignored (no mass assignment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from rest_framework import serializers

MAX_URI = 2048
# RFC 8252 §7.3: "http://127.0.0.1:{port}/{path} for IPv4, and http://[::1]:{port}/{path} for IPv6", the
# literals the authorization endpoint gives any port (uaa/oauth/rfc8252.py, django-oauth-toolkit). Not
# "localhost" (§8.3: NOT RECOMMENDED; a name a resolver or hosts file may send off the machine), nor other
# spellings or addresses of 127.0.0.0/8, which would be plain http matched port and all.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})


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
    """RFC 6749 §3.1.2: absolute, no fragment; RFC 9700 §2.1 / RFC 8252 §7.3: https, or http on the
    loopback IP literals ``127.0.0.1`` and ``[::1]`` only."""
    if len(uri) > MAX_URI or any(ch.isspace() for ch in uri) or not uri.isprintable():
        raise serializers.ValidationError(f"A URI of at most {MAX_URI} characters, without spaces.")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise serializers.ValidationError("Not a URI.") from None
    if not parts.scheme or not host:
        raise serializers.ValidationError("An absolute URI (scheme and host).")
    if "#" in uri:
        raise serializers.ValidationError("A redirect URI has no fragment (RFC 6749 §3.1.2).")
    if parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        return uri
    raise serializers.ValidationError(
        "https, or http on 127.0.0.1 or [::1] only (RFC 8252 §7.3; not localhost, §8.3)."
    )


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
