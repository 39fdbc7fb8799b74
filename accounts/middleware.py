"""The SSO session's middleware: timeouts and owed sign-in stages, above both accounts/sessions.py (what
ends a session) and accounts/signin.py (which stage a session owes), which it joins."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts import signin
from accounts.sessions import LAST_SEEN, LAST_SEEN_RESOLUTION, expired

logger = logging.getLogger("accounts.sessions")  # the name its log lines always had


class SessionTimeoutMiddleware:
    """End an SSO session after ``UAA_SESSION_IDLE_TIMEOUT`` seconds unused, or ``SESSION_COOKIE_AGE``
    seconds (``UAA_SESSION_MAX_AGE``) after sign-in, whichever comes first, and at once when it began
    before the user's not-before time (accounts/revocation.py). A session that owes a sign-in stage
    (accounts/signin.py ``interstitial``: replenishing its user's factors) is sent to it first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = time.time()
            reason = expired(request, now=now)
            if reason:
                user_id = str(request.user.pk)
                logout(request)  # end_recorded_session marks its SignIn ended
                logger.info("accounts.session_expired", extra={"user_id": user_id, "reason": reason})
            else:
                if now - float(request.session.get(LAST_SEEN, 0)) > LAST_SEEN_RESOLUTION:
                    request.session[LAST_SEEN] = now
                interstitial = signin.interstitial(request)
                if interstitial is not None:
                    return HttpResponseRedirect(interstitial)
        return self.get_response(request)
