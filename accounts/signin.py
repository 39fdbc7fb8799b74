"""The sign-in as explicit stages held server-side: the only code that decides which stage may follow which.

::

    password ─┬─► SECOND_FACTOR ─┬─► SIGNED_IN    the user has a factor: only its challenge may follow
              │                  └─► REPLENISH    ...the last backup code passed it: signed in (AAL2),
              │                                   but a new factor or new codes come before anything else
              ├─► ENROLL ──────────► SIGNED_IN    no factor ever, and policy requires one: only enrollment
              ├─► (refused)                       had a factor, none left: an admin resets it
              └─► SIGNED_IN                       no factor, none required
    step-up (a signed-in session whose acr is too weak) ──► SECOND_FACTOR or ENROLL, by the same rule

``pending.start`` writes the stage into this browser's session (accounts/sessions.py) under a new session
id; the step that consumes it checks it with ``pending.require``, which refuses every other stage with
``PermissionDenied``. Views render the current stage and hand the submitted form to a function here;
accounts/services.py does the checks and writes these functions ask for.

Binding a new factor follows NIST SP 800-63B §6.1.2.1: "the CSP SHALL first require the subscriber to
authenticate at the AAL (or a higher AAL) at which the new authenticator will be used." Two ways lead
there, and only two:

- *forced enrollment* (``Stage.ENROLL``), for a user who has never had a factor
  (``policy.first_enrollment_open``: no confirmed authenticator app, passkey or security key, no unused
  backup codes, and no ``mfa_enrolled_at``), so the password is all there is to prove. It is refused when
  the user has or had a factor: when the stage is entered, when the enrollment page is shown, and again
  under a lock on the user's row when the new factor is confirmed, so a factor bound meanwhile by another
  session ends it. Confirming the factor completes the sign-in. An account whose factors ran out is not
  reopened: only an admin's reset (accounts/mfa/enrollment.py ``reset_factors``) clears the marker.
- *changing factors* from the Security page (adding one, removing one, new backup codes): a signed-in
  session that re-entered its user's second factor within ``UAA_MFA_REAUTH_SECONDS`` (a step-up,
  ``verify_again``: the sign-in itself does not count, so a stolen cookie of a fresh sign-in is not
  enough); a user who never had a factor, a recent sign-in (``UAA_MFA_REAUTH_SECONDS``); the REPLENISH
  stage, binding a factor or new codes only. Re-checked under the same lock; it signs nobody in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts import services, sessions, throttling
from accounts.mfa import backup_codes, policy, totp, webauthn
from accounts.mfa import enrollment as binding
from accounts.models import User, WebAuthnCredential

logger = logging.getLogger(__name__)


class Stage(StrEnum):
    SECOND_FACTOR = "second_factor"  # the user has a factor: only a challenge may follow
    ENROLL = "enroll"  # the user has none and policy requires one: only enrollment may follow
    SIGNED_IN = "signed_in"  # nothing is pending: the SSO session is established
    REPLENISH = "replenish"  # signed in with the last backup code: a new factor or codes come first


class Method(StrEnum):
    """How a factor is presented: the ``method`` field of the challenge and enrollment forms."""

    TOTP = "totp"
    BACKUP_CODE = "backup"
    WEBAUTHN = "webauthn"

    @classmethod
    def parse(cls, value: object) -> Method:
        """Anything else is taken as an authenticator-app code, and refused like a wrong one."""
        return cls(value) if isinstance(value, str) and value in cls._value2member_map_ else cls.TOTP


class ChangeNeeds(StrEnum):
    """What a security change on the Security page needs first (``what_a_change_needs``)."""

    STEP_UP = "step_up"  # the second factor re-entered in this session
    SIGN_IN = "sign_in"  # a recent sign-in (a user who never had a factor)
    NOTHING = ""  # a change may be made now


class ReauthenticationRequired(PermissionDenied):
    """A signed-in session that may not bind a factor as it is: the user signs in again, factor included."""


class StepUpRequired(ReauthenticationRequired):
    """A security change needs the user's second factor re-entered in this session first."""


class NoFactorLeft(PermissionDenied):
    """The account had a second factor and has none left: it may not enroll one with the password alone."""


