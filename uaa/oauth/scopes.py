"""Scopes offered by UAA (settings.UAA_SCOPES): OIDC's openid/profile/email/offline_access plus extras."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from oauth2_provider.scopes import BaseScopes

# Scopes about a signed-in user (OIDC Core §5.4, §11): meaningless for a client acting on its own behalf.
USER_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


class UAAScopes(BaseScopes):
    def get_all_scopes(self) -> dict[str, str]:
        return dict(settings.UAA_SCOPES)

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if application is not None and application.authorization_grant_type == "client-credentials":
            return [scope for scope in settings.UAA_SCOPES if scope not in USER_SCOPES]
        return list(settings.UAA_SCOPES)

    def get_default_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if application is not None and application.authorization_grant_type == "client-credentials":
            return []
        return ["openid"]
