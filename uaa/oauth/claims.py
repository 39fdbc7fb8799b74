"""Scope → claims for the ID token and userinfo (OIDC Core §5.4)."""

from __future__ import annotations

from typing import Any

from accounts.models import User


def claims_for_user(user: User) -> dict[str, Any]:
    """Every standard claim UAA can release for ``user``. django-oauth-toolkit releases each by its scope
    (OIDC Core §5.4: ``OAuth2Validator.oidc_claim_scope``) in the ID token and at userinfo."""
    return {
        "name": user.get_full_name() or None,
        "given_name": user.given_name or None,
        "family_name": user.family_name or None,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        "email_verified": user.email_verified,
    }
