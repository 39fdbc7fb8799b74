"""The OpenID Foundation's Basic OP plan (``oidcc-basic-certification-test-plan``, ``OIDCCBasicTestPlan``) and
Form Post OP plan (``oidcc-formpost-basic-certification-test-plan``: the same modules,
response_mode=form_post,
``AbstractFormPostTestPlan.changeResponseTypeToFormPost``), module by module, against a live UAA.

Each test is named after its module's ``testName`` and runs twice (``response_mode``: default, form_post).
The variant is the plan's: response_type=code, client_secret_basic (client_secret_post for
oidcc-server-client-secret-post), static client registration, discovery. Source: the suite's
src/main/java/net/openid/conformance/openid/*.java at its GitHub mirror openid-certification/conformance-suite
(commit 12f2a4da); a "warning" there is asserted here too, as the result UAA gives. docs/certification.md
lists every module with its result.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlencode

import jwt
import pytest

from tests.uaa.certification.flows import authorize, error_flow, standard_flow
from tests.uaa.certification.rp import (
    REDIRECT_URI,
    REDIRECT_URI_WITH_QUERY,
    ErrorPage,
    check_callback,
    check_id_token,
    check_success_callback,
    check_token_error,
    check_token_response,
    check_userinfo,
)

# OIDC Core §5.4 by scope: AbstractVerifyScopesReturnedInClaims.SCOPE_STANDARD_CLAIMS
SCOPE_CLAIMS = {
    "profile": {
        *("name", "given_name", "family_name", "middle_name", "nickname", "profile", "picture", "website"),
        *("gender", "birthdate", "zoneinfo", "locale", "updated_at", "preferred_username"),
    },
    "email": {"email", "email_verified"},
    "address": {"address"},
    "phone": {"phone_number", "phone_number_verified"},
}
# EnsureIdTokenDoesNotContainNonRequestedClaims: what an ID token for scope=openid may carry
ID_TOKEN_CLAIMS = {
    *("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "at_hash", "c_hash"),
    *("sid", "jti"),
}


# --- OP-Response-code, OP-Response-Missing, OP-IDToken-* ----------------------------------------------------
def test_oidcc_server(op, response_mode):
    """``OIDCCServerTest`` (oidcc-server): the happy flow. ``PerformStandardIdTokenChecks`` on the token
    endpoint's ID token, ``ValidateAtHash`` when at_hash is present, ``EnsureMinimumAuthorizationCodeLength``,
    ``EnsureIdTokenDoesNotContainName`` and ``EnsureIdTokenDoesNotContainNonRequestedClaims`` (warnings),
    and userinfo (``CallProtectedResource``, ``EnsureHttpStatusCodeIs200``)."""
    flow = standard_flow(op.rp(), op.browser(), response_mode=response_mode)
    assert flow.callback.pages[0] == "login"  # and the consent page the first time
    assert "name" not in flow.id_token
    assert set(flow.id_token) <= ID_TOKEN_CLAIMS
    assert "at_hash" in flow.id_token  # UAA sends it: ValidateAtHash ran
    assert flow.id_token["sub"] == op.users["buffy"]["sub"]


def test_oidcc_response_type_missing(op, response_mode):
    """``OIDCCResponseTypeMissing`` (oidcc-response-type-missing): a request without response_type must be
    redirected with ``unsupported_response_type`` or ``invalid_request``
    (``CheckErrorFromAuthorizationEndpointErrorInvalidRequestOrUnsupportedResponseType``, after the generic
    error checks) or get an error page. UAA redirects invalid_request: the client and redirect URI are
    valid."""
    _, params, _ = error_flow(op.rp(), op.browser(), response_mode=response_mode, response_type=None)
    assert params["error"] in ("invalid_request", "unsupported_response_type")


def test_oidcc_idtoken_signature(op, response_mode):
    """``OIDCCIdTokenSignature`` (oidcc-idtoken-signature; the suite runs it for dynamic registration only,
    here for the static client): ``EnsureIdTokenContainsKid``, ``EnsureIdTokenSignatureIsRS256`` (the
    default), then the standard checks, the signature verified against the key of that kid in the JWKS.
    OIDCCIdTokenRS256 (oidcc-idtoken-rs256) is the same check for a client registered for RS256."""
    flow = standard_flow(op.rp(), op.browser(), response_mode=response_mode)
    header = jwt.get_unverified_header(flow.tokens["id_token"])
    assert header["alg"] == "RS256" and header["kid"]
    tampered = flow.tokens["id_token"][:-4] + (
        "AAAA" if not flow.tokens["id_token"].endswith("AAAA") else "BBBB"
    )
    with pytest.raises(jwt.InvalidSignatureError):
        check_id_token({**flow.tokens, "id_token": tampered}, op.rp(), flow.request)


def test_oidcc_idtoken_unsigned(op):
    """``OIDCCIdTokenUnsigned`` (oidcc-idtoken-unsigned): skipped by the suite
    (``OIDCCCheckIdTokenSigningAlgValuesSupportedAlgNone``) when discovery's
    id_token_signing_alg_values_supported has no "none", "which is acceptable for certification"; UAA never
    issues an unsigned ID token."""
    assert "none" not in op.config["id_token_signing_alg_values_supported"]


# --- userinfo ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "how",
    ["get", "post-header", "post-body"],
    ids=["userinfo_get", "userinfo_post_header", "userinfo_post_body"],
)
def test_oidcc_userinfo(op, response_mode, how):
    """``OIDCCUserInfoGet`` (oidcc-userinfo-get), ``OIDCCUserInfoPostHeader`` (oidcc-userinfo-post-header),
    ``OIDCCUserInfoPostBody`` (oidcc-userinfo-post-body; a warning only if refused, UAA answers it, RFC 6750
    §2.2): ``AbstractOIDCCUserInfoTest``: ``EnsureHttpStatusCodeIs200``, ``EnsureContentTypeJson``,
    ``ValidateUserInfoStandardClaims``, ``EnsureUserInfoContainsSub``,
    ``VerifyUserInfoAndIdTokenInTokenEndpointSameSub``."""
    rp = op.rp()
    flow = standard_flow(rp, op.browser(), response_mode=response_mode)
    info = check_userinfo(rp.userinfo(flow.tokens["access_token"], how=how), flow.id_token)
    assert info == {"sub": op.users["buffy"]["sub"]}  # scope=openid: sub alone


# --- nonce -----------------------------------------------------------------------------------------------
def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(op, response_mode):
    """``OIDCCEnsureRequestWithoutNonceSucceedsForCodeFlow`` (oidcc-ensure-request-without-nonce-succeeds-
    for-code-flow): the suite leaves out ``AddNonceToAuthorizationEndpointRequest`` and sends no PKCE, and
    stops at ``CheckIfAuthorizationEndpointError``: it wants a code.

    THE ONE EXPECTED DEVIATION (docs/certification.md): a client with require_pkce off may omit PKCE only
    on OpenID requests with a nonce (issue 11 item 1, RFC 9700 §2.1.1: nonce is what then protects the code
    from injection). A request with neither is refused with invalid_request on the redirect URI, with state
    and iss. The same request without nonce but with PKCE succeeds, and its ID token has no nonce
    (``ValidateIdTokenNonce``)."""
    rp = op.rp()
    browser = op.browser()
    request, params, _ = error_flow(rp, browser, response_mode=response_mode, nonce=False)
    assert "nonce" not in request and "code_challenge" not in request
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    request, callback = authorize(
        rp,
        browser,
        response_mode=response_mode,
        nonce=False,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    code = check_success_callback(callback, request, rp)
    tokens = check_token_response(
        rp.token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            }
        )
    )
    assert "nonce" not in check_id_token(tokens, rp, request)


# --- scopes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "scopes",
    [["profile"], ["email"], ["address"], ["phone"], ["address", "email", "phone", "profile"]],
    ids=["scope_profile", "scope_email", "scope_address", "scope_phone", "scope_all"],
)
def test_oidcc_scope(op, response_mode, scopes):
    """``OIDCCScopeProfile``, ``OIDCCScopeEmail``, ``OIDCCScopeAddress``, ``OIDCCScopePhone``,
    ``OIDCCScopeAll`` (oidcc-scope-profile/-email/-address/-phone/-all;
    ``AbstractOIDCCReturnedClaimsServerTest``):
    the scope is in discovery's scopes_supported (else skipped:
    ``OIDCCCheckScopesSupportedContainScopeTest``),
    userinfo answers with ``ValidateUserInfoStandardClaims``, ``EnsureUserInfoContainsSub``, the same sub
    as the ID token, and ``VerifyScopesReturnedInUserInfoClaims`` (every claim of the scope; a warning in the
    suite). For email: ``EnsureIdTokenDoesNotContainEmailForScopeEmail`` and no name (warnings): the claims of
    a scope go to userinfo (OIDC Core §5.4)."""
    assert set(scopes) <= set(op.config["scopes_supported"])
    flow = standard_flow(
        op.rp(), op.browser(), response_mode=response_mode, scope=" ".join(["openid", *scopes])
    )
    expected = set().union(*(SCOPE_CLAIMS[s] for s in scopes))
    assert expected <= set(flow.userinfo), expected - set(flow.userinfo)
    if "email" in scopes:
        assert flow.userinfo["email"] == op.users["buffy"]["email"]
    if scopes == ["email"]:
        assert "name" not in flow.userinfo and "name" not in flow.id_token
    # UAA also puts a granted scope's claims in the ID token (uaa/oauth/claims.py): for scope=email that is
    # the suite's one warning of this module (EnsureIdTokenDoesNotContainEmailForScopeEmail, OIDC Core §5.4).
    assert expected - {"updated_at"} <= set(flow.id_token) | {"updated_at"}


def test_oidcc_alternate_happy_flow(op, response_mode):
    """``OIDCCAlternateHappyFlow`` (oidcc-alternate-happy-flow, once oidcc-ensure-other-scope-order-succeeds):
    ``OIDCCScopeEmail`` with the scope reversed (``ReverseScopeOrderInAuthorizationEndpointRequest``, RFC 6749
    §3.3) and the query parameters in another order
    (``BuildPlainRedirectToAuthorizationEndpointReorderedParams``)."""
    rp = op.rp()
    browser = op.browser()
    request = rp.authorization_request(form_post=response_mode == "form_post", scope="email openid")
    callback = browser.open(
        f"{rp.config['authorization_endpoint']}?{urlencode(sorted(request.items(), reverse=True))}"
    )
    code = check_success_callback(callback, request, rp)
    tokens = check_token_response(rp.exchange(code))
    id_token = check_id_token(tokens, rp, request)
    info = check_userinfo(rp.userinfo(tokens["access_token"]), id_token)
    assert {"email", "email_verified"} <= set(info)
    assert (
        "email" in id_token
    )  # the warning of oidcc-scope-email (EnsureIdTokenDoesNotContainEmailForScopeEmail)


# --- display, prompt, max_age -------------------------------------------------------------------------------
@pytest.mark.parametrize("display", ["page", "popup"], ids=["display_page", "display_popup"])
def test_oidcc_display(op, response_mode, display):
    """``OIDCCDisplayPage`` / ``OIDCCDisplayPopup`` (oidcc-display-page, oidcc-display-popup): display=page or
    popup "must not cause an error at the OP" (OIDC Core §3.1.2.1, §15.1); the sign-in page is shown (a
    screenshot in the suite) and the flow completes. UAA shows the same page for both."""
    flow = standard_flow(op.rp(), op.browser(), response_mode=response_mode, display=display)
    assert flow.callback.pages[0] == "login"


def test_oidcc_prompt_login(op, response_mode):
    """``OIDCCPromptLogin`` (oidcc-prompt-login): a second authorization, a second later, with prompt=login
    must show the sign-in page again (``ExpectSecondLoginPage``);
    ``CheckSecondIdTokenAuthTimeIsLaterIfPresent``."""
    rp, browser = op.rp(), op.browser()
    first = standard_flow(rp, browser, response_mode=response_mode)
    time.sleep(1.1)  # WaitForOneSecond
    second = standard_flow(rp, browser, response_mode=response_mode, prompt="login")
    assert second.callback.pages == ["login"]
    assert second.id_token["auth_time"] > first.id_token["auth_time"]
    assert second.id_token["sub"] == first.id_token["sub"]


def test_oidcc_prompt_none_not_logged_in(op, response_mode):
    """``OIDCCPromptNoneNotLoggedIn`` (oidcc-prompt-none-not-logged-in): with no session, prompt=none (and a
    128-character state: ``requested_state_length``) is an error on the redirect URI
    (``performGenericAuthorizationEndpointErrorResponseValidation``), one that needs a user interface
    (``CheckErrorFromAuthorizationEndpointIsOneThatRequiredAUserInterface``: interaction_required,
    login_required, account_selection_required or consent_required; OIDC Core §3.1.2.6)."""
    state = secrets.token_urlsafe(96)[:128]
    _, params, callback = error_flow(
        op.rp(), op.browser(), response_mode=response_mode, prompt="none", state=state
    )
    assert params["error"] == "login_required"
    assert params["state"] == state and len(state) == 128
    assert callback.pages == []


def test_oidcc_prompt_none_logged_in(op, response_mode):
    """``OIDCCPromptNoneLoggedIn`` (oidcc-prompt-none-logged-in; ``AbstractOIDCCSameAuthTwiceServerTest``):
    after a first authorization, prompt=none is answered without a page;
    ``CheckIdTokenAuthTimeClaimsSameIfPresent``, ``CheckIdTokenSubConsistentForSecondAuthorization``."""
    rp, browser = op.rp(), op.browser()
    first = standard_flow(rp, browser, response_mode=response_mode)
    second = standard_flow(rp, browser, response_mode=response_mode, prompt="none")
    assert second.callback.pages == []
    assert second.id_token["auth_time"] == first.id_token["auth_time"]
    assert second.id_token["sub"] == first.id_token["sub"]


def test_oidcc_max_age_1(op, response_mode):
    """``OIDCCMaxAge1`` (oidcc-max-age-1): two seconds after a first authorization (``WaitFor2Seconds``),
    max_age=1 must show the sign-in page again (``ExpectSecondLoginPage``); the second ID token has
    auth_time (``CheckIdTokenAuthTimeClaimPresentDueToMaxAge``), later than the first
    (``CheckSecondIdTokenAuthTimeIsLaterIfPresent``) and recent
    (``CheckIdTokenAuthTimeIsRecentIfPresent``)."""
    rp, browser = op.rp(), op.browser()
    first = standard_flow(rp, browser, response_mode=response_mode)
    time.sleep(2)
    second = standard_flow(rp, browser, response_mode=response_mode, max_age="1")
    assert second.callback.pages == ["login"]
    assert second.id_token["auth_time"] > first.id_token["auth_time"]
    assert abs(time.time() - second.id_token["auth_time"]) < 60


def test_oidcc_max_age_10000(op, response_mode):
    """``OIDCCMaxAge10000`` (oidcc-max-age-10000): a first authorization with max_age=15000, a second with
    max_age=10000 answered without the sign-in page; auth_time in both
    (``CheckIdTokenAuthTimeClaimPresentDueToMaxAge``), the same, and the same sub."""
    rp, browser = op.rp(), op.browser()
    first = standard_flow(rp, browser, response_mode=response_mode, max_age="15000")
    second = standard_flow(rp, browser, response_mode=response_mode, max_age="10000")
    assert "login" not in second.callback.pages
    assert second.id_token["auth_time"] == first.id_token["auth_time"]
    assert second.id_token["sub"] == first.id_token["sub"]


# --- request parameters the OP must accept ------------------------------------------------------------------
def test_oidcc_ensure_request_with_unknown_parameter_succeeds(op, response_mode):
    """``OIDCCEnsureRequestWithUnknownParameterSucceeds``
    (oidcc-ensure-request-with-unknown-parameter-succeeds):
    extra=foobar (``AddExtraFoobarToAuthorizationEndpointRequest``) is ignored (RFC 6749 §3.1)."""
    standard_flow(op.rp(), op.browser(), response_mode=response_mode, extra="foobar")


def test_oidcc_id_token_hint(op, response_mode):
    """``OIDCCIdTokenHint`` (oidcc-id-token-hint; ``AbstractOIDCCSameAuthTwiceServerTest``): a second
    authorization with prompt=none and id_token_hint = the first ID token
    (``AddIdTokenHintFromFirstLoginToAuthorizationEndpointRequest``) "must return successfully immediately
    without interacting with the user"; same auth_time and sub. (A hint naming another user than the one
    signed in is login_required: tests/uaa/test_oidc_hints.py.)"""
    rp, browser = op.rp(), op.browser()
    first = standard_flow(rp, browser, response_mode=response_mode)
    second = standard_flow(
        rp, browser, response_mode=response_mode, prompt="none", id_token_hint=first.tokens["id_token"]
    )
    assert second.callback.pages == []
    assert second.id_token["auth_time"] == first.id_token["auth_time"]
    assert second.id_token["sub"] == first.id_token["sub"]


def test_oidcc_login_hint(op, response_mode):
    """``OIDCCLoginHint`` (oidcc-login-hint): login_hint (``server.login_hint`` of the configuration, else
    buffy@<issuer host>; ``AddLoginHintFromConfigurationToAuthorizationEndpointRequest``) "must at a minimum
    not result in errors", from a fresh sign-in page. UAA fills the sign-in page's e-mail field with it."""
    browser = op.browser()
    flow = standard_flow(op.rp(), browser, response_mode=response_mode, login_hint=op.users["buffy"]["email"])
    assert flow.callback.pages[0] == "login"
    email = browser.login_pages[0].input("email")
    assert email is not None and email.get("value") == op.users["buffy"]["email"]


