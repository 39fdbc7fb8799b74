"""What drf-spectacular cannot read from the code: the bearer-token security scheme of the admin API, with
the admin scopes each operation needs (OpenAPI 3.1 §4.8.27 security requirements)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
                    "scopes": dict(settings.UAA_ADMIN_SCOPES),
                }
            },
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        from uaa.api.auth import required_scope

        view = auto_schema.view
        request = type("SchemaRequest", (), {"method": auto_schema.method})()
        return {self.name: [required_scope(request, view)]}
