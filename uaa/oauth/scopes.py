"""Scopes offered by UAA (settings.UAA_SCOPES): OIDC's openid/profile/email/offline_access plus extras."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from oauth2_provider.scopes import BaseScopes


class UAAScopes(BaseScopes):
    def get_all_scopes(self) -> dict[str, str]:
        return dict(settings.UAA_SCOPES)

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        return list(settings.UAA_SCOPES)

    def get_default_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if application is not None and application.authorization_grant_type == "client-credentials":
            return []
        return ["openid"]