def test_oidcc_ui_locales(op, response_mode):
    """``OIDCCUiLocales`` (oidcc-ui-locales): ui_locales (configuration, else "se";
    ``AddUiLocalesFromConfigurationToAuthorizationEndpointRequest``) "must not cause an error at the OP".
    UAA has no translations: the value is accepted and ignored (docs/endpoints.md)."""
    flow = standard_flow(op.rp(), op.browser(), response_mode=response_mode, ui_locales="se")
    assert flow.callback.pages[0] == "login"


def test_oidcc_claims_locales(op, response_mode):
    """``OIDCCClaimsLocales`` (oidcc-claims-locales): claims_locales=se
    (``AddClaimsLocalesSeToAuthorizationEndpointRequest``,
    OIDC Core §5.2, §15.1) "must at a minimum not result in errors"; UAA holds one value per claim."""
    standard_flow(
        op.rp(), op.browser(), response_mode=response_mode, claims_locales="se", scope="openid profile"
    )


def test_oidcc_ensure_request_with_acr_values_succeeds(op, response_mode):
    """``OIDCCEnsureRequestWithAcrValuesSucceeds`` (oidcc-ensure-request-with-acr-values-succeeds): acr_values
    = discovery's acr_values_supported (``OIDCCAddAcrValuesToAuthorizationEndpointRequest``); the
    authorization must succeed, and the ID token's acr SHOULD be one of them
    (``ValidateIdTokenACRClaimAgainstAcrValuesRequest``, a warning in the suite)."""
    supported = op.config["acr_values_supported"]
    flow = standard_flow(op.rp(), op.browser(), response_mode=response_mode, acr_values=" ".join(supported))
    assert flow.id_token["acr"] in supported


