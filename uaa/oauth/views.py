"""The OAuth endpoints' views on django-oauth-toolkit's: authorization (with its consent page), token,
introspection, logout, discovery, and the HTML error pages.

Thin: each parses the request, asks the module that decides, and renders what it answers. The authorize
decision and the consent answer are uaa/oauth/interaction.py's, the grant types offered the oauthlib
server's (uaa/oauth/server.py), the introspecting client's uaa/oauth/clientauth.py's, the reason to ask
before a logout uaa/oauth/logout.py's; everything a grant stores is done by the validator's hooks.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode, urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import DisallowedRedirect
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_safe
from oauth2_provider.exceptions import InvalidOIDCClientError, OAuthToolkitError
from oauth2_provider.forms import AllowForm
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.signals import app_authorized
from oauth2_provider.views import AuthorizationView, RPInitiatedLogoutView
from oauth2_provider.views import TokenView as DOTTokenView
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

from accounts.sessions import auth_context
from tokens.introspection import introspect
from tokens.signing import SigningKeyChanged, optimistic
from uaa.oauth import (
    access_tokens,
    claims,
    consent,
    form_post,
    grant_context,
    interaction,
    logout,
    not_before,
    rfc9207,
)
from uaa.oauth.clientauth import authenticate_caller
from uaa.oauth.discovery import authorization_server_metadata, openid_configuration
from uaa.oauth.errors import NO_STORE, InvalidRequest, OAuthError
from uaa.oauth.http import FORM, check_form
from uaa.oauth.models import Client

logger = logging.getLogger(__name__)


def error_page(
    request: HttpRequest, *, status: int, error: str, description: str, **context: Any
) -> HttpResponse:
    """The one HTML error page (templates/oauth/error.html): a heading, a fixed description, a status."""
    return render(
        request, "oauth/error.html", {"error": error, "description": description, **context}, status=status
    )


def _refuse(credentials: dict[str, Any], error: oauthlib_errors.OAuth2Error) -> OAuthToolkitError:
    """An error for the client, redirected to the redirect URI oauthlib has already validated."""
    error.state = credentials.get("state")
    return OAuthToolkitError(error=error, redirect_uri=credentials.get("redirect_uri"))


def _refuse_what_uaa_does_not_offer(request: HttpRequest, credentials: dict[str, Any]) -> None:
    """What ``interaction.check_request`` refuses, redirected to the validated redirect URI (§4.1.2.1)."""
    try:
        interaction.check_request(request.GET, credentials=credentials)
    except oauthlib_errors.OAuth2Error as error:
        raise _refuse(credentials, error) from None


class CheckedParameters:
    """RFC 6749 §3.1 and Appendix A on the browser endpoints: no repeated parameters, no NUL characters.

    Such a request cannot be trusted to name its redirect URI, so the user gets the error page.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            check_form(request.GET)
            check_form(request.POST)
        except OAuthError as exc:
            return error_page(
                request, status=HTTPStatus.BAD_REQUEST, error="Bad request", description=exc.description
            )
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


def _optimistic_transaction(request: HttpRequest) -> AbstractContextManager[object]:
    """The optimistic client-credentials attempt's transaction: none (autocommit) for a client secret.

    The request reads the client and its counters, then stores the token, confirms its key and appends its
    record in one statement, atomic by itself; BEGIN and COMMIT would be two round trips more (issue 12:
    at most 3 per token). What else it may write is as right committed alone, and again when the attempt is
    retried the locked way: a failed authentication's counts (each one upsert), a success forgiving its
    address's failures. A client assertion is spent (its ``jti`` remembered, RFC 7523 §3 replay) by the
    attempt: if the attempt is retried, that must be undone with it, so it keeps its transaction."""
    return transaction.atomic() if "client_assertion" in request.POST else nullcontext()


