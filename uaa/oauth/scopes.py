"""Scopes offered by UAA (settings.UAA_SCOPES) and which of them each client may be granted (RFC 6749 §3.3).

UAA offers OIDC's user scopes (openid, profile, email, address, phone, offline_access) and the extra scopes
an operator adds with UAA_EXTRA_SCOPES. "The authorization server MAY fully or partially ignore the scope
requested by the client, based on the authorization server policy" (§3.3); UAA's policy is per client:

- the user scopes: every authorization-code client may ask for them (the user consents); a client acting
  for itself (client credentials) never gets them, there being no user (OIDC Core §3.1.2.1);
- an extra scope: only a client registered for it (``Client.allowed_scopes``, "extra scopes this client
  may request"), and only while UAA still offers it;
- an admin scope (settings.UAA_ADMIN_SCOPES, the admin API's, uaa/api/): only a client-credentials client
  registered for it; never a user's token, whatever its client was registered for.

Anything else is ``invalid_scope`` (§4.1.2.1 at the authorization endpoint, §5.2 at the token endpoint).
A refresh keeps the original scope less what this policy now refuses (§6; ``UAAOAuth2Validator``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from oauth2_provider.scopes import BaseScopes

# Scopes about a signed-in user (OIDC Core §5.4, §11): meaningless for a client acting on its own behalf.
USER_SCOPES = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})

CLIENT_CREDENTIALS = "client-credentials"  # Client.GRANT_CLIENT_CREDENTIALS (not imported: models import us)


def scopes_for_client(client: Any) -> list[str]:
    """The scopes ``client`` may be granted now, in the order of UAA_SCOPES."""
    registered = set(client.requestable_scopes)
    if client.authorization_grant_type == CLIENT_CREDENTIALS:
        return [scope for scope in settings.UAA_SCOPES if scope in registered and scope not in USER_SCOPES]
    admin = settings.UAA_ADMIN_SCOPES
    return [
        scope
        for scope in settings.UAA_SCOPES
        if scope in USER_SCOPES or (scope in registered and scope not in admin)
    ]


class UAAScopes(BaseScopes):
    def get_all_scopes(self) -> dict[str, str]:
        return dict(settings.UAA_SCOPES)

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        """Every scope UAA offers, or, given a client, what that client may be granted."""
        if application is None:
            return list(settings.UAA_SCOPES)
        return scopes_for_client(application)

    def get_default_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if application is not None and application.authorization_grant_type == CLIENT_CREDENTIALS:
            return []
        return ["openid"]