# --- codes and redirect URIs --------------------------------------------------------------------------------
def test_oidcc_codereuse(op, response_mode):
    """``OIDCCAuthCodeReuse`` (oidcc-codereuse; ``AbstractOIDCCAuthCodeReuse``): the code a second time, at
    once: ``CheckTokenEndpointHttpStatus400``, ``CheckTokenEndpointReturnedJsonContentType``,
    ``CheckErrorFromTokenEndpointResponseErrorInvalidGrant`` (RFC 6749 §5.2) and a well-formed description."""
    rp = op.rp()
    flow = standard_flow(rp, op.browser(), response_mode=response_mode)
    check_token_error(rp.exchange(flow.code), "invalid_grant")


def test_oidcc_codereuse_30seconds(op, response_mode):
    """``OIDCCAuthCodeReuseAfter30Seconds`` (oidcc-codereuse-30seconds): the code again after
    ``WaitFor30Seconds``: invalid_grant as in oidcc-codereuse, and the access token of its first use no longer
    works (``EnsureHttpStatusCodeIs4xx`` at userinfo, RFC 6749 §4.1.2: SHOULD revoke)."""
    rp = op.rp()
    flow = standard_flow(rp, op.browser(), response_mode=response_mode)
    time.sleep(30)
    check_token_error(rp.exchange(flow.code), "invalid_grant")
    answer = rp.userinfo(flow.tokens["access_token"])
    assert 400 <= answer.status_code < 500
    assert answer.status_code == 401


