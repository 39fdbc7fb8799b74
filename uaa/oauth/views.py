"""Discovery, the authorization (consent) endpoint, introspection, JWKS, and error pages. Thin."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe
from oauth2_provider.exceptions import InvalidOIDCClientError, OAuthToolkitError
from oauth2_provider.views import AuthorizationView, RPInitiatedLogoutView
from oauth2_provider.views import TokenView as DOTTokenView
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from accounts.mfa import policy
from accounts.sessions import SID, auth_context, current_acr, session_is_fresh
from tokens.formats import ID_TOKEN_TYP, verify_jwt
from tokens.introspection import introspect
from uaa.oauth import consent, rfc7636
from uaa.oauth.clientauth import authenticate_caller
from uaa.oauth.discovery import (
    RESPONSE_MODES_SUPPORTED,
    authorization_server_metadata,
    openid_configuration,
)
from uaa.oauth.errors import InvalidClient, InvalidRequest, OAuthError, UnsupportedGrantType
from uaa.oauth.http import check_form
from uaa.oauth.models import Client

logger = logging.getLogger(__name__)


def _prompts(request: HttpRequest) -> set[str]:
    return set(request.GET.get("prompt", "").split())


def _acr_values(request: HttpRequest) -> list[str]:
    """OIDC Core §3.1.2.1 ``acr_values``: space-separated, in order of preference."""
    return request.GET.get("acr_values", "").split()


def _needs_second_factor(request: HttpRequest, application: Client) -> bool:
    """The session's ``acr`` falls short of the requested ``acr_values``, the client's flag or the policy."""
    acr = current_acr(request)
    if not policy.satisfies(acr=acr, requested=_acr_values(request)):
        return True
    return acr != policy.ACR_MFA and policy.mfa_required(user=request.user, client=application)


def _max_age(request: HttpRequest) -> int | None:
    """OIDC Core §3.1.2.1 ``max_age``: a non-negative integer number of seconds; ValueError otherwise."""
    if "max_age" not in request.GET:
        return None
    value = request.GET["max_age"]
    if not (value.isascii() and value.isdigit()):
        raise ValueError("max_age must be a non-negative integer")
    return int(value)


def _refuse(credentials: dict[str, Any], error: oauthlib_errors.OAuth2Error) -> OAuthToolkitError:
    """An error for the client, redirected to the redirect URI oauthlib has already validated."""
    error.state = credentials.get("state")
    return OAuthToolkitError(error=error, redirect_uri=credentials.get("redirect_uri"))


def _refuse_what_uaa_does_not_offer(request: HttpRequest, credentials: dict[str, Any]) -> None:
    """Authorization request parameters oauthlib would accept but UAA refuses, as ``invalid_request`` (or
    the OIDC Core §6 codes), once the client and redirect URI are known to be valid.

    - ``request``/``request_uri``: OIDC Core §6, not supported, so MUST be refused.
    - ``response_mode``: only what discovery lists (``query``). oauthlib would put the code in the
      fragment for ``fragment`` and silently use the query for anything else (Multiple Response Type
      Encoding Practices §2.1; OIDC Core §3.1.2.1).
    - ``code_challenge_method`` other than S256 (RFC 9700 §2.1.1), and a ``code_challenge`` that is not
      43 base64url characters (RFC 7636 §4.2, §4.4.1).
    - ``max_age`` that is not a non-negative integer (OIDC Core §3.1.2.1).
    """
    for parameter in ("request", "request_uri"):
        if parameter in request.GET:
            raise _refuse(
                credentials,
                oauthlib_errors.CustomOAuth2Error(
                    error=f"{parameter}_not_supported",
                    description=f"The {parameter} parameter is not supported.",
                ),
            )
    response_mode = request.GET.get("response_mode")
    if response_mode and response_mode not in RESPONSE_MODES_SUPPORTED:
        raise _refuse(
            credentials,
            oauthlib_errors.InvalidRequestError(description="response_mode must be query (or left out)."),
        )
    if credentials.get("code_challenge_method") != "S256":
        raise _refuse(
            credentials,
            oauthlib_errors.InvalidRequestError(
                description="PKCE is required: send code_challenge with code_challenge_method=S256."
            ),
        )
    if not rfc7636.is_well_formed_s256_challenge(credentials.get("code_challenge") or ""):
        raise _refuse(
            credentials,
            oauthlib_errors.InvalidRequestError(
                description="code_challenge must be the unpadded base64url SHA-256 of the code_verifier "
                "(43 characters, RFC 7636)."
            ),
        )
    try:
        _max_age(request)
    except ValueError:
        raise _refuse(
            credentials,
            oauthlib_errors.InvalidRequestError(description="max_age must be a number of seconds."),
        ) from None


class CheckedParameters:
    """RFC 6749 §3.1 and Appendix A on the browser endpoints: no repeated parameters, no NUL characters.

    Such a request cannot be trusted to name its redirect URI, so the user gets the error page.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            check_form(request.GET)
            check_form(request.POST)
        except OAuthError as exc:
            return render(
                request,
                "oauth/error.html",
                {"error": "Bad request", "description": exc.description},
                status=HTTPStatus.BAD_REQUEST,
            )
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class TokenView(DOTTokenView):
    """RFC 6749 §3.2: grant types UAA does not offer are refused before django-oauth-toolkit sees them."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        grant_type = request.POST.get("grant_type")
        if not grant_type:
            raise InvalidRequest("The grant_type parameter is required.")
        if grant_type not in settings.OAUTH2_PROVIDER["OAUTH2_GRANT_TYPES_SUPPORTED"]:
            raise UnsupportedGrantType()
        # One transaction for the whole grant: the code is spent, the tokens, the ID token and their
        # ledger records are written, or none of it is.
        with transaction.atomic():
            return super().post(request, *args, **kwargs)


class AuthorizeView(CheckedParameters, AuthorizationView):
    """RFC 6749 §4.1.1 with PKCE S256 (RFC 7636), OIDC prompt/max_age, consent and RFC 9207 ``iss``."""

    template_name = "oauth/consent.html"

    # --- validation ----------------------------------------------------------------------------
    def validate_authorization_request(self, request: HttpRequest) -> tuple[list[str], dict[str, Any]]:
        """oauthlib checks the client and redirect URI first (fatal: the error page), then the rest;
        UAA's own refusals follow, each redirected to the now-validated redirect URI (RFC 6749 §4.1.2.1)."""
        scopes, credentials = super().validate_authorization_request(request)
        _refuse_what_uaa_does_not_offer(request, credentials)
        return scopes, credentials

    # --- responses ----------------------------------------------------------------------------
    def error_response(self, error: Any, application: Any, **kwargs: Any) -> HttpResponse:
        redirect, context = OAuthLibMixin.error_response(self, error, **kwargs)
        if redirect:
            return self.redirect(self._with_iss(context["url"]), application)
        oauth_error = context["error"]
        status = getattr(oauth_error, "status_code", HTTPStatus.BAD_REQUEST)
        return render(
            self.request,
            "oauth/error.html",
            {
                "error": getattr(oauth_error, "error", "invalid_request"),
                "description": getattr(oauth_error, "description", ""),
            },
            status=status if status < HTTPStatus.INTERNAL_SERVER_ERROR else HTTPStatus.BAD_REQUEST,
        )

    @staticmethod
    def _with_iss(url: str) -> str:
        """RFC 9207 §2: error responses carry iss too, once, whatever the redirect URI's own query holds."""
        if settings.UAA_ISSUER in parse_qs(urlsplit(url).query).get("iss", []):
            return url
        return add_params_to_uri(url, [("iss", settings.UAA_ISSUER)])

    def _redirect_error(self, credentials: dict[str, Any], application: Client, error: str) -> HttpResponse:
        params = {"error": error}
        if credentials.get("state"):
            params["state"] = credentials["state"]
        params["iss"] = settings.UAA_ISSUER
        uri = credentials["redirect_uri"]
        separator = "&" if "?" in uri else "?"
        return self.redirect(f"{uri}{separator}{urlencode(params)}", application)

    def _reauthenticate(self) -> HttpResponse:
        """Send the user to sign in; that sign-in satisfies prompt=login and max_age, so both are dropped.

        Any other prompt value stays: prompt=consent is answered on the consent page, not by signing in
        (OIDC Core §3.1.2.1), so a remembered consent or a trusted client must not skip it afterwards.
        """
        query = self.request.GET.copy()
        remaining = [value for value in query.get("prompt", "").split() if value != "login"]
        if remaining:
            query["prompt"] = " ".join(remaining)
        else:
            query.pop("prompt", None)
        query.pop("max_age", None)  # else max_age=0 could never be met and the user would loop
        next_url = f"{self.request.path}?{query.urlencode()}"
        return redirect_to_login(next_url, reverse(settings.LOGIN_URL), self.get_redirect_field_name())

    def _step_up(self) -> HttpResponse:
        """Signed in, but without the second factor this request needs: prove one, then resume."""
        next_url = f"{self.request.path}?{self.request.GET.urlencode()}"
        return redirect_to_login(next_url, reverse("accounts:mfa_step_up"), self.get_redirect_field_name())

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict[str, Any], allow: bool
    ) -> tuple[str, dict[str, str], str, int]:
        # The consent form posts back to the authorization URL, whose query oauthlib reads again: the same
        # refusals as on the GET (a response_mode, a code_challenge edited in the form).
        _refuse_what_uaa_does_not_offer(request, credentials)
        client = Client.objects.filter(client_id=credentials["client_id"]).first()
        if (
            allow
            and current_acr(request) != policy.ACR_MFA
            and policy.mfa_required(user=request.user, client=client)
        ):
            # A consent POST straight from a password-only session: the GET would have asked for the factor.
            raise OAuthToolkitError(
                error=oauthlib_errors.AccessDeniedError(state=credentials.get("state")),
                redirect_uri=credentials.get("redirect_uri"),
            )
        credentials["uaa_auth"] = auth_context(request)
        # The audit record says whether the user saw the consent page (POST) or it was skipped (GET).
        credentials["uaa_consent"] = "given" if request.method == "POST" else "skipped"
        if allow:
            consent.remember(user=request.user, client_id=credentials["client_id"], scopes=scopes.split())
        else:
            consent.refuse(
                user=request.user, client_id=credentials["client_id"], scopes=scopes.split(), request=request
            )
        return super().create_authorization_response(request, scopes, credentials, allow)

    # --- the endpoint -------------------------------------------------------------------------
    def handle_no_permission(self) -> HttpResponse:
        """Nobody is signed in. The request is validated before anyone is asked to sign in: an unknown
        client or an unregistered redirect URI gets the error page at once, so a phishing link cannot use
        UAA's sign-in page as its landing page (RFC 6749 §4.1.2.1, §10.15); any other error goes back to
        the client (OIDC Core §3.1.2.6), and prompt=none gets login_required."""
        try:
            _scopes, credentials = self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        if "none" in _prompts(self.request):
            application = Client.objects.get(client_id=credentials["client_id"])
            return self._redirect_error(credentials, application, "login_required")
        return self._reauthenticate()

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = Client.objects.get(client_id=credentials["client_id"])
        prompts = _prompts(request)
        max_age = _max_age(request)  # well-formed: validate_authorization_request refused anything else
        if "login" in prompts or not session_is_fresh(request, max_age=max_age):
            if "none" in prompts:
                return self._redirect_error(credentials, application, "login_required")
            return self._reauthenticate()
        if _needs_second_factor(request, application):
            if "none" in prompts:
                return self._redirect_error(credentials, application, "login_required")
            return self._step_up()
        needs_consent = "consent" in prompts or not (
            application.trusted
            or consent.covers(user=request.user, client_id=application.client_id, scopes=scopes)
        )
        if needs_consent and "none" in prompts:
            return self._redirect_error(credentials, application, "consent_required")
        if not needs_consent:
            try:
                uri, _headers, _body, _status = self.create_authorization_response(
                    request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
                )
            except OAuthToolkitError as error:
                return self.error_response(error, application)
            return self.redirect(uri, application)
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        all_scopes = settings.UAA_SCOPES
        context["scope_items"] = [
            (scope, all_scopes.get(scope, scope)) for scope in context.get("scopes", [])
        ]
        return context

    def form_invalid(self, form: Any) -> HttpResponse:
        """A consent POST without its fields (or not a form at all) names no client to answer: the error
        page, never the consent template without an application (a 500)."""
        return render(
            self.request,
            "oauth/error.html",
            {"error": "Bad request", "description": "The consent form is incomplete or malformed."},
            status=HTTPStatus.BAD_REQUEST,
        )