@dataclass(frozen=True)
class Pending:
    """A half-finished sign-in: who, the one stage it allows next, what was proven, and where it goes."""

    user: User
    stage: Stage
    factors: tuple[str, ...]
    next_url: str


class PendingSignIns:
    """The pending sign-in of this browser, kept in its session (accounts/sessions.py)."""

    def start(
        self, request: HttpRequest, *, user: User, stage: Stage, factors: Iterable[str], next_url: str
    ) -> None:
        if stage is Stage.SIGNED_IN:
            raise ValueError("a signed-in session is not a pending sign-in")
        sessions.begin_pending(
            request, user_id=str(user.pk), stage=stage.value, factors=list(factors), next_url=next_url
        )

    def current(self, request: HttpRequest) -> Pending | None:
        """This browser's unexpired pending sign-in of an active user, or ``None``."""
        state = sessions.pending(request)
        if state is None:
            return None
        stage, user_id = state.get("stage"), state.get("user")
        if stage not in (Stage.SECOND_FACTOR, Stage.ENROLL) or not isinstance(user_id, str):
            sessions.clear_pending(request)  # no stage recorded (started before stages existed): start over
            return None
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            sessions.clear_pending(request)
            return None
        return Pending(
            user=user,
            stage=Stage(stage),
            factors=tuple(state.get("factors") or ("pwd",)),
            next_url=str(state.get("next") or ""),
        )

    def require(self, request: HttpRequest, *, stage: Stage) -> Pending | None:
        """The pending sign-in if it is at ``stage``; ``None`` when there is none (the view asks to sign in
        again); ``PermissionDenied`` when it is at another stage."""
        current = self.current(request)
        if current is not None and current.stage is not stage:
            _refused(current.user, reason=f"{current.stage}, not {stage}")
            raise PermissionDenied("the sign-in is not at this step")
        return current

    def clear(self, request: HttpRequest) -> None:
        sessions.clear_pending(request)


pending = PendingSignIns()


def _refused(user: User, *, reason: str) -> None:
    logger.warning("accounts.sign_in_step_refused", extra={"user_id": str(user.pk), "reason": reason})


def _finish(request: HttpRequest, state: Pending, *, user: User, method: str, evidence: Any = None) -> None:
    """The pending stage is done: sign in with the factors proven so far plus ``method``."""
    services.sign_in(
        request=request, user=user, amr=policy.amr_for([*state.factors, method]), evidence=evidence
    )
    throttling.record_success(email=user.email)


def _no_factor_left(user: User) -> NoFactorLeft:
    _refused(user, reason="the account had a second factor and has none left")
    return NoFactorLeft("this account has no second factor left; an administrator must reset it")


# --- entering a stage ---------------------------------------------------------------------------------
def after_password(*, request: HttpRequest, user: User, next_url: str) -> Stage:
    """The password was right: the second factor if the user has one, else enrollment if policy requires
    one, else signed in with the password alone."""
    if request.user.is_authenticated and request.user.pk != user.pk:
        logout(request)  # another person signs in in this browser: the old session ends first
    if policy.has_factors(user):
        stage = Stage.SECOND_FACTOR
    elif policy.had_factors(user):
        raise _no_factor_left(user)  # never first enrollment again on the password alone
    elif policy.mfa_required(user=user):
        stage = Stage.ENROLL
    else:
        services.sign_in(request=request, user=user, amr=["pwd"])
        return Stage.SIGNED_IN
    pending.start(request, user=user, stage=stage, factors=["pwd"], next_url=next_url)
    return stage


def begin_step_up(*, request: HttpRequest, next_url: str) -> Stage:
    """A signed-in user must add a second factor (acr_values, a client's flag, or the global policy): a
    user with a factor is challenged for it; only a user without any may enroll one."""
    user: User = request.user  # type: ignore[assignment]  # the view requires a signed-in user
    proven = [method for method in request.session.get(sessions.AMR, ["pwd"]) if method != "mfa"]
    if policy.has_factors(user):
        stage = Stage.SECOND_FACTOR
    elif policy.first_enrollment_open(user):
        stage = Stage.ENROLL
    else:
        raise _no_factor_left(user)
    pending.start(request, user=user, stage=stage, factors=proven or ["pwd"], next_url=next_url)
    return stage


