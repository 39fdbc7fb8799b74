"""The SSO session's authentication context (auth_time, amr, acr, sid), the half-finished sign-in, and
the idle and absolute timeouts.

A sign-in whose password step is done but whose second factor is not is a *pending* state in this
browser's session only: it names the user, the stage it allows next (accounts/signin.py decides which),
and the factors proven so far, grants nothing (the user is not logged in), expires after
``UAA_MFA_PENDING_SECONDS``, and another browser cannot resume it. The WebAuthn challenge of the
browser's current ceremony and the id of the authenticator-app device being enrolled live here too.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts import revocation
from accounts.models import SignIn

logger = logging.getLogger(__name__)

AUTH_TIME = "uaa_auth_time"
AMR = "uaa_amr"
ACR = "uaa_acr"
SID = "uaa_sid"
LAST_SEEN = "uaa_last_seen"
PENDING = "uaa_pending"
WEBAUTHN_CHALLENGE = "uaa_webauthn_challenge"
TOTP_DEVICE = "uaa_totp_device"
VERIFIED_AT = "uaa_verified_at"  # the last step-up: the second factor re-entered for a security change
REPLENISH = "uaa_replenish"  # signed in with the last backup code: where to go once factors are replenished
LAST_SEEN_RESOLUTION = 60  # seconds: the session is written at most once a minute to note activity


def start(request: HttpRequest, *, amr: list[str], acr: str = "") -> None:
    """Record a completed sign-in on the (already rotated) session."""
    request.session[AUTH_TIME] = timezone.now().isoformat()
    request.session[AMR] = list(amr)
    request.session[ACR] = acr
    request.session[SID] = secrets.token_urlsafe(16)
    request.session[LAST_SEEN] = time.time()
    request.session.pop(PENDING, None)
    request.session.pop(VERIFIED_AT, None)  # a sign-in is not a step-up (accounts/signin.py)
    request.session.pop(REPLENISH, None)


def auth_time(request: HttpRequest) -> datetime | None:
    value = request.session.get(AUTH_TIME)
    return parse_datetime(value) if isinstance(value, str) else None


def current_acr(request: HttpRequest) -> str:
    return str(request.session.get(ACR, "")) if request.user.is_authenticated else ""


def auth_context(request: HttpRequest) -> dict[str, Any]:
    signed_in = auth_time(request)
    return {
        "auth_time": signed_in.isoformat() if signed_in else None,
        "amr": list(request.session.get(AMR, [])),
        "acr": request.session.get(ACR, ""),
        "sid": request.session.get(SID, ""),
    }


# --- the half-finished sign-in ---------------------------------------------------------------------
def begin_pending(
    request: HttpRequest, *, user_id: str, stage: str, factors: list[str], next_url: str
) -> None:
    """Password (or an earlier sign-in) done: remember who, which stage may follow, what was proven and
    where to go, under a new session id."""
    previous = request.session.session_key
    request.session.cycle_key()
    follow_session_key(previous=previous, current=request.session.session_key)
    request.session[PENDING] = {
        "user": user_id,
        "stage": stage,
        "factors": list(factors),
        "next": next_url,
        "since": time.time(),
    }


def follow_session_key(*, previous: str | None, current: str | None) -> None:
    """A signed-in session got a new id: its sign-in record follows it, so "sign out everywhere" finds it."""
    if previous and current and previous != current:
        SignIn.objects.open().for_session(previous).update(session_key=current)


def pending(request: HttpRequest) -> dict[str, Any] | None:
    """The unexpired pending sign-in of this browser, or ``None`` (an expired one is dropped)."""
    state = request.session.get(PENDING)
    if not isinstance(state, dict):
        return None
    if time.time() - float(state.get("since", 0)) > settings.UAA_MFA_PENDING_SECONDS:
        request.session.pop(PENDING, None)
        return None
    return state


def clear_pending(request: HttpRequest) -> None:
    request.session.pop(PENDING, None)


# --- step-up for security changes, and replenishing factors -------------------------------------------
def mark_verified(request: HttpRequest) -> None:
    """This session re-entered its user's second factor just now (a step-up on the Security page)."""
    request.session[VERIFIED_AT] = time.time()