@require_safe
def openid_configuration_view(request: HttpRequest) -> JsonResponse:
    """OpenID Connect Discovery 1.0 §4."""
    response = JsonResponse(openid_configuration())
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "public, max-age=3600"
    return response


@require_safe
def authorization_server_metadata_view(request: HttpRequest) -> JsonResponse:
    """RFC 8414 §3."""
    response = JsonResponse(authorization_server_metadata())
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "public, max-age=3600"
    return response


def introspect_view(request: HttpRequest) -> JsonResponse:
    """RFC 7662 §2: the caller authenticates as a confidential client (throttled like the token endpoint);
    it learns about its own tokens and those for resources it serves (§4); anything else is inactive."""
    caller = authenticate_caller(request)
    if caller.client_type != Client.CLIENT_CONFIDENTIAL:
        raise InvalidClient()
    token = request.POST.get("token")
    if not token:
        raise InvalidRequest("The token parameter is required.")
    hint = request.POST.get("token_type_hint")
    return JsonResponse(introspect(token=token, hint=hint, caller=caller, serves=caller.served_resources))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(
        request,
        "oauth/error.html",
        {
            "error": "Form expired",
            "description": "The form was open too long or cookies are blocked. Go back and try again.",
        },
        status=HTTPStatus.FORBIDDEN,
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(
        request,
        "oauth/error.html",
        {"error": "Bad request", "description": "The request was malformed."},
        status=400,
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(
        request,
        "oauth/error.html",
        {"error": "Forbidden", "description": "You may not open this page."},
        status=403,
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(
        request,
        "oauth/error.html",
        {"error": "Not found", "description": "There is no page at this address."},
        status=404,
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "oauth/error.html",
        {
            "error": "Something went wrong",
            "description": "The server met an unexpected condition.",
            "request_id": getattr(request, "request_id", ""),
        },
        status=500,
    )


class LogoutView(CheckedParameters, RPInitiatedLogoutView):
    """OpenID Connect RP-Initiated Logout 1.0 on django-oauth-toolkit, with our templates."""

    template_name = "oauth/logout.html"

    def get_request_application(self, id_token: Any, client_id: str | None) -> Client | None:
        if client_id and not Client.objects.filter(client_id=client_id).exists():
            raise InvalidOIDCClientError()  # DOT would let Client.DoesNotExist become a 500
        return super().get_request_application(id_token, client_id)

    def must_prompt(self, token_user: Any) -> bool:
        """RP-Initiated Logout §2: the OP MUST ask when the ID token does not belong to the current OP
        session; its ``sid`` tells which session it was issued in (OIDC Front-Channel Logout §3)."""
        if super().must_prompt(token_user):
            return True
        if not self.request.user.is_authenticated:
            return False  # no OP session to end
        hint = self.request.GET.get("id_token_hint") or self.request.POST.get("id_token_hint") or ""
        sid = (verify_jwt(hint, typ=ID_TOKEN_TYP) or {}).get("sid") if hint else None
        return bool(sid) and sid != self.request.session.get(SID)

    def error_response(self, error: Any) -> HttpResponse:
        return render(
            self.request,
            "oauth/error.html",
            {"error": "Sign-out request refused", "description": getattr(error, "description", "")},
            status=getattr(error, "status_code", HTTPStatus.BAD_REQUEST),
        )