# --- SECOND_FACTOR -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Challenge:
    """What the challenge page offers: the user's own factors, nothing else."""

    has_totp: bool
    backup_codes_left: int
    webauthn_options: str | None


def second_factor(request: HttpRequest) -> Pending | None:
    """The pending sign-in at ``SECOND_FACTOR`` (``PermissionDenied`` at another stage), or ``None``.

    A user whose factors were all removed meanwhile (an admin's reset) cannot answer it: the sign-in starts
    over, and the next password step decides again.
    """
    state = pending.require(request, stage=Stage.SECOND_FACTOR)
    if state is not None and not policy.has_factors(state.user):
        pending.clear(request)
        return None
    return state


def offer_challenge(*, request: HttpRequest, state: Pending) -> Challenge:
    options = None
    if WebAuthnCredential.objects.filter(user=state.user).exists():
        options, challenge = webauthn.authentication_options(user=state.user)
        sessions.keep_webauthn_challenge(request, challenge)
    return Challenge(
        has_totp=bool(totp.confirmed_devices(state.user)),
        backup_codes_left=backup_codes.remaining(state.user),
        webauthn_options=options,
    )


def _check_factor(
    *, request: HttpRequest, user: User, method: Method, code: str, credential_json: str
) -> services.StepResult:
    if method is Method.BACKUP_CODE:
        result = services.verify_backup_code(request=request, user=user, code=code)
    elif method is Method.WEBAUTHN:
        result = services.verify_webauthn(
            request=request,
            user=user,
            credential_json=credential_json,
            challenge=sessions.take_webauthn_challenge(request),
        )
    else:
        result = services.verify_totp(request=request, user=user, code=code)
    return result


def _replenish_if_spent(request: HttpRequest, user: User, *, method: Method, next_url: str) -> None:
    """The last backup code just passed: nothing of the user's is left to sign in with next time, so
    this session (AAL2 now) must bind a new factor or make new codes before it goes anywhere else."""
    if method is Method.BACKUP_CODE and not policy.has_factors(user):
        sessions.begin_replenish(request, next_url=next_url)
        logger.info("accounts.replenish_required", extra={"user_id": str(user.pk)})


def answer_challenge(
    *, request: HttpRequest, state: Pending, method: Method, code: str, credential_json: str
) -> services.StepResult:
    """Check the factor the user presented; when it passes, the sign-in is complete (and, after the last
    backup code, at ``REPLENISH``)."""
    if state.stage is not Stage.SECOND_FACTOR:
        raise PermissionDenied("the sign-in is not at this step")
    user = state.user
    result = _check_factor(
        request=request, user=user, method=method, code=code, credential_json=credential_json
    )
    if result.user is not None:
        _finish(request, state, user=user, method=result.method, evidence=result.evidence)
        _replenish_if_spent(request, user, method=method, next_url=state.next_url)
    elif result.locked:
        pending.clear(request)
    return result


def after_sign_in(request: HttpRequest, next_url: str) -> str:
    """Where a completed step goes: the REPLENISH page while it is owed, else ``next_url``."""
    return reverse("accounts:replenish") if sessions.replenish_next(request) is not None else next_url


# --- REPLENISH: signed in with the last backup code ------------------------------------------------
def _replenish_pages() -> set[str]:
    return {reverse("accounts:replenish"), reverse("accounts:mfa_enroll"), reverse("accounts:logout")}


def _session_pages() -> tuple[str, ...]:
    """What a signed-in session is used for in the browser: authorizing applications, the account pages,
    the admin. The token, revocation, introspection and userinfo endpoints and JWKS never read it."""
    return (reverse("oauth:authorize"), "/accounts/", "/admin/")


def replenish_owed(request: HttpRequest) -> bool:
    return sessions.replenish_next(request) is not None


def interstitial(request: HttpRequest) -> str | None:
    """The page a signed-in session must go to instead of ``request.path``, or ``None`` to go on: while
    REPLENISH is owed, only its own pages (bind a factor, new codes) and signing out are open."""
    if not replenish_owed(request):
        return None
    path = request.path
    if path in _replenish_pages() or not (path == "/" or path.startswith(_session_pages())):
        return None
    return reverse("accounts:replenish")