def test_oidcc_ensure_registered_redirect_uri(op, response_mode):
    """``OIDCCEnsureRegisteredRedirectUri`` (oidcc-ensure-registered-redirect-uri): a redirect URI with a
    random
    path appended (``CreateBadRedirectUriByAppending``) gets the OP's error page
    (``ExpectRedirectUriErrorPage``),
    never a redirect to it or to the registered one (RFC 6749 §4.1.2.1, §10.15)."""
    rp = op.rp()
    bad = f"{REDIRECT_URI}/{secrets.token_hex(8)}"
    request = rp.authorization_request(form_post=response_mode == "form_post", redirect_uri=bad)
    page = op.browser().open(rp.url(request))
    assert isinstance(page, ErrorPage), page
    assert page.status == 400 and page.pages == []
    assert bad not in page.html and "code=" not in page.html


def test_oidcc_ensure_post_request_succeeds(op, response_mode):
    """``OIDCCEnsurePostRequestSucceeds`` (oidcc-ensure-post-request-succeeds): the authorization request by
    POST (OIDC Core §3.1.2.1: the endpoint MUST support GET and POST); the redirect URI is called."""
    standard_flow(op.rp(), op.browser(), response_mode=response_mode, method="POST")


def test_oidcc_server_client_secret_post(op, response_mode):
    """``OIDCCServerTestClientSecretPost`` (oidcc-server-client-secret-post): the happy flow with the
    client_secret_post client (``AddFormBasedClientSecretToRequest``), which discovery must list
    (``EnsureServerConfigurationSupportsClientSecretPost``)."""
    assert "client_secret_post" in op.config["token_endpoint_auth_methods_supported"]
    assert "client_secret_basic" in op.config["token_endpoint_auth_methods_supported"]
    rp = op.rp(auth="client_secret_post")
    flow = standard_flow(rp, op.browser(), response_mode=response_mode)
    assert flow.id_token["aud"] == rp.client_id or rp.client_id in flow.id_token["aud"]