class TokenView(DOTTokenView):
    """RFC 6749 §3.2 in one transaction: the code is spent, the tokens, the ID token and their ledger records
    are written, or none of it is. Every grant type goes to the oauthlib server, which routes only those UAA
    offers (uaa/oauth/server.py); django-oauth-toolkit's own detour for the device grant is not taken."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if access_tokens.signs_optimistically(request):  # client credentials: one statement stores it all
            try:
                with _optimistic_transaction(request), optimistic():
                    return self.authorization_flow_token_response(request, *args, **kwargs)
            except SigningKeyChanged:  # rotated or revoked since this process cached it: the locked way
                logger.info("oauth.signing_key_changed", extra={"grant_type": "client_credentials"})
        with transaction.atomic():
            return self.authorization_flow_token_response(request, *args, **kwargs)

    def authorization_flow_token_response(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        """django-oauth-toolkit's, without its SELECT of the token just written (issue 12): that read feeds
        only the ``app_authorized`` signal, which UAA does not listen to; it is made for a listener only."""
        if app_authorized.has_listeners():
            return super().authorization_flow_token_response(request, *args, **kwargs)
        _url, headers, body, status = self.create_token_response(request)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        return response


class ConsentForm(AllowForm):
    """django-oauth-toolkit's copies of the request, each checked against the request UAA keeps for the
    page (uaa/oauth/consent.py ``check_answer``), and the id under which it keeps it."""

    page = forms.CharField(widget=forms.HiddenInput())


# The consent form's own fields (ConsentForm, templates/oauth/consent.html): a POST carrying any of them is
# an answer to a consent page, never a relying party's authorization request.
CONSENT_ANSWER_FIELDS = frozenset({"page", "allow", "csrfmiddlewaretoken"})


def posted_authorization_request(request: HttpRequest) -> bool:
    """OIDC Core §3.1.2.1: the authorization endpoint "MUST support the use of the HTTP GET and POST
    methods"; a POST carries the request form-encoded in its body. Such a POST is told from an answer to a
    consent page by what it carries: a form body naming a client, no query (the consent form posts back
    to its page's URL) and none of the consent form's fields. Anything else is taken for a consent answer
    and CSRF-checked (``AuthorizeView.dispatch``)."""
    if request.method != "POST" or request.GET or request.content_type != FORM:
        return False
    names = set(request.POST)
    return "client_id" in names and not names & CONSENT_ANSWER_FIELDS


@method_decorator(csrf_exempt, name="dispatch")  # CSRF-checked in dispatch, but for the RP's POST
class AuthorizeView(CheckedParameters, AuthorizationView):
    """RFC 6749 §4.1.1 with PKCE S256 (RFC 7636), OIDC prompt, max_age and acr_values, consent, RFC 9207 iss;
    by GET or POST (OIDC Core §3.1.2.1); the response by redirect or Form Post (uaa/oauth/form_post.py).

    What happens next is decided by ``uaa.oauth.interaction.decide``, on the GET and again when the
    consent page is answered.
    """

    template_name = "oauth/consent.html"
    form_class = ConsentForm
    response_mode: str | None = None  # the authorization request's, once it is known (get, form_valid)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """A relying party's POSTed authorization request becomes the same request by GET (RFC 9110
        §15.4.4 303): one way in, so it is validated, decided and sent to sign in exactly as the GET is.
        It carries no decision of the user's, so it is no CSRF target (and a cross-site POST carries no
        SameSite=Lax session cookie to act with); every other request, the consent answer above all,
        is CSRF-checked as UAA's other forms are."""
        if posted_authorization_request(request):
            return self._as_get(request)
        return csrf_protect(super().dispatch)(request, *args, **kwargs)

    def _as_get(self, request: HttpRequest) -> HttpResponse:
        try:
            check_form(request.POST)
        except OAuthError as exc:
            return error_page(
                request, status=HTTPStatus.BAD_REQUEST, error="Bad request", description=exc.description
            )
        url = f"{reverse('oauth:authorize')}?{request.POST.urlencode()}"
        return HttpResponseRedirect(url, status=HTTPStatus.SEE_OTHER)

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
            return self.redirect(context["url"], application)
        oauth_error = context["error"]
        status = getattr(oauth_error, "status_code", HTTPStatus.BAD_REQUEST)
        return error_page(
            self.request,
            status=status if status < HTTPStatus.INTERNAL_SERVER_ERROR else HTTPStatus.BAD_REQUEST,
            error=getattr(oauth_error, "error", "invalid_request"),
            description=getattr(oauth_error, "description", ""),
        )

    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        """Every authorization response carries ``iss`` (uaa/oauth/rfc9207.py); with
        ``response_mode=form_post`` it is a form posted to the redirect URI instead of a redirect."""
        uri = rfc9207.with_iss(redirect_to)
        if self.response_mode == form_post.MODE:
            return self._form_post(uri, application)
        return super().redirect(uri, application)

    def _form_post(self, uri: str, application: Client | None) -> HttpResponse:
        """OAuth 2.0 Form Post Response Mode §2, to the redirect URI oauthlib validated, under the scheme
        rule django-oauth-toolkit's redirect applies (``OAuth2ResponseRedirect``)."""
        action, fields = form_post.split_response(uri)
        schemes = (
            application.get_allowed_schemes() if application else oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
        )
        if urlsplit(action).scheme not in schemes:
            raise DisallowedRedirect("Redirect to scheme is not permitted")
        response = render(self.request, "oauth/form_post.html", {"action": action, "fields": fields})
        for header, value in NO_STORE.items():
            response[header] = value
        return response

    def _redirect_error(self, credentials: dict[str, Any], application: Client, error: str) -> HttpResponse:
        params = {"error": error}
        if credentials.get("state"):
            params["state"] = credentials["state"]
        uri = credentials["redirect_uri"]
        separator = "&" if "?" in uri else "?"
        return self.redirect(f"{uri}{separator}{urlencode(params)}", application)

    def _error_page(self, description: str) -> HttpResponse:
        return error_page(
            self.request,
            status=HTTPStatus.BAD_REQUEST,
            error="This request cannot be completed",
            description=description,
        )

    # --- rendering the decision -------------------------------------------------------------------
    def _respond(
        self,
        decision: interaction.Decision,
        *,
        scopes: list[str],
        credentials: dict[str, Any],
        application: Client,
        digest: str,
        query: str,
    ) -> HttpResponse:
        """What ``uaa.oauth.interaction.decide`` said, rendered: prompt=none's error, the sign-in or the
        second factor (the way back is the request as it came, ``query``), the consent page, or the code."""
        if decision.error:
            interaction.finish(self.request, digest=digest)
            return self._redirect_error(credentials, application, decision.error)
        if decision.demand_reauthentication:
            # prompt=login and max_age stay in the way back: only a sign-in after now answers them.
            interaction.demand_reauthentication(self.request, digest=digest)
        if decision.interactive:  # another page first, with the request as the way back
            sign_in = decision.step is interaction.Step.SIGN_IN
            page = reverse(settings.LOGIN_URL if sign_in else "accounts:mfa_step_up")
            next_url = f"{reverse('oauth:authorize')}?{query}"
            return redirect_to_login(next_url, page, self.get_redirect_field_name())
        if decision.step is interaction.Step.CONSENT:
            return self._consent_page(scopes, credentials, application, digest=digest)
        return self._issue(
            scopes=scopes, credentials=credentials, application=application, digest=digest, allow=True
        )

    def _issue(
        self,
        *,
        scopes: list[str],
        credentials: dict[str, Any],
        application: Client,
        digest: str,
        allow: bool,
    ) -> HttpResponse:
        """The code (or access_denied), redirected; the request is finished either way."""
        try:
            uri, _headers, _body, _status = self.create_authorization_response(
                request=self.request, scopes=" ".join(scopes), credentials=credentials, allow=allow
            )
        except OAuthToolkitError as error:
            return self.error_response(error, application)
        finally:
            interaction.finish(self.request, digest=digest)
        return self.redirect(uri, application)

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict[str, Any], allow: bool
    ) -> tuple[str, dict[str, str], str, int]:
        # oauthlib reads the request URL's query again: the same refusals as on the GET.
        _refuse_what_uaa_does_not_offer(request, credentials)
        # The audit record says whether the user saw the consent page (POST) or it was skipped (GET). The
        # consent is remembered with the code it gives (UAAOAuth2Validator._create_authorization_code).
        grant_context.for_authorization(
            credentials,
            session_auth=auth_context(request),
            consent="given" if request.method == "POST" else "skipped",
        )
        if not allow:
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
        return self.get(self.request)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.response_mode = request.GET.get("response_mode")
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = Client.objects.get(client_id=credentials["client_id"])
        ask = interaction.Ask.parse(request.GET)  # well-formed: validate_authorization_request said so
        digest = interaction.request_digest(request.GET)
        decision = interaction.decide_request(
            request, client=application, scopes=scopes, ask=ask, digest=digest
        )
        return self._respond(
            decision,
            scopes=scopes,
            credentials=credentials,
            application=application,
            digest=digest,
            query=request.GET.urlencode(),
        )

    def _consent_page(
        self, scopes: list[str], credentials: dict[str, Any], application: Client, *, digest: str
    ) -> HttpResponse:
        """OIDC Core §3.1.2.4: the consent page. The request it shows is kept server-side for its answer."""
        shown = consent.shown_request(
            credentials=credentials,
            scopes=scopes,
            resources=self.request.GET.getlist("resource"),
            digest=digest,
            query=self.request.GET.urlencode(),
        )
        page_id = interaction.hold_consent(self.request, page=shown)
        form = ConsentForm(initial={**consent.form_copies(shown), "page": page_id})
        context = self.get_context_data(
            form=form,
            application=application,
            scopes=scopes,
            client_id=application.client_id,
            redirect_uri=credentials["redirect_uri"],
            state=credentials.get("state"),
            claim_items=claims.consent_items(credentials.get("claims"), scopes=scopes),  # OIDC Core §5.5
        )
        return self.render_to_response(context)

    def form_valid(self, form: Any) -> HttpResponse:
        """The consent page's answer, checked against the request the page was shown for (kept in this
        browser's session, answered once), never against the form's copies; then every requirement of
        that request again, by the same decision as on the GET (uaa/oauth/interaction.py)."""
        request = self.request
        try:
            answer = interaction.take_answer(request, page_id=form.cleaned_data["page"], posted=request.POST)
        except consent.AnswerRefused as gone:
            return self._error_page(gone.description)
        shown, application, scopes = answer.shown, answer.client, answer.scopes
        self.response_mode = QueryDict(shown["query"]).get("response_mode")
        credentials = consent.credentials_of(shown, granted=scopes)
        digest = shown["digest"]
        if answer.refused is not None:
            if answer.refused.fatal:
                return self._error_page(answer.refused.description)
            return self._redirect_error(credentials, application, answer.refused.error)
        if not form.cleaned_data.get("allow"):
            return self._issue(
                scopes=scopes, credentials=credentials, application=application, digest=digest, allow=False
            )
        try:  # the request again: its id_token_hint's key may have left the JWKS since the page was shown
            ask = interaction.Ask.parse(QueryDict(shown["query"]))
        except ValueError:
            interaction.finish(request, digest=digest)
            return self._redirect_error(credentials, application, "invalid_request")
        decision = interaction.decide_request(
            request, client=application, scopes=scopes, ask=ask, digest=digest, consented=True
        )
        return self._respond(
            decision,
            scopes=scopes,
            credentials=credentials,
            application=application,
            digest=digest,
            query=shown["query"],
        )

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
        return error_page(
            self.request,
            status=HTTPStatus.BAD_REQUEST,
            error="Bad request",
            description="The consent form is incomplete or malformed.",
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
    """RFC 7662 §2: the caller authenticates as a confidential client (throttled like the token endpoint:
    uaa/oauth/clientauth.py); it learns about its own tokens and those for resources it serves (§4);
    anything else is inactive (tokens/introspection.py)."""
    caller = authenticate_caller(request)
    token = request.POST.get("token")
    if not token:
        raise InvalidRequest("The token parameter is required.")
    hint = request.POST.get("token_type_hint")
    serves, refused = caller.served_resources, not_before.token_refused
    return JsonResponse(introspect(token=token, hint=hint, caller=caller, serves=serves, refused=refused))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    description = "The form was open too long or cookies are blocked. Go back and try again."
    return error_page(request, status=HTTPStatus.FORBIDDEN, error="Form expired", description=description)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(
        request, status=HTTPStatus.BAD_REQUEST, error="Bad request", description="The request was malformed."
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(
        request, status=HTTPStatus.FORBIDDEN, error="Forbidden", description="You may not open this page."
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    description = "There is no page at this address."
    return error_page(request, status=HTTPStatus.NOT_FOUND, error="Not found", description=description)


def server_error(request: HttpRequest) -> HttpResponse:
    return error_page(
        request,
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        error="Something went wrong",
        description="The server met an unexpected condition.",
        request_id=getattr(request, "request_id", ""),
    )


@method_decorator(csrf_exempt, name="dispatch")  # CSRF-checked in dispatch, but for the RP's POST
class LogoutView(CheckedParameters, RPInitiatedLogoutView):
    """OpenID Connect RP-Initiated Logout 1.0 on django-oauth-toolkit, with our templates; by GET or POST."""

    template_name = "oauth/logout.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """An RP's POSTed logout request is answered as the GET (uaa/oauth/logout.py): it is no CSRF
        target, as a link to the GET is none; the answer to the logout question is CSRF-checked as UAA's
        other forms."""
        if logout.posted_logout_request(request):
            return super().dispatch(request, *args, **kwargs)  # CheckedParameters, then post() below
        return csrf_protect(super().dispatch)(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if logout.posted_logout_request(request):
            return self.get(logout.as_get(request), *args, **kwargs)
        return super().post(request, *args, **kwargs)

    def get_request_application(self, id_token: Any, client_id: str | None) -> Client | None:
        if client_id and not Client.objects.filter(client_id=client_id).exists():
            raise InvalidOIDCClientError()  # DOT would let Client.DoesNotExist become a 500
        return super().get_request_application(id_token, client_id)

    def must_prompt(self, token_user: Any) -> bool:
        """django-oauth-toolkit's reasons to ask, and UAA's: an ID token hint of another OP session
        (RP-Initiated Logout §2, uaa/oauth/logout.py)."""
        return bool(super().must_prompt(token_user)) or logout.hint_names_another_session(self.request)

    def error_response(self, error: Any) -> HttpResponse:
        return error_page(
            self.request,
            status=getattr(error, "status_code", HTTPStatus.BAD_REQUEST),
            error="Sign-out request refused",
            description=getattr(error, "description", ""),
        )