def replenish_with_codes(*, request: HttpRequest) -> tuple[list[str], str]:
    """REPLENISH answered with a new set of backup codes: the codes (shown once) and where to go on."""
    next_url = sessions.replenish_next(request)
    if next_url is None or not request.user.is_authenticated:
        raise PermissionDenied("nothing to replenish")
    codes = binding.new_backup_codes(request=request, user=request.user)  # type: ignore[arg-type]
    sessions.end_replenish(request)
    return codes, next_url


# --- step-up before a security change ----------------------------------------------------------------
def may_change_factors(request: HttpRequest) -> None:
    """A security change (add or remove a factor, new backup codes) by this signed-in session: for a user
    who has or had a factor, the factor re-entered here within ``UAA_MFA_REAUTH_SECONDS``
    (``StepUpRequired`` otherwise); for one who never had any, a recent sign-in
    (``ReauthenticationRequired``). The REPLENISH stage is its own permission to bind."""
    user: User = request.user  # type: ignore[assignment]  # the views require a signed-in user
    if sessions.replenish_next(request) is not None:
        return
    if policy.has_factors(user) or policy.had_factors(user):
        if not sessions.verified_within(request, seconds=settings.UAA_MFA_REAUTH_SECONDS):
            raise StepUpRequired("re-enter the second factor to change it")
        return
    if not recently_signed_in(request):
        raise ReauthenticationRequired("sign in again to add a factor")


def what_a_change_needs(request: HttpRequest) -> ChangeNeeds:
    """For the Security page: what this session must do before it may change factors."""
    try:
        may_change_factors(request)
    except StepUpRequired:
        return ChangeNeeds.STEP_UP
    except ReauthenticationRequired:
        return ChangeNeeds.SIGN_IN
    return ChangeNeeds.NOTHING


def offer_step_up(*, request: HttpRequest) -> Challenge:
    """The challenge of a step-up: the signed-in user's own factors."""
    user: User = request.user  # type: ignore[assignment]
    if not policy.has_factors(user):
        raise _no_factor_left(user)
    state = Pending(user=user, stage=Stage.SECOND_FACTOR, factors=(), next_url="")
    return offer_challenge(request=request, state=state)


def verify_again(
    *, request: HttpRequest, method: Method, code: str, credential_json: str, next_url: str
) -> services.StepResult:
    """The step-up: the signed-in user re-enters a second factor (throttled, and a failure counted and
    recorded like one at sign-in). It changes nothing about the sign-in (same session, ``auth_time`` and
    ``acr``); it lets this session change factors for ``UAA_MFA_REAUTH_SECONDS``."""
    user: User = request.user  # type: ignore[assignment]
    if not policy.has_factors(user):
        raise _no_factor_left(user)
    result = _check_factor(
        request=request, user=user, method=method, code=code, credential_json=credential_json
    )
    if result.user is not None:
        services.stepped_up(request=request, user=user, method=result.method, evidence=result.evidence)
        _replenish_if_spent(request, user, method=method, next_url=next_url)
    return result


# --- ENROLL, and adding a factor while signed in ---------------------------------------------------------
@dataclass(frozen=True)
class Enrollment:
    """Who binds a factor in this request: ``state`` is the sign-in's ``ENROLL`` stage (forced enrollment,
    which completes the sign-in), or ``None`` for a signed-in user adding one from the Security page."""

    user: User
    state: Pending | None
    next_url: str

    @property
    def forced(self) -> bool:
        return self.state is not None


@dataclass(frozen=True)
class EnrollmentOffer:
    """The new authenticator-app key (as a QR code and typed) and WebAuthn registration options."""

    qr_svg: str
    manual_key: str
    webauthn_options: str


@dataclass(frozen=True)
class Enrolled:
    ok: bool
    error: str | None = None
    locked: bool = False
    backup_codes: list[str] | None = None


def recently_signed_in(request: HttpRequest) -> bool:
    signed_in = sessions.auth_time(request)
    limit = timedelta(seconds=settings.UAA_MFA_REAUTH_SECONDS)
    return signed_in is not None and timezone.now() - signed_in <= limit


