"""OpenID Connect RP-Initiated Logout 1.0: UAA's reason to ask before signing the user out.

django-oauth-toolkit's ``RPInitiatedLogoutView.must_prompt`` asks for its own reasons (no ID token hint,
the settings' ``OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT``); ``uaa.oauth.views.LogoutView`` adds this one.
"""

from __future__ import annotations

from django.http import HttpRequest

from accounts.sessions import SID
from tokens.formats.id_token import TYP as ID_TOKEN_TYP
from tokens.signing import verify_jwt

# The logout question's own fields (templates/oauth/logout.html): a POST carrying one answers the question.
QUESTION_ANSWER_FIELDS = frozenset({"allow", "csrfmiddlewaretoken"})
FORM = "application/x-www-form-urlencoded"


def posted_logout_request(request: HttpRequest) -> bool:
    """§2: the OP "MUST support the use of the HTTP GET and POST methods"; an RP's POST carries the request
    form-encoded. It is told from an answer to the logout question by what it carries: a form body, no
    query (the question page posts back to its own URL) and none of the question form's fields. Such a
    POST decides nothing the GET does not; anything else is an answer and is CSRF-checked."""
    if request.method != "POST" or request.GET or request.content_type != FORM:
        return False
    return not set(request.POST) & QUESTION_ANSWER_FIELDS


def as_get(request: HttpRequest) -> HttpRequest:
    """The RP's POSTed request read as the GET reads it, where it arrived: its form body is the query
    django-oauth-toolkit's ``get`` reads. Not a 303 to the GET: an ID token hint with a full profile is
    longer than a request line may be (gunicorn: 4,094 bytes), and would end up in access logs."""
    request.GET = request.POST
    return request


def hint_names_another_session(request: HttpRequest) -> bool:
    """§2: the OP MUST ask when the ID token hint does not belong to the current OP session; its ``sid``
    says which session it was issued in (OIDC Front-Channel Logout §3). With nobody signed in there is no
    OP session to end, so nothing to ask."""
    if not request.user.is_authenticated:
        return False
    hint = request.GET.get("id_token_hint") or request.POST.get("id_token_hint") or ""
    sid = (verify_jwt(hint, typ=ID_TOKEN_TYP) or {}).get("sid") if hint else None
    return bool(sid) and sid != request.session.get(SID)
