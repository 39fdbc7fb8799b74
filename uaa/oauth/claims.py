"""Scope → claims for the ID token and userinfo (OIDC Core §5.4)."""

from __future__ import annotations

from typing import Any

from accounts.models import User

# OIDC Core §5.4: which scope releases which standard claim.
CLAIM_SCOPES: dict[str, str] = {
    "name": "profile",
    "given_name": "profile",
    "family_name": "profile",
    "updated_at": "profile",
    "email": "email",
    "email_verified": "email",
}


def claims_for_user(user: User) -> dict[str, Any]:
    """Every standard claim UAA can release for ``user``; callers filter them by granted scope."""
    return {
        "name": user.get_full_name() or None,
        "given_name": user.given_name or None,
        "family_name": user.family_name or None,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        "email_verified": user.email_verified,
    }


def claims_for_scopes(*, user: User, scopes: list[str]) -> dict[str, Any]:
    released = claims_for_user(user)
    return {
        name: value for name, value in released.items() if CLAIM_SCOPES[name] in scopes and value is not None
    }