def enrollment(request: HttpRequest) -> Enrollment | None:
    """Who may bind a factor in this request, or ``None`` when nothing is pending (sign in again).

    Raises ``PermissionDenied`` when a pending sign-in is at another stage or the user already has a factor,
    and ``ReauthenticationRequired`` when a signed-in session must first sign in again.
    """
    current = pending.current(request)
    if request.user.is_authenticated and (current is None or current.stage is not Stage.ENROLL):
        user: User = request.user  # type: ignore[assignment]
        may_change_factors(request)  # NIST SP 800-63B §6.1.2.1
        onward = sessions.replenish_next(request)
        return Enrollment(user=user, state=None, next_url=onward or reverse("accounts:security"))
    state = pending.require(request, stage=Stage.ENROLL)
    if state is None:
        return None
    if not policy.first_enrollment_open(state.user):
        pending.clear(request)  # the stage can never complete: a new sign-in asks for the factor
        _refused(state.user, reason="forced enrollment of a user who has or had a factor")
        raise PermissionDenied("this account has, or had, a second factor")
    return Enrollment(user=state.user, state=state, next_url=state.next_url)


def offer_enrollment(*, request: HttpRequest, enrolling: Enrollment, fresh: bool) -> EnrollmentOffer:
    """A new key for an authenticator app (or, after a wrong code, the same one) and WebAuthn options."""
    user = enrolling.user
    device = None if fresh else totp.unconfirmed_device(user=user, device_id=sessions.totp_device(request))
    if device is None:
        device = totp.pending_device(user=user)
        sessions.keep_totp_device(request, device.pk)
    options, challenge = webauthn.registration_options(user=user)
    sessions.keep_webauthn_challenge(request, challenge)
    return EnrollmentOffer(
        qr_svg=totp.qr_code_svg(device), manual_key=totp.manual_key(device), webauthn_options=options
    )


def _may_still_bind(request: HttpRequest, enrolling: Enrollment, user: User) -> None:
    """The decision of ``enrollment`` again, with the user's row locked (a factor may have been bound by
    another session since the page was shown)."""
    if enrolling.forced:
        if not policy.first_enrollment_open(user):
            pending.clear(request)
            _refused(user, reason="a factor was bound during forced enrollment")
            raise PermissionDenied("this account already has a second factor")
        return
    if not request.user.is_authenticated or request.user.pk != user.pk:
        raise PermissionDenied("not signed in as this user")
    may_change_factors(request)  # NIST SP 800-63B §6.1.2.1


def confirm_enrollment(
    *,
    request: HttpRequest,
    enrolling: Enrollment,
    method: Method,
    code: str,
    credential_json: str,
    name: str,
) -> Enrolled:
    """Bind the new factor once it proves itself (a first TOTP code, or a verified WebAuthn registration),
    under a lock on the user's row; at forced enrollment, that completes the sign-in in the same
    transaction. The first factor comes with backup codes, returned to be shown once."""
    wait = throttling.locked_for(email=enrolling.user.email, ip=throttling.client_ip(request))
    if wait:
        return Enrolled(ok=False, error=throttling.lock_message(wait), locked=True)
    challenge = sessions.take_webauthn_challenge(request) if method is Method.WEBAUTHN else b""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=enrolling.user.pk)
        _may_still_bind(request, enrolling, user)
        if method is Method.WEBAUTHN:
            try:
                credential = binding.register_webauthn(
                    request=request,
                    user=user,
                    credential_json=credential_json,
                    challenge=challenge,
                    name=name,
                )
            except webauthn.WebAuthnFailed as exc:
                logger.info(
                    "accounts.webauthn_registration_failed",
                    extra={"user_id": str(user.pk), "reason": str(exc)},
                )
                return Enrolled(ok=False, error=services.BAD_KEY)
            amr = webauthn.amr_of(credential)
        else:
            device_id = sessions.totp_device(request)
            if not binding.confirm_totp(request=request, user=user, device_id=device_id, code=code):
                return Enrolled(ok=False, error=services.BAD_CODE)
            amr = "otp"
        codes = binding.first_backup_codes(request=request, user=user)
        if enrolling.state is not None:
            _finish(request, enrolling.state, user=user, method=amr)
        else:
            sessions.end_replenish(request)  # a factor bound: REPLENISH (if owed) is done
    if method is not Method.WEBAUTHN:
        sessions.forget_totp_device(request)
    return Enrolled(ok=True, backup_codes=codes)