# --- request objects ----------------------------------------------------------------------------------------
def _unsigned_request_object(request: dict[str, str]) -> str:
    """``ConvertAuthorizationEndpointRequestToRequestObject`` +
    ``SerializeRequestObjectWithNullAlgorithm``."""
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(request).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}."


def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(op, response_mode):
    """``OIDCCUnsignedRequestObjectSupportedCorrectlyOrRejectedAsUnsupported``
    (oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported;
    ``AbstractOIDCCRequestObjectServerTest``): an unsigned request object by value
    (``BuildRequestObjectByValueRedirectToAuthorizationEndpoint``) is processed or answered
    request_not_supported (then the suite skips the rest). UAA: request_not_supported, and discovery says
    request_parameter_supported false (``CheckDiscEndpointRequestParameterSupported``)."""
    rp = op.rp()
    base = rp.authorization_request(form_post=response_mode == "form_post")
    outer = {k: base[k] for k in ("client_id", "redirect_uri", "response_type", "scope", "state")}
    if response_mode == "form_post":
        outer["response_mode"] = "form_post"
    outer["request"] = _unsigned_request_object(base)
    callback = op.browser().open(rp.url(outer))
    params = check_callback(callback, outer, rp)
    assert params["error"] == "request_not_supported"
    assert op.config["request_parameter_supported"] is False