def verified_within(request: HttpRequest, *, seconds: int) -> bool:
    value = request.session.get(VERIFIED_AT)
    return isinstance(value, int | float) and 0 <= time.time() - value <= seconds


def begin_replenish(request: HttpRequest, *, next_url: str) -> None:
    request.session[REPLENISH] = {"next": next_url}


def replenish_next(request: HttpRequest) -> str | None:
    """Where a session that must replenish its user's factors goes afterwards, or ``None``."""
    state = request.session.get(REPLENISH)
    return str(state.get("next") or "") if isinstance(state, dict) else None


def end_replenish(request: HttpRequest) -> None:
    request.session.pop(REPLENISH, None)


# --- the ceremony in progress -------------------------------------------------------------------------
def keep_webauthn_challenge(request: HttpRequest, challenge: bytes) -> None:
    request.session[WEBAUTHN_CHALLENGE] = base64.urlsafe_b64encode(challenge).decode("ascii")


def take_webauthn_challenge(request: HttpRequest) -> bytes:
    """The WebAuthn challenge of this browser's last ceremony, usable once (WebAuthn §13.4.3)."""
    value = request.session.pop(WEBAUTHN_CHALLENGE, "")
    return base64.urlsafe_b64decode(value) if isinstance(value, str) and value else b""


def keep_totp_device(request: HttpRequest, device_id: int) -> None:
    request.session[TOTP_DEVICE] = device_id


def totp_device(request: HttpRequest) -> int | None:
    """The id of the unconfirmed authenticator-app device this browser is enrolling, if any."""
    value = request.session.get(TOTP_DEVICE)
    return value if isinstance(value, int) else None


def forget_totp_device(request: HttpRequest) -> None:
    request.session.pop(TOTP_DEVICE, None)


# --- the sign-in record ---------------------------------------------------------------------------
def end_sign_in(*, session_key: str | None) -> None:
    """The ``SignIn`` record of the SSO session ``session_key`` ends now, unless it already has: the one
    place a record ends (a sign-in superseding another in the same browser, and every way out)."""
    if session_key:
        SignIn.objects.open().for_session(session_key).update(ended_at=timezone.now())


def end_recorded_session(sender: object, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``user_logged_out`` receiver: every way out (our sign-out, RP-initiated logout, the timeouts)
    ends the session's ``SignIn`` record."""
    end_sign_in(session_key=getattr(getattr(request, "session", None), "session_key", None))


# --- timeouts ---------------------------------------------------------------------------------------
class Expiry(StrEnum):
    """Why a signed-in session ran out (the ``reason`` of ``accounts.session_expired``)."""

    REVOKED = "revoked"  # begun before the user's not-before time (accounts/revocation.py)
    ABSOLUTE = "absolute"  # signed in more than SESSION_COOKIE_AGE seconds ago
    IDLE = "idle"  # unused for more than UAA_SESSION_IDLE_TIMEOUT seconds


def expired(request: HttpRequest, *, now: float) -> Expiry | None:
    """Why the signed-in session has run out, or ``None`` while it has not.

    ``REVOKED``: the session began before the user's not-before time (accounts/revocation.py: sign out
    everywhere, a password change, an admin's reset, deactivation), wherever that was set.
    """
    signed_in = auth_time(request)
    if revocation.session_ended(user=request.user, auth_time=signed_in):
        return Expiry.REVOKED
    if signed_in is not None and now - signed_in.timestamp() > settings.SESSION_COOKIE_AGE:
        return Expiry.ABSOLUTE
    last_seen = request.session.get(LAST_SEEN)
    if isinstance(last_seen, int | float) and now - last_seen > settings.UAA_SESSION_IDLE_TIMEOUT:
        return Expiry.IDLE
    return None
