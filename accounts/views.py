"""Sign in (password, then the second factor or a first enrollment), the Security page, sign out.

Thin: parse, call accounts/signin.py or a service, render. Which step may follow which is decided there,
never here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services, signin
from accounts.forms import (
    BackupCodeForm,
    CodeForm,
    FactorForm,
    RenameForm,
    SignInForm,
    SignOutEverywhereForm,
    WebAuthnForm,
)
from accounts.mfa import backup_codes, enrollment, totp
from accounts.models import SignIn, User, WebAuthnCredential
from accounts.signin import Method, Stage

FAILED = services.FAILED
EXPIRED = "Your sign-in took too long or was started in another browser. Sign in again."
REFUSED = "That is not the next step of your sign-in. Sign in again."
REAUTH = "Sign in again to change your security settings."
NO_FACTOR_LEFT = (
    "This account has no second factor left (its backup codes are used up or its authenticator was "
    "removed). For your security it cannot set one up with the password alone: contact your "
    "administrator to reset your second factors."
)
LAST_FACTOR = (
    "This is your last second factor, and a second factor is required: add another (or new backup codes) "
    "before you remove it."
)
PAGES = {Stage.SECOND_FACTOR: "accounts:mfa", Stage.ENROLL: "accounts:mfa_enroll"}


def _next_url(request: HttpRequest, candidate: str | None = None) -> str:
    if candidate is None:
        candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


LOGIN_HINT_MAX = 254  # the longest e-mail address (RFC 5321 §4.5.3.1.3 path, less its brackets)


def login_hint(next_url: str) -> str | None:
    """OIDC Core §3.1.2.1 ``login_hint`` of the authorization request the sign-in returns to, to fill in the
    e-mail field with ("the login identifier the End-User might use"); taken from a ``next`` that is the
    authorization endpoint only, never a parameter of this page, at most ``LOGIN_HINT_MAX`` characters.
    The template escapes it like any value; the password is never filled in."""
    parts = urlsplit(next_url)
    if parts.path != reverse("oauth:authorize"):
        return None
    hint = QueryDict(parts.query).get("login_hint", "").strip()
    return hint if 0 < len(hint) <= LOGIN_HINT_MAX else None


def _reauthenticate(request: HttpRequest, next_url: str) -> HttpResponse:
    return redirect(f"{reverse('accounts:login')}?{urlencode({'next': next_url, 'reauth': '1'})}")


def _step_up_first(next_url: str) -> HttpResponse:
    """Re-enter the second factor (accounts/signin.py ``verify_again``), then come back."""
    return redirect(f"{reverse('accounts:security_verify')}?{urlencode({'next': next_url})}")


def _change_refused(request: HttpRequest, next_url: str) -> HttpResponse | None:
    """A security change this session may not make yet: step up (or sign in again) first."""
    try:
        signin.may_change_factors(request)
    except signin.StepUpRequired:
        return _step_up_first(next_url)
    except signin.ReauthenticationRequired:
        return _reauthenticate(request, next_url)
    return None


def _go_to(stage: Stage, next_url: str) -> HttpResponse:
    """The page of the sign-in's stage, or where it was going once signed in."""
    if stage is Stage.SIGNED_IN:
        return HttpResponseRedirect(next_url)
    return redirect(PAGES[stage])


def _sign_in_again(request: HttpRequest, error: str, status: int) -> HttpResponse:
    return render(
        request,
        "accounts/login.html",
        {"form": SignInForm(), "error": error, "next": _next_url(request)},
        status=status,
    )


def _restart(request: HttpRequest) -> HttpResponse:
    return _sign_in_again(request, EXPIRED, HTTPStatus.BAD_REQUEST)


def _continue(request: HttpRequest, next_url: str) -> HttpResponse:
    return HttpResponseRedirect(_next_url(request, next_url))