def test_oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported(op, response_mode):
    """``OIDCCRequestUriUnsignedSupportedCorrectlyOrRejectedAsUnsupported`` (the suite runs it for dynamic
    registration only): a request_uri is processed or answered request_uri_not_supported. UAA:
    request_uri_not_supported, and discovery says request_uri_parameter_supported false."""
    rp = op.rp()
    request = rp.authorization_request(
        form_post=response_mode == "form_post", request_uri="https://rp.conformance.example/ro.jwt"
    )
    params = check_callback(op.browser().open(rp.url(request)), request, rp)
    assert params["error"] == "request_uri_not_supported"
    assert op.config["request_uri_parameter_supported"] is False


def test_oidcc_ensure_request_object_with_redirect_uri(op, response_mode):
    """``OIDCCEnsureRequestObjectWithRedirectUri`` (oidcc-ensure-request-object-with-redirect-uri): the
    request
    object holds the registered redirect URI, the query an invalid one
    (``AddInvalidRedirectUriToAuthorizationRequest``:
    path + "_invalid"). The OP uses the object's, or shows the invalid redirect_uri error page
    (``ExpectRedirectUriErrorPage``); a request_not_supported sent to the registered (default) URI fails
    (``EnsureOPDoesNotUseDefaultRedirectUriInCaseOfInvalidRedirectUri``). UAA shows the error page."""
    rp = op.rp()
    base = rp.authorization_request(form_post=response_mode == "form_post")
    outer = {**{k: base[k] for k in ("client_id", "response_type", "scope", "state")}}
    outer["redirect_uri"] = REDIRECT_URI + "_invalid"
    outer["request"] = _unsigned_request_object(base)
    page = op.browser().open(rp.url(outer))
    assert isinstance(page, ErrorPage), page
    assert page.status == 400


