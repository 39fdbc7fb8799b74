"""OpenID Connect RP-Initiated Logout 1.0: UAA's reason to ask before signing the user out.

django-oauth-toolkit's ``RPInitiatedLogoutView.must_prompt`` asks for its own reasons (no ID token hint,
the settings' ``OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT``); ``uaa.oauth.views.LogoutView`` adds this one.
"""

from __future__ import annotations

from django.http import HttpRequest

from accounts.sessions import SID
from tokens.formats.id_token import TYP as ID_TOKEN_TYP
from tokens.signing import verify_jwt


def hint_names_another_session(request: HttpRequest) -> bool:
    """§2: the OP MUST ask when the ID token hint does not belong to the current OP session; its ``sid``
    says which session it was issued in (OIDC Front-Channel Logout §3). With nobody signed in there is no
    OP session to end, so nothing to ask."""
    if not request.user.is_authenticated:
        return False
    hint = request.GET.get("id_token_hint") or request.POST.get("id_token_hint") or ""
    sid = (verify_jwt(hint, typ=ID_TOKEN_TYP) or {}).get("sid") if hint else None
    return bool(sid) and sid != request.session.get(SID)
