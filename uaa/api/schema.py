"""What drf-spectacular cannot read from the code: the bearer-token security scheme of the admin API, with
the admin scopes each operation needs (OpenAPI 3.1 §4.8.27 security requirements), and the error answers
every operation may give (uaa/api/errors.py), so that a client generated from the document knows them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from uaa.api.auth import API_SCOPES, required_scope


class AccessTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "uaa.api.auth.AccessTokenAuthentication"
    name = "adminToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "oauth2",
            "description": "An access token from this server's token endpoint (client credentials), "
            "sent as `Authorization: Bearer` (RFC 6750 §2.1). docs/api.md says how to get one.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/oauth/token",
                    "scopes": {scope: settings.UAA_ADMIN_SCOPES.get(scope, "") for scope in API_SCOPES},
                }
            },
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        view = auto_schema.view
        request = type("SchemaRequest", (), {"method": auto_schema.method})()
        return {self.name: [required_scope(request, view)]}


class ErrorSerializer(serializers.Serializer):
    """RFC 6749 §5.2's shape (uaa/api/errors.py)."""

    error = serializers.CharField(help_text="invalid_request, invalid_token, insufficient_scope, ...")
    error_description = serializers.CharField()
    fields = serializers.DictField(
        required=False, help_text="400: each invalid field's messages (a list, or an object by list index)"
    )
    scope = serializers.CharField(required=False, help_text="403 insufficient_scope: the scope needed")


ERRORS = {
    "400": "invalid_request: a field, a filter or the body is invalid (fields names them)",
    "401": "invalid_token: no token, or not a valid access token of this server (WWW-Authenticate: Bearer)",
    "403": "insufficient_scope (the scope is named), or access_denied",
    "404": "not_found",
    "415": "unsupported_media_type: a body that is not application/json",
    "503": "temporarily_unavailable (Retry-After)",
}


class AdminApiSchema(AutoSchema):
    """drf-spectacular's schema of an admin API view, with its error answers."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        bodies: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return bodies
        for code, description in ERRORS.items():
            if code == "404" and "{" not in self.path:
                continue
            if code == "415" and self.method not in ("POST", "PATCH"):
                continue
            response = OpenApiResponse(response=ErrorSerializer, description=description)
            bodies.setdefault(code, self._get_response_for_code(response, code, direction=direction))
        return bodies


def nullable_links(schema: dict[str, Any]) -> dict[str, Any]:
    """A paginator's answer schema with OpenAPI 3.1 nullability: drf-spectacular's paginators still write
    3.0's ``nullable: true``, which a 3.1 (JSON Schema 2020-12) validator ignores."""
    for name in ("next", "previous"):
        link = schema.get("properties", {}).get(name)
        if link is not None:
            link.pop("nullable", None)
            link["type"] = ["string", "null"]
    return schema