# --- claims, refresh, PKCE ----------------------------------------------------------------------------------
def test_oidcc_claims_essential(op, response_mode):
    """``OIDCCClaimsEssential`` (oidcc-claims-essential): claims={"userinfo": {"name": {"essential": true}}}
    (``AddUserInfoEssentialNameClaimToAuthorizationEndpointRequest``, OIDC Core §5.5) with scope=openid must
    succeed; ``EnsureUserInfoContainsName`` and ``EnsureIdTokenDoesNotContainName`` (warnings)."""
    claims = json.dumps({"userinfo": {"name": {"essential": True}}})
    rp, browser = op.rp(), op.browser(op.new_user())  # a user who has not consented to the client yet
    flow = standard_flow(rp, browser, response_mode=response_mode, claims=claims)
    assert "consent" in flow.callback.pages  # it lists name, asked for outside the scopes
    assert flow.userinfo["name"].startswith("Buffy")
    assert "name" not in flow.id_token
    # Once the consent to scope=openid is remembered, the page is skipped and a claim outside the scopes is
    # dropped, never released unseen (uaa/oauth/claims.py): the suite's warning (EnsureUserInfoContainsName)
    # when this module runs after another has remembered the consent.
    again = standard_flow(rp, browser, response_mode=response_mode, claims=claims)
    assert "consent" not in again.callback.pages and "name" not in again.userinfo


def test_oidcc_refresh_token(op, response_mode):
    """``OIDCCRefreshToken`` (oidcc-refresh-token; ``AbstractOIDCCMultipleClient``): scope=openid
    offline_access
    (discovery lists it: ``SetScopeInClientConfigurationToOpenIdOfflineAccessIfServerSupportsOfflineAccess``)
    with prompt=consent (``AddPromptConsentToAuthorizationEndpointRequestIfScopeContainsOfflineAccess``, OIDC
    Core §11); ``EnsureServerConfigurationSupportsRefreshToken``,
    ``EnsureRefreshTokenContainsAllowedCharactersOnly``;
    ``RefreshTokenRequestSteps`` (with scope: 200, JSON, no-store, Bearer, a new access token); then, with a
    second client, its refresh token presented by the first client is invalid_grant
    (``RefreshTokenRequestExpectingErrorSteps``)."""
    assert "offline_access" in op.config["scopes_supported"]
    assert "refresh_token" in op.config["grant_types_supported"]
    tokens = {}
    for name, rp in (("first", op.rp()), ("second", op.rp(client=op.post))):
        flow = standard_flow(
            rp, op.browser(), response_mode=response_mode, scope="openid offline_access", prompt="consent"
        )
        refresh = flow.tokens["refresh_token"]
        assert all(0x20 <= ord(c) <= 0x7E for c in refresh)
        time.sleep(1)  # WaitForOneSecond
        refreshed = check_token_response(
            rp.token(
                {"grant_type": "refresh_token", "refresh_token": refresh, "scope": "openid offline_access"}
            )
        )
        assert refreshed["access_token"] != flow.tokens["access_token"]
        check_userinfo(rp.userinfo(refreshed["access_token"]), flow.id_token)
        tokens[name] = refreshed.get("refresh_token", refresh)
    check_token_error(
        op.rp().token({"grant_type": "refresh_token", "refresh_token": tokens["second"]}), "invalid_grant"
    )


