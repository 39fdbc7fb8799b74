"""Sign in (password, then the second factor), enrollment, the Security page, sign out. Thin: parse, call a
service, render."""

from __future__ import annotations

import base64
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services, sessions, throttling
from accounts.forms import BackupCodeForm, CodeForm, FactorForm, RenameForm, SignInForm, WebAuthnForm
from accounts.mfa import enrollment, policy, recovery, totp
from accounts.mfa import webauthn as passkeys
from accounts.models import SignIn, User, WebAuthnCredential

FAILED = services.FAILED
EXPIRED = "Your sign-in took too long or was started in another browser. Sign in again."
REAUTH = "Sign in again to change your security settings."
TOTP_DEVICE = "uaa_totp_device"
CHALLENGE = "uaa_webauthn_challenge"


def _next_url(request: HttpRequest, candidate: str | None = None) -> str:
    if candidate is None:
        candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def _with_next(name: str, next_url: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


def _keep_challenge(request: HttpRequest, challenge: bytes) -> None:
    request.session[CHALLENGE] = base64.urlsafe_b64encode(challenge).decode("ascii")


def _take_challenge(request: HttpRequest) -> bytes:
    """The WebAuthn challenge of this browser's last ceremony, usable once (WebAuthn §13.4.3)."""
    value = request.session.pop(CHALLENGE, "")
    return base64.urlsafe_b64decode(value) if value else b""


def _recently_signed_in(request: HttpRequest) -> bool:
    signed_in = sessions.auth_time(request)
    limit = timedelta(seconds=settings.UAA_MFA_REAUTH_SECONDS)
    return signed_in is not None and timezone.now() - signed_in <= limit


def _reauthenticate(request: HttpRequest, next_url: str) -> HttpResponse:
    return redirect(f"{reverse('accounts:login')}?{urlencode({'next': next_url, 'reauth': '1'})}")


# --- step 1: the password ------------------------------------------------------------------------
@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    form = SignInForm(request.POST or None)
    error, status = None, HTTPStatus.OK
    next_url = _next_url(request)
    if request.method == "POST":
        if form.is_valid():
            result = services.check_password(
                request=request, email=form.cleaned_data["email"], password=form.cleaned_data["password"]
            )
            if result.user is not None:
                step = services.after_password(request=request, user=result.user, next_url=next_url)
                if step == "done":
                    return HttpResponseRedirect(next_url)
                return redirect("accounts:mfa" if step == "challenge" else "accounts:mfa_enroll")
            error = result.error
            status = HTTPStatus.TOO_MANY_REQUESTS if result.locked else HTTPStatus.BAD_REQUEST
        else:
            error, status = FAILED, HTTPStatus.BAD_REQUEST
    notice = REAUTH if request.GET.get("reauth") and request.user.is_authenticated else None
    return render(
        request,
        "accounts/login.html",
        {"form": form, "error": error, "next": next_url, "notice": notice},
        status=status,
    )


# --- step 2: the second factor ---------------------------------------------------------------------
def _pending_or_restart(request: HttpRequest) -> tuple[User | None, HttpResponse | None]:
    user = services.pending_user(request)
    if user is None:
        return None, render(
            request,
            "accounts/login.html",
            {"form": SignInForm(), "error": EXPIRED, "next": _next_url(request)},
            status=HTTPStatus.BAD_REQUEST,
        )
    return user, None


def _continue(request: HttpRequest, next_url: str) -> HttpResponse:
    return HttpResponseRedirect(_next_url(request, next_url))


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def mfa_challenge(request: HttpRequest) -> HttpResponse:
    """TOTP code, backup code, or a WebAuthn assertion: whichever the user has and picks."""
    user, restart = _pending_or_restart(request)
    if user is None:
        return restart  # type: ignore[return-value]
    state = sessions.pending(request) or {}
    if not policy.has_factors(user):
        return redirect("accounts:mfa_enroll")
    error, status = None, HTTPStatus.OK
    method = request.POST.get("method", "totp")
    if request.method == "POST":
        # Malformed input goes to the service as an empty value: refused, and counted like a wrong code.
        if method == "backup":
            backup = BackupCodeForm(request.POST)
            code = backup.cleaned_data["code"] if backup.is_valid() else ""
            result = services.verify_backup_code(request=request, user=user, code=code)
        elif method == "webauthn":
            passkey = WebAuthnForm(request.POST)
            credential = passkey.cleaned_data["credential"] if passkey.is_valid() else ""
            result = services.verify_webauthn(
                request=request, user=user, credential_json=credential, challenge=_take_challenge(request)
            )
        else:
            typed = CodeForm(request.POST)
            code = typed.cleaned_data["code"] if typed.is_valid() else ""
            result = services.verify_totp(request=request, user=user, code=code)
        if result.user is not None:
            return _continue(request, state.get("next", ""))
        error = result.error
        status = HTTPStatus.TOO_MANY_REQUESTS if result.locked else HTTPStatus.BAD_REQUEST
        if result.locked:
            sessions.clear_pending(request)
    context: dict[str, Any] = {
        "error": error,
        "has_totp": bool(totp.confirmed_devices(user)),
        "backup_codes_left": recovery.remaining(user),
        "code_form": CodeForm(),
        "backup_form": BackupCodeForm(),
    }
    if WebAuthnCredential.objects.filter(user=user).exists():
        options, challenge = passkeys.authentication_options(user=user)
        _keep_challenge(request, challenge)
        context["webauthn_options"] = options
    return render(request, "accounts/mfa_challenge.html", context, status=status)


def _enrolling_user(request: HttpRequest) -> tuple[User | None, bool]:
    """The user enrolling a factor: a pending sign-in (forced enrollment) or the signed-in user."""
    pending = services.pending_user(request)
    if pending is not None:
        return pending, True
    if request.user.is_authenticated:
        return request.user, False  # type: ignore[return-value]
    return None, False


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def mfa_enroll(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app (QR code and key, confirmed by a first code) or a passkey."""
    user, forced = _enrolling_user(request)
    if user is None:
        return _pending_or_restart(request)[1]  # type: ignore[return-value]
    if not forced and not _recently_signed_in(request):
        return _reauthenticate(request, reverse("accounts:mfa_enroll"))
    state = sessions.pending(request) or {}
    next_url = state.get("next") if forced else reverse("accounts:security")
    error, status = None, HTTPStatus.OK
    device = totp.unconfirmed_device(user=user, device_id=request.session.get(TOTP_DEVICE))
    wait = throttling.locked_for(email=user.email, ip=throttling.client_ip(request))
    if request.method == "POST" and wait:
        error, status = throttling.lock_message(wait), HTTPStatus.TOO_MANY_REQUESTS
    elif request.method == "POST":
        method = request.POST.get("method", "totp")
        enrolled_with: str | None = None
        if method == "webauthn":
            passkey = WebAuthnForm(request.POST)
            challenge = _take_challenge(request)
            try:
                if not passkey.is_valid():
                    raise passkeys.WebAuthnFailed("malformed form")
                credential = enrollment.register_webauthn(
                    request=request,
                    user=user,
                    credential_json=passkey.cleaned_data["credential"],
                    challenge=challenge,
                    name=passkey.cleaned_data["name"],
                )
                enrolled_with = passkeys.amr_of(credential)
            except passkeys.WebAuthnFailed:
                error = services.BAD_KEY
        else:
            typed = CodeForm(request.POST)
            code = typed.cleaned_data["code"] if typed.is_valid() else ""
            if device is not None and enrollment.confirm_totp(
                request=request, user=user, device_id=device.pk, code=code
            ):
                enrolled_with = "otp"
                request.session.pop(TOTP_DEVICE, None)
            else:
                error = services.BAD_CODE
        if enrolled_with:
            codes = enrollment.first_backup_codes(request=request, user=user)
            if forced:
                services.complete_sign_in(request=request, user=user, method=enrolled_with)
            if codes:
                return _show_backup_codes(request, codes, next_url or "")
            return _continue(request, next_url or "")
        status = HTTPStatus.BAD_REQUEST
    if device is None or request.method == "GET":
        device = totp.pending_device(user=user)
        request.session[TOTP_DEVICE] = device.pk
    options, challenge = passkeys.registration_options(user=user)
    _keep_challenge(request, challenge)
    return render(
        request,
        "accounts/mfa_enroll.html",
        {
            "error": error,
            "forced": forced,
            "qr_svg": totp.qr_code_svg(device),
            "manual_key": totp.manual_key(device),
            "code_form": CodeForm(),
            "webauthn_options": options,
        },
        status=status,
    )


def _show_backup_codes(request: HttpRequest, codes: list[str], next_url: str) -> HttpResponse:
    """New backup codes, shown once: rendered in the response to the request that made them, never kept
    in the session or anywhere else in the clear (only their digests are stored)."""
    return render(
        request, "accounts/backup_codes.html", {"codes": codes, "next": _next_url(request, next_url)}
    )


# --- step-up: a signed-in user needs a second factor ----------------------------------------------
@login_required
@never_cache
@require_http_methods(["GET"])
def mfa_step_up(request: HttpRequest) -> HttpResponse:
    step = services.begin_step_up(request=request, next_url=_next_url(request))
    return redirect("accounts:mfa" if step == "challenge" else "accounts:mfa_enroll")


# --- the Security page -------------------------------------------------------------------------------
@login_required
@never_cache
@require_http_methods(["GET"])
def security(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]  # login_required
    return render(
        request,
        "accounts/security.html",
        {
            "totp_devices": totp.confirmed_devices(user),
            "credentials": list(WebAuthnCredential.objects.filter(user=user)),
            "backup_codes_left": recovery.remaining(user),
            "sign_ins": list(SignIn.objects.filter(user=user)[:10]),
            "current_session": request.session.session_key,
            "recent": _recently_signed_in(request),
            "mfa_required": settings.UAA_MFA_REQUIRED,
        },
    )


def _security_change(request: HttpRequest) -> HttpResponse | None:
    if not _recently_signed_in(request):
        return _reauthenticate(request, reverse("accounts:security"))
    return None


@login_required
@csrf_protect
@require_POST
def remove_factor(request: HttpRequest) -> HttpResponse:
    if (again := _security_change(request)) is not None:
        return again
    form = FactorForm(request.POST)
    if form.is_valid():
        enrollment.remove_factor(
            request=request,
            user=request.user,  # type: ignore[arg-type]
            kind=form.cleaned_data["kind"],
            factor_id=form.cleaned_data["factor_id"],
        )
    return redirect("accounts:security")


@login_required
@csrf_protect
@require_POST
def rename_factor(request: HttpRequest) -> HttpResponse:
    form = RenameForm(request.POST)
    if form.is_valid():
        enrollment.rename_webauthn(
            user=request.user,  # type: ignore[arg-type]
            credential_id=form.cleaned_data["factor_id"],
            name=form.cleaned_data["name"],
        )
    return redirect("accounts:security")


@login_required
@csrf_protect
@require_POST
def regenerate_backup_codes(request: HttpRequest) -> HttpResponse:
    if (again := _security_change(request)) is not None:
        return again
    codes = enrollment.new_backup_codes(request=request, user=request.user)  # type: ignore[arg-type]
    return _show_backup_codes(request, codes, reverse("accounts:security"))


@login_required
@csrf_protect
@require_POST
def sign_out_everywhere(request: HttpRequest) -> HttpResponse:
    services.sign_out_everywhere(request=request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


# --- sign out, home, admin --------------------------------------------------------------------------
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_out(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        services.sign_out(request=request)
        return redirect(settings.LOGOUT_REDIRECT_URL)
    return render(request, "accounts/logout.html")


@login_required
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


def admin_login(request: HttpRequest, extra_context: object = None) -> HttpResponse:
    """The admin signs in through the same sign-in page and the same MFA as everyone else."""
    from django.contrib.auth.views import redirect_to_login

    return redirect_to_login(request.GET.get("next") or reverse("admin:index"), reverse(settings.LOGIN_URL))
