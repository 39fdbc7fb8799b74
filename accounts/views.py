"""Sign in, sign out, and the signed-in landing page. Thin: parse, call a service, render."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts import services
from accounts.forms import SignInForm

FAILED = "The e-mail address or password is not correct."


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    form = SignInForm(request.POST or None)
    error = None
    if request.method == "POST":
        if form.is_valid():
            user = services.authenticate_password(
                request=request, email=form.cleaned_data["email"], password=form.cleaned_data["password"]
            )
            if user is not None:
                services.sign_in(request=request, user=user, amr=["pwd"])
                return HttpResponseRedirect(_next_url(request))
        error = FAILED
    status = 400 if error else 200
    return render(
        request,
        "accounts/login.html",
        {"form": form, "error": error, "next": _next_url(request)},
        status=status,
    )


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
    """The admin signs in through the same sign-in page (and, later, the same MFA) as everyone else."""
    from django.contrib.auth.views import redirect_to_login

    return redirect_to_login(request.GET.get("next") or reverse("admin:index"), reverse(settings.LOGIN_URL))