def test_oidcc_ensure_request_with_valid_pkce_succeeds(op, response_mode):
    """``OIDCCEnsureRequestWithValidPkceSucceeds`` (oidcc-ensure-request-with-valid-pkce-succeeds): S256 PKCE
    (``SetupPkceAndAddToAuthorizationRequest``) and the verifier at the token endpoint
    (``AddCodeVerifierToTokenEndpointRequest``, RFC 7636 §4.5) must succeed."""
    rp = op.rp()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    request, callback = authorize(
        rp, op.browser(), response_mode=response_mode, code_challenge=challenge, code_challenge_method="S256"
    )
    code = check_success_callback(callback, request, rp)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    tokens = check_token_response(rp.token(form))
    check_userinfo(rp.userinfo(tokens["access_token"]), check_id_token(tokens, rp, request))


# --- the Dynamic OP plan's redirect URI modules, with a static client ---------------------------------------
# OIDCCDynamicTestPlan runs these with dynamic registration only (UAA has none); the client registered here
# has the two redirect URIs the modules register (AddMultipleRedirectUriToDynamicRegistrationRequest,
# AddQueryToRedirectUri).
def test_oidcc_redirect_uri_query_ok(op, response_mode):
    """``OIDCCRedirectUriQueryOK`` (oidcc-redirect-uri-query-OK): a redirect URI with a query component
    (``AddQueryToRedirectUri``: ?bar=foo), registered so: the flow completes, and the response keeps the
    registered query (OAuth 2.0 §3.1.2: "MUST retain the query component")."""
    rp = op.rp(client=op.query, redirect_uri=REDIRECT_URI_WITH_QUERY)
    flow = standard_flow(rp, op.browser(), response_mode=response_mode)
    assert flow.callback.query.get("bar") == "foo"


def test_oidcc_redirect_uri_query_mismatch(op, response_mode):
    """``OIDCCRedirectUriQueryMismatch`` (oidcc-redirect-uri-query-mismatch): ?foo=bar instead of the
    registered ?bar=foo (``ReplaceRedirectUriQueryInAuthorizationRequest``): the error page
    (``ExpectRedirectUriErrorPage``), never the registered URI."""
    rp = op.rp(client=op.query, redirect_uri=f"{REDIRECT_URI}?foo=bar")
    page = op.browser().open(rp.url(rp.authorization_request(form_post=response_mode == "form_post")))
    assert isinstance(page, ErrorPage) and page.status == 400, page


def test_oidcc_redirect_uri_query_added(op, response_mode):
    """``OIDCCRedirectUriQueryAdded`` (oidcc-redirect-uri-query-added): a query added to a redirect URI
    registered without one (``AddQueryToRedirectUriInAuthorizationRequest``): the error page."""
    rp = op.rp(redirect_uri=f"{REDIRECT_URI}?foo=bar")
    page = op.browser().open(rp.url(rp.authorization_request(form_post=response_mode == "form_post")))
    assert isinstance(page, ErrorPage) and page.status == 400, page


def test_oidcc_ensure_redirect_uri_in_authorization_request(op, response_mode):
    """``OIDCCEnsureRedirectUriInAuthorizationRequest`` (oidcc-ensure-redirect-uri-in-authorization-request):
    a client with two redirect URIs, a request without redirect_uri
    (``RemoveRedirectUriFromAuthorizationEndpointRequest``):
    the error page (``ExpectRedirectUriMissingErrorPage``); a redirect is
    ``AuthorizationEndpointRedirectedBackUnexpectedly``.
    UAA requires redirect_uri of every request (OIDC Core §3.1.2.1), one URI registered or several."""
    rp = op.rp(client=op.query)
    request = rp.authorization_request(form_post=response_mode == "form_post", redirect_uri=None)
    assert "redirect_uri" not in request
    page = op.browser().open(rp.url(request))
    assert isinstance(page, ErrorPage) and page.status == 400, page
