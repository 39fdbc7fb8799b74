"""Account services: create users; check a password or a second factor; start an SSO session; sign out.

Which step of a sign-in may follow which is decided in accounts/signin.py alone; the functions here do
the checks and the writes it asks for (with their throttling and audit records). ``sign_in`` is the only
place ``login`` runs: with a new session id, the session's ``amr``/``acr``, its ``SignIn`` record and its
ledger record in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from accounts import revocation, sessions, signals, throttling
from accounts.mfa import backup_codes, policy, totp, webauthn
from accounts.models import SignIn, User, canonical_email
from tokens import ledger
from tokens.models import LedgerRecord

logger = logging.getLogger(__name__)

FAILED = "The e-mail address or password is not correct."
BAD_CODE = "That code is not valid. Check your authenticator app and try again."
BAD_BACKUP_CODE = "That backup code is not valid or was already used."
BAD_KEY = "The security key or passkey could not be verified. Try again."


@dataclass(frozen=True)
class StepResult:
    """What a sign-in step did: ``user`` when it passed, else an ``error`` to show.

    A factor that passed names its RFC 8176 ``method`` (and, for WebAuthn, the user's signed ``evidence``);
    accounts/signin.py then finishes the sign-in. A check alone signs nobody in.
    """

    user: User | None = None
    error: str | None = None
    locked: bool = False
    method: str = ""
    evidence: dict[str, Any] | None = None


def create_user(
    *,
    email: str,
    password: str | None,
    given_name: str = "",
    family_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    return User.objects.create_user(
        email,
        password,
        given_name=given_name,
        family_name=family_name,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )


@transaction.atomic
def register_user(
    *, email: str, password: str | None, given_name: str = "", family_name: str = "", actor: str
) -> User:
    """A new ordinary account (never staff) added by ``actor`` (the admin API's calling client), with its
    ``admin.change`` record (field names, never values). ``password`` ``None``: an unusable one."""
    user = create_user(email=email, password=password, given_name=given_name, family_name=family_name)
    fields = ["email", *(["password"] if password else []), *(["given_name"] if given_name else [])]
    fields += ["family_name"] if family_name else []
    _record_admin_change(user=user, actor=actor, action="add", fields=fields)
    return user


@transaction.atomic
def reactivate_user(*, user: User, actor: str) -> None:
    """The account may sign in again; what was granted before its deactivation stays ended (its
    not-before time). Recorded as an ``admin.change`` of ``is_active`` naming ``actor``."""
    User.objects.filter(pk=user.pk).update(is_active=True)
    user.is_active = True
    _record_admin_change(user=user, actor=actor, action="change", fields=["is_active"])


def _record_admin_change(*, user: User, actor: str, action: str, fields: list[str]) -> None:
    ledger.append_record(
        event=LedgerRecord.Event.ADMIN_CHANGE,
        sub=actor,
        subject=f"accounts.user:{user.pk}",
        detail={"action": action, "model": "accounts.user", "object_id": str(user.pk), "fields": fields},
    )


def change_password(*, request: HttpRequest | None, user: User, password: str | None) -> None:
    """A new password (``None``: an unusable one); then every session and grant of the user made before
    it ends (accounts/revocation.py; RFC 9700 §4.14.2: a password change is a security event)."""
    user.set_password(password)
    user.save(update_fields=["password"])
    revocation.revoke(user=user, request=request, reason=revocation.Reason.PASSWORD_CHANGED)


def deactivate_user(*, request: HttpRequest | None, user: User, actor: str = "") -> None:
    """The account can no longer sign in; its sessions and grants end, and stay ended if it is
    reactivated (its not-before time, accounts/revocation.py). With ``actor`` (the admin API's calling
    client) the change is an ``admin.change`` of ``is_active`` naming it, in the change's transaction, as
    :func:`reactivate_user`'s (the Django admin's deactivation has its ``LogEntry``)."""
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
        if actor:
            _record_admin_change(user=user, actor=actor, action="change", fields=["is_active"])
    user.is_active = False
    revocation.revoke(user=user, request=request, reason=revocation.Reason.DEACTIVATED)


def _ip(request: HttpRequest) -> str:
    return throttling.client_ip(request)


def _locked(email: str, request: HttpRequest) -> StepResult | None:
    wait = throttling.locked_for(email=email, ip=_ip(request))
    return StepResult(error=throttling.lock_message(wait), locked=True) if wait else None


def authenticate_password(*, request: HttpRequest, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or ``None``; same answer and cost for unknown ones."""
    address = canonical_email(email)  # the one form stored, looked up exactly and throttled
    user = authenticate(request, username=address, password=password)
    if user is None:
        logger.info("accounts.sign_in_failed", extra={"ip": _ip(request)})
        known = User.objects.filter(email=address) if "\x00" not in address else User.objects.none()
        target = known.values_list("pk", flat=True).first()
        ledger.append_record(
            event=LedgerRecord.Event.SIGN_IN_FAILED,
            sub=str(target or ""),
            amr=["pwd"],
            **ledger.request_metadata(request),
        )
    return user


def check_password(*, request: HttpRequest, email: str, password: str) -> StepResult:
    """The password step, throttled per account and per IP. A locked account's password is not even
    checked, for known and unknown addresses alike (same answer, same cost)."""
    locked = _locked(email, request)
    if locked:
        return locked
    user = authenticate_password(request=request, email=email, password=password)
    if user is None:
        throttling.record_failure(email=email, ip=_ip(request))
        return _locked(email, request) or StepResult(error=FAILED)
    return StepResult(user=user)


def _factor_failed(request: HttpRequest, user: User, *, method: str, error: str) -> StepResult:
    throttling.record_failure(email=user.email, ip=_ip(request))
    ledger.append_record(
        event=LedgerRecord.Event.SIGN_IN_FAILED,
        sub=str(user.pk),
        amr=[method],
        **ledger.request_metadata(request),
    )
    logger.info("accounts.second_factor_failed", extra={"user_id": str(user.pk), "method": method})
    signals.second_factor_failed.send(sender=User, method=method)
    return _locked(user.email, request) or StepResult(error=error)


def verify_totp(*, request: HttpRequest, user: User, code: str) -> StepResult:
    locked = _locked(user.email, request)
    if locked:
        return locked
    if not totp.verify_for_user(user=user, code=code):
        return _factor_failed(request, user, method="otp", error=BAD_CODE)
    return StepResult(user=user, method="otp")


def verify_backup_code(*, request: HttpRequest, user: User, code: str) -> StepResult:
    locked = _locked(user.email, request)
    if locked:
        return locked
    if not backup_codes.use_code(user=user, code=code):
        return _factor_failed(request, user, method="otp", error=BAD_BACKUP_CODE)
    logger.info("accounts.backup_code_used", extra={"user_id": str(user.pk)})
    return StepResult(user=user, method="otp")


def verify_webauthn(
    *, request: HttpRequest, user: User, credential_json: str, challenge: bytes
) -> StepResult:
    locked = _locked(user.email, request)
    if locked:
        return locked
    try:
        credential = webauthn.authenticate(user=user, credential_json=credential_json, challenge=challenge)
    except webauthn.WebAuthnFailed as exc:
        logger.info("accounts.webauthn_failed", extra={"user_id": str(user.pk), "reason": str(exc)})
        return _factor_failed(request, user, method="hwk", error=BAD_KEY)
    proof = webauthn.evidence(credential=credential, credential_json=credential_json)
    return StepResult(user=user, method=webauthn.amr_of(credential), evidence=proof)


def stepped_up(
    *, request: HttpRequest, user: User, method: str, evidence: dict[str, Any] | None = None
) -> None:
    """A signed-in session re-entered its user's second factor (a step-up before a security change):
    noted on the session, recorded in the ledger, and the account's failures forgiven as by a sign-in."""
    with transaction.atomic():
        sessions.mark_verified(request)
        ledger.append_record(
            event=LedgerRecord.Event.MFA_VERIFIED,
            sub=str(user.pk),
            amr=[method],
            evidence=evidence,
            **ledger.request_metadata(request),
        )
    throttling.record_success(email=user.email)
    logger.info("accounts.stepped_up", extra={"user_id": str(user.pk), "method": method})


def sign_in(
    *, request: HttpRequest, user: User, amr: list[str], evidence: dict[str, Any] | None = None
) -> None:
    """Start the SSO session: a new session id (``login`` rotates it) and the authentication context."""
    acr = policy.acr_for(amr)
    previous = request.session.session_key
    with transaction.atomic():
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        # A sign-in again in the same browser (step-up, prompt=login) supersedes the earlier record.
        sessions.end_sign_in(session_key=previous)
        sessions.start(request, amr=amr, acr=acr)
        if request.session.session_key is None:
            request.session.save()
        SignIn.objects.create(
            user=user,
            session_key=request.session.session_key or "",
            ip=_ip(request) or None,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
            amr=amr,
            acr=acr,
        )
        ledger.append_record(
            event=LedgerRecord.Event.SIGN_IN_SUCCEEDED,
            sub=str(user.pk),
            amr=amr,
            acr=acr,
            evidence=evidence,
            **ledger.request_metadata(request),
        )
    logger.info("accounts.signed_in", extra={"user_id": str(user.pk)})


def sign_out(*, request: HttpRequest) -> None:
    user_id = str(request.user.pk) if request.user.is_authenticated else None
    logout(request)  # its user_logged_out signal ends the sign-in record (sessions.end_recorded_session)
    if user_id:
        ledger.append_record(
            event=LedgerRecord.Event.SIGNED_OUT, sub=user_id, **ledger.request_metadata(request)
        )
    logger.info("accounts.signed_out", extra={"user_id": user_id})


REVOCATION_PASSES = 5  # bounds the re-reads of revoke_tokens_of_user against refreshes racing it


@dataclass(frozen=True)
class SignedOutEverywhere:
    sessions: int
    refresh_tokens: int = 0
    access_tokens: int = 0
    authorization_codes: int = 0


def _by(request: HttpRequest | None, user: User) -> str:
    """Who acts on ``user``, for ``detail.by``: an admin (a staff user, or the admin API's calling client,
    whose ``pk`` is its ``client_id``), never the user themself."""
    actor = getattr(request, "user", None)
    if actor is None or not actor.is_authenticated or actor.pk == user.pk:
        return ""
    return str(actor.pk)


def _token_revoked(request: HttpRequest, user: User, *, application: Any, reason: str, **hashes: str) -> None:
    by = _by(request, user)
    ledger.append_record(
        event=LedgerRecord.Event.TOKEN_REVOKED,
        client_id=getattr(application, "client_id", ""),
        sub=str(user.pk),
        hashes={name: digest for name, digest in hashes.items() if digest},
        detail={"reason": reason, **({"by": by} if by else {})},
        **ledger.request_metadata(request),
    )


def revoke_tokens_of_user(
    *, request: HttpRequest, user: User, reason: str = revocation.Reason.SIGN_OUT_EVERYWHERE
) -> SignedOutEverywhere:
    """Every token the user's applications hold, revoked as django-oauth-toolkit revokes them (RFC 7009
    §2.1): ``RefreshToken.revoke()`` marks a refresh token revoked and deletes its access token, and
    ``AccessToken.revoke()`` deletes the rest; unredeemed authorization codes are deleted, as redeeming one
    does. One ledger record per token (its SHA-256 digest only), with ``detail.reason`` and, when an admin
    revokes them, ``detail.by``. Call inside the caller's transaction.

    JWT access tokens that a resource server verifies by itself stay valid there until they expire
    (``UAA_ACCESS_TOKEN_LIFETIME``); introspection and userinfo refuse them at once.
    """
    live = (
        get_refresh_token_model()
        .objects.select_for_update(of=("self",))
        .select_related("application", "access_token")
        .filter(user=user, revoked__isnull=True)
    )
    refreshed = accessed = 0
    # A refresh that holds a token's row lock while rotating it commits its successor while this waits;
    # the statement that waited does not see the successor (nor, once rotated, the old token), the next
    # one (a new snapshot) does. So read again until a read after the first finds nothing.
    for attempt in range(REVOCATION_PASSES):
        batch = list(live.all())  # a new query each time, not the cached result
        for token in batch:
            access = token.access_token
            token.revoke()
            refreshed += 1
            accessed += access is not None
            _token_revoked(
                request,
                user,
                application=token.application,
                reason=reason,
                refresh_token=token.token_checksum,
                access_token=access.token_checksum if access is not None else "",
            )
        if not batch and attempt:
            break
    for access in get_access_token_model().objects.select_related("application").filter(user=user):
        access.revoke()
        accessed += 1
        _token_revoked(
            request, user, application=access.application, reason=reason, access_token=access.token_checksum
        )
    grants = get_grant_model()
    codes = grants.objects.filter(user=user).delete()[1].get(grants._meta.label, 0)
    return SignedOutEverywhere(
        sessions=0, refresh_tokens=refreshed, access_tokens=accessed, authorization_codes=codes
    )


def sign_out_everywhere(*, request: HttpRequest, revoke_tokens: bool = False) -> SignedOutEverywhere:
    """End every SSO session of the signed-in user, this one included, and with ``revoke_tokens`` every
    token issued to the user's applications too (RFC 9700 §4.14.2).

    The user's not-before time is set first and committed on its own (accounts/revocation.py): from that
    commit on, no session begun earlier is honoured and no code or token is issued from one, whatever is
    in flight. Then, in one transaction with its records, the sessions and tokens are deleted and revoked.
    """
    user: User = request.user  # type: ignore[assignment]  # the view requires a signed-in user
    not_before = revocation.revoke(
        user=user, request=request, reason=revocation.Reason.SIGN_OUT_EVERYWHERE, applications=revoke_tokens
    )
    with transaction.atomic():
        open_sessions = SignIn.objects.open().for_user(user)
        keys = list(open_sessions.values_list("session_key", flat=True))
        Session.objects.filter(session_key__in=keys).delete()
        open_sessions.update(ended_at=timezone.now())
        revoked = (
            revoke_tokens_of_user(request=request, user=user) if revoke_tokens else SignedOutEverywhere(0)
        )
        ledger.append_record(
            event=LedgerRecord.Event.SIGNED_OUT,
            sub=str(user.pk),
            detail={
                "everywhere": True,
                "not_before": not_before.isoformat(),
                "sessions": len(keys),
                "refresh_tokens_revoked": revoked.refresh_tokens,
                "access_tokens_revoked": revoked.access_tokens,
                "authorization_codes_revoked": revoked.authorization_codes,
            },
            **ledger.request_metadata(request),
        )
    logout(request)
    logger.info(
        "accounts.signed_out_everywhere",
        extra={"user_id": str(user.pk), "sessions": len(keys), "refresh_tokens": revoked.refresh_tokens},
    )
    return SignedOutEverywhere(
        sessions=len(keys),
        refresh_tokens=revoked.refresh_tokens,
        access_tokens=revoked.access_tokens,
        authorization_codes=revoked.authorization_codes,
    )


def revoke_user_grants(*, request: HttpRequest, user: User) -> SignedOutEverywhere:
    """An admin's "sign this user out everywhere": the not-before time first (its own transaction, as in
    :func:`sign_out_everywhere`), then every SSO session ends and every token is revoked, with their
    records; ``request.user`` is the admin (named as ``by`` on every record). What ended is counted in
    one ``sign_out`` record (``detail.everywhere``, as the user's own sign out everywhere, with ``by``),
    in the same transaction: the tokens by digest in their ``token.revoked`` records, never whole."""
    reason = revocation.Reason.ADMIN_REVOKED
    not_before = revocation.revoke(user=user, request=request, reason=reason)
    by = _by(request, user)
    with transaction.atomic():
        open_sessions = SignIn.objects.open().for_user(user)
        keys = list(open_sessions.values_list("session_key", flat=True))
        Session.objects.filter(session_key__in=keys).delete()
        open_sessions.update(ended_at=timezone.now())
        revoked = revoke_tokens_of_user(request=request, user=user, reason=reason)
        ledger.append_record(
            event=LedgerRecord.Event.SIGNED_OUT,
            sub=str(user.pk),
            detail={
                "everywhere": True,
                "reason": reason,
                **({"by": by} if by else {}),
                "not_before": not_before.isoformat(),
                "sessions": len(keys),
                "refresh_tokens_revoked": revoked.refresh_tokens,
                "access_tokens_revoked": revoked.access_tokens,
                "authorization_codes_revoked": revoked.authorization_codes,
            },
            **ledger.request_metadata(request),
        )
    return SignedOutEverywhere(
        sessions=len(keys),
        refresh_tokens=revoked.refresh_tokens,
        access_tokens=revoked.access_tokens,
        authorization_codes=revoked.authorization_codes,
    )