def sign_in_step(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """A step accounts/signin.py refused: sign in again (with the factor), or a 403 with no details."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            return view(request)
        except signin.StepUpRequired:
            return _step_up_first(request.path)
        except signin.ReauthenticationRequired:
            return _reauthenticate(request, request.path)
        except signin.NoFactorLeft:
            return _sign_in_again(request, NO_FACTOR_LEFT, HTTPStatus.FORBIDDEN)
        except PermissionDenied:
            return _sign_in_again(request, REFUSED, HTTPStatus.FORBIDDEN)

    return wrapper


# --- step 1: the password ------------------------------------------------------------------------
@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    next_url = _next_url(request)
    hint = login_hint(next_url) if request.method == "GET" else None
    form = SignInForm(request.POST or None, initial={"email": hint} if hint else None)
    error, status = None, HTTPStatus.OK
    if request.method == "POST":
        if form.is_valid():
            result = services.check_password(
                request=request, email=form.cleaned_data["email"], password=form.cleaned_data["password"]
            )
            if result.user is not None:
                try:
                    stage = signin.after_password(request=request, user=result.user, next_url=next_url)
                except signin.NoFactorLeft:
                    return _sign_in_again(request, NO_FACTOR_LEFT, HTTPStatus.FORBIDDEN)
                return _go_to(stage, next_url)
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
@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
@sign_in_step
def mfa_challenge(request: HttpRequest) -> HttpResponse:
    """TOTP code, backup code, or a WebAuthn assertion: whichever the user has and picks."""
    state = signin.second_factor(request)
    if state is None:
        return _restart(request)
    error, status = None, HTTPStatus.OK
    if request.method == "POST":
        # Malformed input goes to the service as an empty value: refused, and counted like a wrong code.
        method = Method.parse(request.POST.get("method"))
        form = {Method.BACKUP_CODE: BackupCodeForm, Method.WEBAUTHN: WebAuthnForm}.get(method, CodeForm)(
            request.POST
        )
        valid = form.is_valid()
        result = signin.answer_challenge(
            request=request,
            state=state,
            method=method,
            code=form.cleaned_data.get("code", "") if valid else "",
            credential_json=form.cleaned_data.get("credential", "") if valid else "",
        )
        if result.user is not None:
            return _continue(request, signin.after_sign_in(request, state.next_url))
        error = result.error
        status = HTTPStatus.TOO_MANY_REQUESTS if result.locked else HTTPStatus.BAD_REQUEST
    offer = signin.offer_challenge(request=request, state=state)
    context: dict[str, Any] = {
        "action": reverse("accounts:mfa"),
        "error": error,
        "has_totp": offer.has_totp,
        "backup_codes_left": offer.backup_codes_left,
        "webauthn_options": offer.webauthn_options,
        "code_form": CodeForm(),
        "backup_form": BackupCodeForm(),
    }
    return render(request, "accounts/mfa_challenge.html", context, status=status)


# --- step 2 for a user without a factor, or adding one from the Security page ------------------------
@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
@sign_in_step
def mfa_enroll(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app (QR code and key, confirmed by a first code) or a passkey."""
    enrolling = signin.enrollment(request)
    if enrolling is None:
        return _restart(request)
    error, status = None, HTTPStatus.OK
    if request.method == "POST":
        method = Method.parse(request.POST.get("method"))
        form = WebAuthnForm(request.POST) if method is Method.WEBAUTHN else CodeForm(request.POST)
        valid = form.is_valid()
        result = signin.confirm_enrollment(
            request=request,
            enrolling=enrolling,
            method=method,
            code=form.cleaned_data.get("code", "") if valid else "",
            credential_json=form.cleaned_data.get("credential", "") if valid else "",
            name=form.cleaned_data.get("name", "") if valid else "",
        )
        if result.ok:
            if result.backup_codes:
                return _show_backup_codes(request, result.backup_codes, enrolling.next_url)
            return _continue(request, enrolling.next_url)
        error = result.error
        status = HTTPStatus.TOO_MANY_REQUESTS if result.locked else HTTPStatus.BAD_REQUEST
    offer = signin.offer_enrollment(request=request, enrolling=enrolling, fresh=request.method == "GET")
    return render(
        request,
        "accounts/mfa_enroll.html",
        {
            "error": error,
            "forced": enrolling.forced,
            "qr_svg": offer.qr_svg,
            "manual_key": offer.manual_key,
            "code_form": CodeForm(),
            "webauthn_options": offer.webauthn_options,
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
@sign_in_step
def mfa_step_up(request: HttpRequest) -> HttpResponse:
    next_url = _next_url(request)
    return _go_to(signin.begin_step_up(request=request, next_url=next_url), next_url)


# --- REPLENISH: signed in with the last backup code ------------------------------------------------
@login_required
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
@sign_in_step
def mfa_replenish(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app or passkey (the enrollment page), or take a new set of backup codes."""
    if request.method == "POST":
        codes, next_url = signin.replenish_with_codes(request=request)
        return _show_backup_codes(request, codes, next_url)
    if not signin.replenish_owed(request):
        return redirect(settings.LOGIN_REDIRECT_URL)  # nothing owed
    return render(request, "accounts/replenish.html")


# --- step-up before a security change ----------------------------------------------------------------
@login_required
@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
@sign_in_step
def security_verify(request: HttpRequest) -> HttpResponse:
    """Re-enter the second factor before changing factors (a step-up; the sign-in's factor does not count)."""
    next_url = _next_url(
        request, request.POST.get("next") or request.GET.get("next") or reverse("accounts:security")
    )
    error, status = None, HTTPStatus.OK
    if request.method == "POST":
        method = Method.parse(request.POST.get("method"))
        form = {Method.BACKUP_CODE: BackupCodeForm, Method.WEBAUTHN: WebAuthnForm}.get(method, CodeForm)(
            request.POST
        )
        valid = form.is_valid()
        result = signin.verify_again(
            request=request,
            method=method,
            code=form.cleaned_data.get("code", "") if valid else "",
            credential_json=form.cleaned_data.get("credential", "") if valid else "",
            next_url=next_url,
        )
        if result.user is not None:
            return _continue(request, signin.after_sign_in(request, next_url))
        error = result.error
        status = HTTPStatus.TOO_MANY_REQUESTS if result.locked else HTTPStatus.BAD_REQUEST
    offer = signin.offer_step_up(request=request)
    context: dict[str, Any] = {
        "action": reverse("accounts:security_verify"),
        "next": next_url,
        "step_up": True,
        "error": error,
        "has_totp": offer.has_totp,
        "backup_codes_left": offer.backup_codes_left,
        "webauthn_options": offer.webauthn_options,
        "code_form": CodeForm(),
        "backup_form": BackupCodeForm(),
    }
    return render(request, "accounts/mfa_challenge.html", context, status=status)


# --- the Security page -------------------------------------------------------------------------------
def _security_page(
    request: HttpRequest, *, error: str | None = None, status: int = HTTPStatus.OK
) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]  # login_required
    return render(
        request,
        "accounts/security.html",
        {
            "error": error,
            "totp_devices": totp.confirmed_devices(user),
            "credentials": list(WebAuthnCredential.objects.filter(user=user)),
            "backup_codes_left": backup_codes.remaining(user),
            "sign_ins": list(SignIn.objects.for_user(user)[:10]),
            "current_session": request.session.session_key,
            "change_needs": signin.what_a_change_needs(request),
            "mfa_required": settings.UAA_MFA_REQUIRED,
            "sign_out_form": SignOutEverywhereForm(),
        },
        status=status,
    )


@login_required
@never_cache
@require_http_methods(["GET"])
def security(request: HttpRequest) -> HttpResponse:
    return _security_page(request)


@login_required
@csrf_protect
@require_POST
def remove_factor(request: HttpRequest) -> HttpResponse:
    if (again := _change_refused(request, reverse("accounts:security"))) is not None:
        return again
    form = FactorForm(request.POST)
    if form.is_valid():
        try:
            enrollment.remove_factor(
                request=request,
                user=request.user,  # type: ignore[arg-type]
                kind=form.cleaned_data["kind"],
                factor_id=form.cleaned_data["factor_id"],
            )
        except enrollment.LastFactor:
            return _security_page(request, error=LAST_FACTOR, status=HTTPStatus.BAD_REQUEST)
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
    if (again := _change_refused(request, reverse("accounts:security"))) is not None:
        return again
    codes = enrollment.new_backup_codes(request=request, user=request.user)  # type: ignore[arg-type]
    return _show_backup_codes(request, codes, reverse("accounts:security"))


@login_required
@csrf_protect
@require_POST
def sign_out_everywhere(request: HttpRequest) -> HttpResponse:
    form = SignOutEverywhereForm(request.POST)
    revoke_tokens = form.is_valid() and form.cleaned_data["revoke_tokens"]
    services.sign_out_everywhere(request=request, revoke_tokens=revoke_tokens)
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
