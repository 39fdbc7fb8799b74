"""Discovery tells the truth: every member is a registered name, and every advertised value is driven here.

RFC 8414 §2: "Authorization servers MAY provide metadata values" and clients act on them; OIDC Discovery 1.0
§3 likewise. A value that is listed but does not work sends a client down a path that fails, and a refusal
the server makes without listing the alternative is worse: the client cannot tell. The attacker here is
no person but drift: a value added to uaa/oauth/discovery.py (a scope, a response mode, an algorithm)
without the behaviour behind it, or a behaviour removed while the value stays. Each test reads the served
document at run time and drives every value in it, so either change fails a test here.

- Names: every member is in the IANA "OAuth Authorization Server Metadata" registry (``REGISTERED``, with
  the specification that defines each name), and each one has a truth test in this module (``CHECKED``).
- Values: each advertised value works at the endpoint it is about, and the values of the same registry
  that are not advertised are refused with the RFC's error code.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client as HttpClient
from jwcrypto import jwk, jwt

from tests.conftest import LOGIN, REDIRECT_URI, RegisteredClient, sign_in
from tests.factories import PASSWORD, UserFactory
from tests.oauth_client import (
    AuthorizationRequest,
    authorize,
    exchange_code,
    form_post,
    query_of,
    verify_with_jwks,
)
from tests.uaa.client_assertions import KEY_TYPES, assertion, new_key, public_set
from tests.uaa.endpoints import unverified_claims
from tests.uaa.live import BIN, ROOT, base_env
from uaa.checks import ACCESS_TOKEN_ALGORITHMS
from uaa.oauth.models import AuthorizationCode, Client
from uaa.oauth.rfc7523 import ASSERTION_TYPE
from uaa.oauth.scopes import USER_SCOPES

OAUTH = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"
DOCUMENTS = [OAUTH, OIDC]
EXTRA_SCOPE = "reports:read"  # an operator's UAA_EXTRA_SCOPES entry, so the "extra scope" rows run too

# The IANA "OAuth Authorization Server Metadata" registry (https://www.iana.org/assignments/oauth-parameters,
# established by RFC 8414 §7.1): every name UAA may serve, and the specification that registered it.
# A name missing here is not registered and is not served (access_token_signing_alg_values_supported, which
# UAA served until issue 11, is in no registry: RFC 9068 defines no metadata).
REGISTERED = {
    "issuer": "RFC 8414 §2",
    "authorization_endpoint": "RFC 8414 §2",
    "token_endpoint": "RFC 8414 §2",
    "jwks_uri": "RFC 8414 §2",
    "registration_endpoint": "RFC 8414 §2",
    "scopes_supported": "RFC 8414 §2",
    "response_types_supported": "RFC 8414 §2",
    "response_modes_supported": "RFC 8414 §2",
    "grant_types_supported": "RFC 8414 §2",
    "token_endpoint_auth_methods_supported": "RFC 8414 §2",
    "token_endpoint_auth_signing_alg_values_supported": "RFC 8414 §2",
    "service_documentation": "RFC 8414 §2",
    "ui_locales_supported": "RFC 8414 §2",
    "op_policy_uri": "RFC 8414 §2",
    "op_tos_uri": "RFC 8414 §2",
    "revocation_endpoint": "RFC 8414 §2",
    "revocation_endpoint_auth_methods_supported": "RFC 8414 §2",
    "revocation_endpoint_auth_signing_alg_values_supported": "RFC 8414 §2",
    "introspection_endpoint": "RFC 8414 §2",
    "introspection_endpoint_auth_methods_supported": "RFC 8414 §2",
    "introspection_endpoint_auth_signing_alg_values_supported": "RFC 8414 §2",
    "code_challenge_methods_supported": "RFC 8414 §2",
    "signed_metadata": "RFC 8414 §2.1",
    # Registered by RFC 8414 §7.1.2 from OpenID Connect Discovery 1.0 §3.
    "userinfo_endpoint": "OIDC Discovery 1.0 §3",
    "acr_values_supported": "OIDC Discovery 1.0 §3",
    "subject_types_supported": "OIDC Discovery 1.0 §3",
    "id_token_signing_alg_values_supported": "OIDC Discovery 1.0 §3",
    "id_token_encryption_alg_values_supported": "OIDC Discovery 1.0 §3",
    "id_token_encryption_enc_values_supported": "OIDC Discovery 1.0 §3",
    "userinfo_signing_alg_values_supported": "OIDC Discovery 1.0 §3",
    "request_object_signing_alg_values_supported": "OIDC Discovery 1.0 §3",
    "display_values_supported": "OIDC Discovery 1.0 §3",
    "claim_types_supported": "OIDC Discovery 1.0 §3",
    "claims_supported": "OIDC Discovery 1.0 §3",
    "claims_locales_supported": "OIDC Discovery 1.0 §3",
    "claims_parameter_supported": "OIDC Discovery 1.0 §3",
    "request_parameter_supported": "OIDC Discovery 1.0 §3",
    "request_uri_parameter_supported": "OIDC Discovery 1.0 §3",
    "require_request_uri_registration": "OIDC Discovery 1.0 §3",
    # Later registrations.
    "end_session_endpoint": "OIDC RP-Initiated Logout 1.0 §2.1",
    "check_session_iframe": "OIDC Session Management 1.0, OpenID Provider Discovery Metadata",
    "frontchannel_logout_supported": "OIDC Front-Channel Logout 1.0 §3",
    "frontchannel_logout_session_supported": "OIDC Front-Channel Logout 1.0 §3",
    "backchannel_logout_supported": "OIDC Back-Channel Logout 1.0 §2.1",
    "backchannel_logout_session_supported": "OIDC Back-Channel Logout 1.0 §2.1",
    "prompt_values_supported": "Initiating User Registration via OpenID Connect 1.0 §4.2",
    "authorization_response_iss_parameter_supported": "RFC 9207 §3",
    "device_authorization_endpoint": "RFC 8628 §4",
    "tls_client_certificate_bound_access_tokens": "RFC 8705 §3.3",
    "mtls_endpoint_aliases": "RFC 8705 §5",
    "require_signed_request_object": "RFC 9101 §10.5",
    "pushed_authorization_request_endpoint": "RFC 9126 §5",
    "require_pushed_authorization_requests": "RFC 9126 §5",
    "dpop_signing_alg_values_supported": "RFC 9449 §5.1",
    "authorization_details_types_supported": "RFC 9396 §10",
    "introspection_signing_alg_values_supported": "RFC 9701 §7",
}
# Members OpenID Connect Discovery adds to RFC 8414's (OIDC Discovery §3): only the OpenID document has them.
OIDC_ONLY = {
    "subject_types_supported",
    "acr_values_supported",
    "id_token_signing_alg_values_supported",
    "claims_supported",
    "prompt_values_supported",
    "claims_parameter_supported",
    "request_parameter_supported",
    "request_uri_parameter_supported",
    "frontchannel_logout_supported",
    "backchannel_logout_supported",
}
# Registered values of the value registries the advertised lists draw from, so that what is NOT advertised
# is driven too: IANA "OAuth Authorization Endpoint Response Types"; response modes of OAuth 2.0 Multiple
# Response Type Encoding Practices §2.1, Form Post Response Mode §2 and JARM §2.3; grant types of RFC 6749,
# RFC 7523, RFC 8628, RFC 8693 (and RFC 6749's implicit, which some clients send); IANA "PKCE Code
# Challenge Methods"; OIDC Core §3.1.2.1 prompt values (and Prompt Create's create).
RESPONSE_TYPES = [
    "code",
    "token",
    "id_token",
    "code token",
    "code id_token",
    "id_token token",
    "code id_token token",
    "none",
]
RESPONSE_MODES = ["query", "fragment", "form_post", "query.jwt", "fragment.jwt", "form_post.jwt", "jwt"]
GRANT_TYPES = [
    "authorization_code",
    "implicit",
    "password",
    "client_credentials",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:saml2-bearer",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
]
CODE_CHALLENGE_METHODS = ["plain", "S256"]
PROMPTS = ["none", "login", "consent", "select_account", "create"]
FULL_PROFILE = {
    "middle_name": "Augusta",
    "nickname": "Ada",
    "preferred_username": "ada",
    "profile": "https://example.com/ada",
    "picture": "https://example.com/ada.png",
    "website": "https://ada.example.com",
    "gender": "female",
    "birthdate": "1815-12-10",
    "zoneinfo": "Europe/London",
    "locale": "en-GB",
    "street_address": "12 St James's Square",
    "locality": "London",
    "region": "Westminster",
    "postal_code": "SW1Y 4JH",
    "country": "United Kingdom",
    "phone_number": "+442079460000",
    "phone_number_verified": True,
}


# --- helpers ------------------------------------------------------------------------------------------
def served(path: str = OIDC) -> dict[str, Any]:
    response = HttpClient().get(path)
    assert response.status_code == HTTPStatus.OK
    return response.json()


def local(url: str) -> str:
    """The path of an advertised URL on this server (the test client speaks to the issuer's host)."""
    return urlsplit(url).path


@pytest.fixture(autouse=True)
def _an_extra_scope(settings: Any) -> None:
    settings.UAA_SCOPES = {**settings.UAA_SCOPES, EXTRA_SCOPE: "Read reports"}


@pytest.fixture
def document(db: Any) -> dict[str, Any]:
    return served(OIDC)


def _request(registered: RegisteredClient, **kwargs: Any) -> AuthorizationRequest:
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, **kwargs)


def _auth(registered: RegisteredClient) -> str | None:
    return registered.basic if registered.client.client_type == Client.CLIENT_CONFIDENTIAL else None


def _code_flow(http: HttpClient, registered: RegisteredClient, **kwargs: Any) -> dict[str, Any]:
    """The code flow through the real pages; the token response, asserted 200."""
    request = _request(registered, **kwargs)
    params = authorize(http, request)
    assert "code" in params, params
    response = exchange_code(HttpClient(), code=params["code"], request=request, auth=_auth(registered))
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


def _refused_on_redirect(http: HttpClient, asked: AuthorizationRequest, **overrides: Any) -> dict[str, str]:
    """The error of a refused request: on the registered redirect URI's query, with state, without a code."""
    response = http.get(asked.url(**overrides))
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    location = response["Location"]
    assert location.startswith(REDIRECT_URI + "?") and "#" not in location, location
    params = query_of(location)
    assert "code" not in params and "access_token" not in params and "id_token" not in params
    assert params["state"] == asked.state
    return params


# --- names --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCUMENTS)
def test_every_member_is_a_registered_metadata_name(db, path):
    """RFC 8414 §2 / §7.1: metadata names come from the IANA registry; a name of UAA's own would be
    guessed at by clients and could clash with a later registration."""
    unregistered = set(served(path)) - set(REGISTERED)
    assert not unregistered, f"not in the IANA OAuth Authorization Server Metadata registry: {unregistered}"


def test_access_token_signing_alg_values_supported_is_not_served(db):
    """No registry holds access_token_signing_alg_values_supported (RFC 9068 defines no metadata); a
    resource server takes the algorithm from the JWK its kid names (docs/integrating-a-resource-server.md)."""
    for path in DOCUMENTS:
        assert "access_token_signing_alg_values_supported" not in served(path)


def test_every_member_has_a_truth_test_here(document):
    """A member added to discovery without a test driving its values fails here."""
    untested = set(document) - set(CHECKED)
    assert not untested, f"members without a truth test in {__name__}: {untested}"
    for test in CHECKED.values():
        assert globals()[test.__name__] is test and test.__name__.startswith("test_")


# --- the documents and the issuer ---------------------------------------------------------------------
def test_the_openid_document_is_the_rfc8414_document_plus_the_oidc_members(db):
    """OIDC Discovery §3 and RFC 8414 §2 describe one server: every RFC 8414 member has the same value in
    both, and the OpenID document adds only OpenID Connect members."""
    oauth, oidc = served(OAUTH), served(OIDC)
    assert {name: oidc.get(name) for name in oauth} == oauth
    assert set(oidc) - set(oauth) == OIDC_ONLY & set(oidc)
    assert not OIDC_ONLY & set(oauth)


def test_the_issuer_is_the_configured_issuer_without_a_trailing_slash(document, settings):
    """RFC 8414 §3.3 / OIDC Discovery §4.3: the issuer MUST be identical to the issuer identifier, whose
    well-known URL the document was fetched from (§3: "/.well-known/..." after the host); every endpoint
    is under it, and neither the issuer nor any URL has a doubled or trailing slash that would make an
    exact comparison fail."""
    issuer = document["issuer"]
    assert issuer == settings.UAA_ISSUER
    assert not issuer.endswith("/")
    parts = urlsplit(issuer)
    assert parts.scheme in ("https", "http") and not parts.query and not parts.fragment
    for name, value in document.items():
        if name.endswith(("_endpoint", "_uri")):
            assert value.startswith(issuer + "/") and "//" not in value.removeprefix(parts.scheme + "://")


DOCUMENTS_AS_CONFIGURED = """
import json, django
django.setup()
from uaa.oauth.discovery import authorization_server_metadata, openid_configuration
print(json.dumps([authorization_server_metadata(), openid_configuration()]))
"""


@pytest.mark.parametrize(
    ("configured", "issuer"),
    [
        ("https://id.example.com/", "https://id.example.com"),
        ("https://id.example.com//", "https://id.example.com"),
        ("https://id.example.com/uaa/", "https://id.example.com/uaa"),
    ],
)
def test_an_issuer_configured_with_a_trailing_slash_is_served_without_it(tmp_path, configured, issuer):
    """RFC 8414 §3.3 / OIDC Discovery §4.3: clients compare the issuer exactly (and with every token's iss);
    an operator's UAA_ISSUER with a trailing slash is published without it, and no endpoint URL gets a
    doubled slash. Run in a process of its own: the settings module reads the environment once."""
    env = {**base_env(tmp_path), "DJANGO_SETTINGS_MODULE": "uaa.settings", "UAA_ISSUER": configured}
    result = subprocess.run(
        [str(BIN / "python"), "-c", DOCUMENTS_AS_CONFIGURED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for document in json.loads(result.stdout.splitlines()[-1]):
        assert document["issuer"] == issuer
        for name, value in document.items():
            if name.endswith(("_endpoint", "_uri")):
                assert value.startswith(issuer + "/") and "//" not in value.removeprefix("https://"), value


# --- endpoints ----------------------------------------------------------------------------------------
def test_authorization_endpoint_answers_an_authorization_request(document, browser, confidential_client):
    """RFC 6749 §3.1 at the advertised URL: a code, on the registered redirect URI."""
    request = _request(confidential_client)
    url = request.url().replace("/oauth/authorize", local(document["authorization_endpoint"]), 1)
    response = browser.get(url)
    if response.status_code == HTTPStatus.OK:  # the consent page
        form = response.context["form"]
        data = {name: form.initial.get(name) or "" for name in form.fields} | {"allow": "Authorize"}
        response = browser.post(local(document["authorization_endpoint"]), data)
    assert response.status_code == HTTPStatus.FOUND
    assert "code" in query_of(response["Location"])


def test_token_endpoint_issues_tokens(document, service_client):
    """RFC 6749 §3.2 at the advertised URL."""
    response = form_post(
        HttpClient(),
        local(document["token_endpoint"]),
        {"grant_type": "client_credentials"},
        auth=service_client.basic,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["access_token"]


def test_revocation_and_introspection_endpoints_act_on_a_token(document, service_client):
    """RFC 7009 §2 and RFC 7662 §2 at the advertised URLs: a revoked token is then inactive."""
    token = token_for(service_client)
    http = HttpClient()
    introspect = local(document["introspection_endpoint"])
    before = form_post(http, introspect, {"token": token}, auth=service_client.basic)
    assert before.status_code == HTTPStatus.OK and before.json()["active"] is True
    revoked = form_post(
        http, local(document["revocation_endpoint"]), {"token": token}, auth=service_client.basic
    )
    assert revoked.status_code == HTTPStatus.OK
    after = form_post(http, introspect, {"token": token}, auth=service_client.basic)
    assert after.json() == {"active": False}


def test_userinfo_endpoint_answers_with_the_subject(document, browser, confidential_client, user):
    """OIDC Core §5.3 at the advertised URL, by GET and by POST."""
    tokens = _code_flow(browser, confidential_client)
    bearer = f"Bearer {tokens['access_token']}"
    url = local(document["userinfo_endpoint"])
    for response in (
        HttpClient().get(url, HTTP_AUTHORIZATION=bearer),
        form_post(HttpClient(), url, {}, auth=bearer),
    ):
        assert response.status_code == HTTPStatus.OK, response.content
        assert response.json()["sub"] == str(user.pk)


@pytest.mark.parametrize("alg", ACCESS_TOKEN_ALGORITHMS)
def test_jwks_uri_holds_the_keys_tokens_are_signed_with(document, service_client, settings, alg):
    """RFC 8414 §2 jwks_uri: an access token signed with each algorithm UAA_ACCESS_TOKEN_ALG may be verifies
    against the advertised key set, with the key its kid names, whose own alg is the token's (RFC 7517
    §4.4): what a resource server relies on, there being no registered metadata for that algorithm."""
    settings.UAA_ACCESS_TOKEN_ALG = alg
    keys = HttpClient().get(local(document["jwks_uri"])).json()
    token = token_for(service_client)
    header, _ = verify_with_jwks(token, keys)
    (key,) = [key for key in keys["keys"] if key["kid"] == header["kid"]]
    assert header["typ"] == "at+jwt" and header["alg"] == key["alg"] == alg


def test_end_session_endpoint_signs_the_user_out(document, browser, confidential_client):
    """OIDC RP-Initiated Logout §2, §3 at the advertised URL: with the ID token as id_token_hint, the
    session ends and the user is sent to the registered post_logout_redirect_uri; prompt=none then is
    login_required."""
    tokens = _code_flow(browser, confidential_client)
    bye = "https://rp.example.com/bye"  # the client's registered post_logout_redirect_uri (conftest)
    query = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": bye}
    response = browser.get(local(document["end_session_endpoint"]), query)
    assert response.status_code == HTTPStatus.FOUND and response["Location"] == bye, response
    params = query_of(browser.get(_request(confidential_client).url(prompt="none"))["Location"])
    assert params["error"] == "login_required"


# --- authorization request values -------------------------------------------------------------------
def _client_credentials(registered: RegisteredClient, scope: str) -> Any:
    data = {"grant_type": "client_credentials", "scope": scope}
    return form_post(HttpClient(), "/oauth/token", data, auth=registered.basic)


def _service_for(
    client_factory: Callable[..., RegisteredClient], scopes: list[str] | None
) -> RegisteredClient:
    return client_factory(
        name="svc", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[], allowed_scopes=scopes
    )


def test_every_advertised_scope_is_granted_to_a_client_allowed_it(
    document, browser, client_factory, settings
):
    """RFC 8414 §2 scopes_supported, RFC 6749 §3.3: each advertised scope is granted (in the token response's
    scope) to a client that may have it (uaa/oauth/scopes.py): an OpenID Connect user scope to every
    authorization-code client; an extra scope to a client registered for it, by the code flow and by
    client credentials; an admin API scope (UAA_ADMIN_SCOPES) to a client-credentials client registered
    for it."""
    admin = set(getattr(settings, "UAA_ADMIN_SCOPES", {}))
    for scope in document["scopes_supported"]:
        if scope in USER_SCOPES:
            tokens = _code_flow(browser, client_factory(), scope=" ".join(dict.fromkeys(["openid", scope])))
            assert scope in tokens["scope"].split(), (scope, tokens["scope"])
            if scope == "offline_access":  # OIDC Core §11: what a refresh token is for
                assert tokens.get("refresh_token"), tokens
            continue
        if scope not in admin:
            tokens = _code_flow(browser, client_factory(allowed_scopes=[scope]), scope=f"openid {scope}")
            assert scope in tokens["scope"].split(), (scope, tokens["scope"])
        response = _client_credentials(_service_for(client_factory, [scope]), scope)
        assert response.status_code == HTTPStatus.OK, (scope, response.content)
        assert response.json()["scope"].split() == [scope]


def test_an_advertised_scope_is_refused_to_a_client_not_allowed_it(document, browser, client_factory):
    """RFC 6749 §3.3, §4.1.2.1, §5.2 invalid_scope: a scope other than the user scopes to a client not
    registered for it, at either endpoint; a user scope to a client acting for itself (there is no user:
    OIDC Core §3.1.2.1)."""
    unregistered_service = _service_for(client_factory, None)
    for scope in document["scopes_supported"]:
        response = _client_credentials(unregistered_service, scope)
        assert response.status_code == HTTPStatus.BAD_REQUEST, (scope, response.content)
        assert response.json()["error"] == "invalid_scope", scope
        if scope not in USER_SCOPES:
            params = _refused_on_redirect(browser, _request(client_factory(), scope=f"openid {scope}"))
            assert params["error"] == "invalid_scope", (scope, params)
    assert not AuthorizationCode.objects.exists()


def test_every_advertised_response_type_is_answered(document, browser, confidential_client):
    """RFC 8414 §2 response_types_supported: each works, and what it returns is what it names."""
    returns = {"code": {"code"}}
    for response_type in document["response_types_supported"]:
        assert response_type in returns, f"no behaviour check for response_type={response_type}"
        params = authorize(browser, _request(confidential_client), response_type=response_type)
        assert returns[response_type] <= set(params), (response_type, params)


def test_every_response_type_not_advertised_is_unsupported_response_type(
    document, browser, confidential_client
):
    """RFC 6749 §4.1.2.1 unsupported_response_type, redirected in the query, never a token in a fragment:
    every registered response type the document does not list."""
    for response_type in set(RESPONSE_TYPES) - set(document["response_types_supported"]):
        params = _refused_on_redirect(browser, _request(confidential_client), response_type=response_type)
        assert params["error"] == "unsupported_response_type", (response_type, params)


def _query_mode(browser: HttpClient, registered: RegisteredClient) -> None:
    params = authorize(browser, _request(registered), response_mode="query")
    assert "code" in params


def _form_post_mode(browser: HttpClient, registered: RegisteredClient) -> None:
    request = _request(registered)
    authorize(browser, request)  # consent once, so the next request is answered at once
    response = browser.get(request.url(response_mode="form_post"))
    assert response.status_code == HTTPStatus.OK, response.content[:300]
    page = response.content.decode()
    assert f'action="{REDIRECT_URI}"' in page and 'method="post"' in page.lower()
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    assert fields.get("code") and fields["state"] == request.state, fields


MODE_CHECKS: dict[str, Callable[[HttpClient, RegisteredClient], None]] = {
    "query": _query_mode,
    "form_post": _form_post_mode,
}


def test_every_advertised_response_mode_delivers_the_response(document, browser, confidential_client):
    """RFC 8414 §2 response_modes_supported: query puts the code in the redirect's query (Multiple Response
    Type Encoding Practices §2.1), form_post in an auto-submitted form (Form Post Response Mode §2)."""
    for mode in document["response_modes_supported"]:
        assert mode in MODE_CHECKS, f"no behaviour check for response_mode={mode}"
        MODE_CHECKS[mode](browser, confidential_client)


def test_every_response_mode_not_advertised_is_refused(document, browser, confidential_client):
    """Multiple Response Type Encoding Practices §2.1: fragment is never for the code flow; the modes UAA
    does not list are invalid_request on the redirect's query."""
    for mode in set(RESPONSE_MODES) - set(document["response_modes_supported"]):
        params = _refused_on_redirect(browser, _request(confidential_client), response_mode=mode)
        assert params["error"] == "invalid_request", (mode, params)


def test_every_advertised_code_challenge_method_is_accepted(document, browser, confidential_client):
    """RFC 7636 §4.3, RFC 8414 §2 code_challenge_methods_supported: the code is redeemed with its verifier."""
    for method in document["code_challenge_methods_supported"]:
        assert method == "S256", f"no behaviour check for code_challenge_method={method}"
        request = _request(confidential_client)
        params = authorize(browser, request, code_challenge_method=method)
        response = exchange_code(
            HttpClient(), code=params["code"], request=request, auth=confidential_client.basic
        )
        assert response.status_code == HTTPStatus.OK, response.content


def test_every_code_challenge_method_not_advertised_is_refused(document, browser, confidential_client):
    """RFC 7636 §4.4.1: a method the server does not support is invalid_request (RFC 9700 §2.1.1: plain)."""
    for method in set(CODE_CHALLENGE_METHODS) - set(document["code_challenge_methods_supported"]):
        request = _request(confidential_client)
        params = _refused_on_redirect(
            browser, request, code_challenge=request.verifier, code_challenge_method=method
        )
        assert params["error"] == "invalid_request", (method, params)


def test_authorization_responses_carry_iss_as_advertised(document, browser, confidential_client):
    """RFC 9207 §2: with authorization_response_iss_parameter_supported true, the success and the error
    responses carry iss, the issuer identifier."""
    assert document["authorization_response_iss_parameter_supported"] is True
    success = authorize(browser, _request(confidential_client))
    error = _refused_on_redirect(browser, _request(confidential_client), response_mode="fragment")
    assert success["iss"] == error["iss"] == document["issuer"]


def test_every_advertised_prompt_value_is_answered(document, client_factory, db):
    """OIDC Core §3.1.2.1 prompt, Prompt Create §4.2 prompt_values_supported: none answers without a page
    (a code once consented, login_required when signed out), login asks for the password again, consent
    shows the consent page although the user consented before."""
    registered = client_factory()
    user = UserFactory()
    browser = HttpClient()
    sign_in(browser, user)
    authorize(browser, _request(registered))  # consented once

    def none() -> None:
        assert "code" in query_of(browser.get(_request(registered).url(prompt="none"))["Location"])
        signed_out = HttpClient().get(_request(registered).url(prompt="none"))
        assert query_of(signed_out["Location"])["error"] == "login_required"

    def login() -> None:
        response = browser.get(_request(registered).url(prompt="login"))
        assert response.status_code == HTTPStatus.FOUND and response["Location"].startswith(LOGIN)

    def consent() -> None:
        response = browser.get(_request(registered).url(prompt="consent"))
        assert response.status_code == HTTPStatus.OK and "form" in response.context

    checks = {"none": none, "login": login, "consent": consent}
    for prompt in document["prompt_values_supported"]:
        assert prompt in checks, f"no behaviour check for prompt={prompt}"
        checks[prompt]()


def test_every_prompt_value_not_advertised_is_refused(document, browser, confidential_client):
    """OIDC Core §3.1.2.1: a prompt value the OP does not support is refused, not ignored."""
    for prompt in set(PROMPTS) - set(document["prompt_values_supported"]):
        params = _refused_on_redirect(browser, _request(confidential_client), prompt=prompt)
        assert params["error"] == "invalid_request", (prompt, params)


def test_every_advertised_acr_value_is_reachable(document, settings, confidential_client, db):
    """OIDC Discovery §3 acr_values_supported, OIDC Core §2 acr: each listed class is one some sign-in
    gets, in the ID token; and no sign-in gets one that is not listed."""
    settings.UAA_MFA_REQUIRED = False
    reached = set()
    for user in (UserFactory(mfa=False), UserFactory()):  # a password, then a password and an app
        browser = HttpClient()
        sign_in(browser, user)
        tokens = _code_flow(browser, confidential_client)
        reached.add(unverified_claims(tokens["id_token"])["acr"])
        for acr in document["acr_values_supported"]:  # asking for it is answered (a step-up, or a code)
            response = browser.get(_request(confidential_client).url(acr_values=acr))
            assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND), (acr, response.status_code)
    assert reached == set(document["acr_values_supported"])


def test_every_advertised_claim_is_released_by_a_scope_or_the_claims_parameter(document, client_factory, db):
    """OIDC Discovery §3 claims_supported: each claim is one UAA can release: by a scope (OIDC Core §5.4)
    or the claims parameter (§5.5), in the ID token or at userinfo, for a user who holds every claim."""
    user = UserFactory(**FULL_PROFILE)
    browser = HttpClient()
    sign_in(browser, user)
    registered = client_factory()
    scope = " ".join(scope for scope in document["scopes_supported"] if scope in USER_SCOPES)
    everything = {name: None for name in document["claims_supported"]}
    tokens = _code_flow(
        browser, registered, scope=scope, extra={"claims": json.dumps({"id_token": everything})}
    )
    _, id_token = verify_with_jwks(tokens["id_token"], served_jwks(document))
    info = HttpClient().get(
        local(document["userinfo_endpoint"]), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    released = set(id_token) | set(info.json())
    missing = set(document["claims_supported"]) - released
    assert not missing, f"listed in claims_supported but never released: {missing}"


def test_the_claims_parameter_is_honoured_as_advertised(document, browser, confidential_client, user):
    """OIDC Discovery §3 claims_parameter_supported true, OIDC Core §5.5: a claim asked for at userinfo
    only is released there and not in the ID token, without its scope (the consent page lists it)."""
    assert document["claims_parameter_supported"] is True
    claims = {"userinfo": {"email": None}}
    tokens = _code_flow(browser, confidential_client, scope="openid", extra={"claims": json.dumps(claims)})
    _, id_token = verify_with_jwks(tokens["id_token"], served_jwks(document))
    info = (
        HttpClient()
        .get(local(document["userinfo_endpoint"]), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
        .json()
    )
    assert info["email"] == user.email
    assert "email" not in id_token


@pytest.mark.parametrize("member", ["request_parameter_supported", "request_uri_parameter_supported"])
def test_request_objects_are_refused_as_advertised(document, browser, confidential_client, member):
    """OIDC Discovery §3: false, so OIDC Core §6.1/§6.2 request_not_supported / request_uri_not_supported."""
    assert document[member] is False, f"no behaviour check for {member}=true"
    parameter = member.removesuffix("_parameter_supported")
    value = "eyJhbGciOiJub25lIn0.e30." if parameter == "request" else "https://rp.example.com/request.jwt"
    params = _refused_on_redirect(browser, _request(confidential_client), **{parameter: value})
    assert params["error"] == f"{parameter}_not_supported"


def test_subjects_are_public_as_advertised(document, browser, client_factory, user):
    """OIDC Core §8 subject_types_supported ["public"]: the same sub for the user at every client."""
    assert document["subject_types_supported"] == ["public"]
    subs = set()
    for name in ("one", "two"):
        tokens = _code_flow(browser, client_factory(name=name))
        subs.add(unverified_claims(tokens["id_token"])["sub"])
    assert subs == {str(user.pk)}


@pytest.mark.parametrize(
    ("member", "client_field"),
    [
        ("frontchannel_logout_supported", "frontchannel_logout_uri"),
        ("backchannel_logout_supported", "backchannel_logout_uri"),
    ],
)
def test_no_logout_notification_is_offered_as_advertised(document, member, client_field):
    """OIDC Front-Channel Logout §3, Back-Channel Logout §2.1: false, and indeed a client cannot register
    the URI such a logout would be sent to, and the document lists no session support for it."""
    assert document[member] is False, f"no behaviour check for {member}=true"
    assert client_field not in {field.name for field in Client._meta.get_fields()}
    assert member.replace("_supported", "_session_supported") not in document


# --- the token endpoint -------------------------------------------------------------------------------
def token_for(registered: RegisteredClient) -> str:
    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=registered.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()["access_token"]


def served_jwks(document: dict[str, Any]) -> dict[str, Any]:
    return HttpClient().get(local(document["jwks_uri"])).json()


def test_every_advertised_grant_type_issues_tokens(document, browser, confidential_client, service_client):
    """RFC 8414 §2 grant_types_supported: each is answered with tokens (RFC 6749 §4.1.3, §4.4, §6)."""
    refresh_tokens: list[str] = []

    def authorization_code() -> None:
        tokens = _code_flow(browser, confidential_client, scope="openid offline_access")
        refresh_tokens.append(tokens["refresh_token"])

    def refresh_token() -> None:
        if not refresh_tokens:
            authorization_code()
        response = form_post(
            HttpClient(),
            "/oauth/token",
            {"grant_type": "refresh_token", "refresh_token": refresh_tokens[-1]},
            auth=confidential_client.basic,
        )
        assert response.status_code == HTTPStatus.OK, response.content

    def client_credentials() -> None:
        assert token_for(service_client)

    checks = {
        "authorization_code": authorization_code,
        "refresh_token": refresh_token,
        "client_credentials": client_credentials,
    }
    for grant_type in document["grant_types_supported"]:
        assert grant_type in checks, f"no behaviour check for grant_type={grant_type}"
        checks[grant_type]()


def test_every_grant_type_not_advertised_is_unsupported_grant_type(document, confidential_client, user):
    """RFC 6749 §5.2 unsupported_grant_type for every grant type the document does not list (RFC 9700
    §2.4: no password grant; no implicit; no device flow)."""
    for grant_type in set(GRANT_TYPES) - set(document["grant_types_supported"]):
        data = {"grant_type": grant_type, "username": user.email, "password": PASSWORD, "device_code": "x"}
        response = form_post(HttpClient(), "/oauth/token", data, auth=confidential_client.basic)
        assert response.status_code == HTTPStatus.BAD_REQUEST, (grant_type, response.content)
        assert response.json()["error"] == "unsupported_grant_type", grant_type


# --- client authentication, at each endpoint that lists its methods ----------------------------------
ENDPOINT_PATHS = {
    "token_endpoint": "/oauth/token",
    "revocation_endpoint": "/oauth/revoke",
    "introspection_endpoint": "/oauth/introspect",
}


def _body_for(endpoint: str, registered: RegisteredClient) -> dict[str, str]:
    """A request each endpoint answers with 200 once the client is authenticated."""
    if endpoint == "token_endpoint":
        return {"grant_type": "client_credentials"}
    return {"token": token_for(registered)}


def _secret_service(client_factory: Callable[..., RegisteredClient]) -> RegisteredClient:
    return client_factory(
        name="svc",
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        redirect_uris=[],
        default_audience=["https://api.example.com"],
    )


def _authenticates(
    endpoint: str, method: str, document: dict[str, Any], client_factory: Any, browser: Any
) -> None:
    url = local(document[endpoint])
    if method == "client_secret_basic":
        registered = _secret_service(client_factory)
        response = form_post(HttpClient(), url, _body_for(endpoint, registered), auth=registered.basic)
    elif method == "client_secret_post":
        registered = _secret_service(client_factory)
        body = {
            **_body_for(endpoint, registered),
            "client_id": registered.client_id,
            "client_secret": registered.secret,
        }
        response = form_post(HttpClient(), url, body)
    elif method == "private_key_jwt":
        for alg in document[endpoint.replace("_endpoint", "_endpoint_auth_signing_alg_values_supported")]:
            assert alg in KEY_TYPES, f"no key type for {alg}"
            key = new_key(alg)
            issued = client_factory(
                name="signed",
                grant_type=Client.GRANT_CLIENT_CREDENTIALS,
                redirect_uris=[],
                default_audience=["https://api.example.com"],
                token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
                jwks=public_set(key),
            )
            if endpoint == "token_endpoint":
                body = {"grant_type": "client_credentials"}
            else:
                first = {
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion(issued.client_id, key, alg=alg),
                    "grant_type": "client_credentials",
                }
                body = {"token": form_post(HttpClient(), "/oauth/token", first).json()["access_token"]}
            body |= {
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion(issued.client_id, key, alg=alg),
            }
            response = form_post(HttpClient(), url, body)
            assert response.status_code == HTTPStatus.OK, (endpoint, alg, response.content)
        return
    elif method == "none":
        public = client_factory(name="SPA", client_type=Client.CLIENT_PUBLIC)
        request = _request(public)
        params = authorize(browser, request)
        if endpoint == "token_endpoint":
            response = exchange_code(HttpClient(), code=params["code"], request=request)
        else:
            code = exchange_code(HttpClient(), code=params["code"], request=request)
            token = code.json()["access_token"]
            response = form_post(HttpClient(), url, {"token": token, "client_id": public.client_id})
    else:
        raise AssertionError(f"no behaviour check for {endpoint} auth method {method}")
    assert response.status_code == HTTPStatus.OK, (endpoint, method, response.content)


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_PATHS))
def test_every_advertised_client_authentication_method_authenticates(
    document, client_factory, browser, endpoint
):
    """RFC 8414 §2 {token,revocation,introspection}_endpoint_auth_methods_supported and their signing
    algorithms: each method authenticates a client of it at that endpoint (RFC 6749 §2.3.1 Basic and the
    body, RFC 7523 §2.2 with every listed alg, none: a public client's client_id, RFC 6749 §2.1)."""
    for method in document[f"{endpoint}_auth_methods_supported"]:
        _authenticates(endpoint, method, document, client_factory, browser)


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_PATHS))
def test_client_authentication_not_advertised_is_invalid_client(document, client_factory, browser, endpoint):
    """RFC 6749 §5.2 invalid_client: an assertion signed with an alg the endpoint does not list (HS256:
    client_secret_jwt, not listed; RS384), and a public client where none is not listed."""
    url = local(document[endpoint])
    methods = document[f"{endpoint}_auth_methods_supported"]
    algs = document[endpoint.replace("_endpoint", "_endpoint_auth_signing_alg_values_supported")]
    registered = _secret_service(client_factory)
    body = _body_for(endpoint, registered)
    assert "client_secret_jwt" not in methods and "HS256" not in algs
    hs256 = jwt.JWT(
        header={"alg": "HS256"},
        claims={"iss": registered.client_id, "sub": registered.client_id, "aud": document["issuer"]},
    )
    hs256.make_signed_token(jwk.JWK(kty="oct", k=jwk.base64url_encode(registered.secret.encode())))
    rsa = new_key("RS256")
    keyed = client_factory(
        name="signed",
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        redirect_uris=[],
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks=public_set(rsa),
    )
    assert "RS384" not in algs
    attempts = [
        {
            **body,
            "client_id": registered.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": hs256.serialize(),
        },
        {
            **body,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(keyed.client_id, rsa, alg="RS384"),
        },
    ]
    if "none" not in methods:
        public = client_factory(name="SPA", client_type=Client.CLIENT_PUBLIC)
        attempts.append({**body, "client_id": public.client_id})
    for data in attempts:
        response = form_post(HttpClient(), url, data)
        assert response.status_code == HTTPStatus.UNAUTHORIZED, (endpoint, data, response.content)
        assert response.json()["error"] == "invalid_client"


# --- signing algorithms -------------------------------------------------------------------------------
def test_every_advertised_id_token_alg_signs_an_id_token_that_verifies_at_jwks_uri(
    document, browser, client_factory
):
    """OIDC Discovery §3 id_token_signing_alg_values_supported (RS256 MUST be there), OIDC Core §3.1.3.7:
    a client registered for each alg (id_token_signed_response_alg) gets an ID token with that alg in its
    header, which verifies against the advertised jwks_uri with the key its kid names, made for that alg."""
    algs = document["id_token_signing_alg_values_supported"]
    assert "RS256" in algs and "none" not in algs
    for alg in algs:
        tokens = _code_flow(browser, client_factory(name=f"rp {alg}", algorithm=alg))
        keys = served_jwks(document)
        header, claims = verify_with_jwks(tokens["id_token"], keys)
        assert header["alg"] == alg
        (key,) = [key for key in keys["keys"] if key["kid"] == header["kid"]]
        assert key["alg"] == alg
        assert claims["iss"] == document["issuer"]


def test_no_client_can_register_an_id_token_alg_not_advertised(document):
    """A client registered for an alg the OP does not list would be sent ID tokens it was never told of."""
    algs = set(document["id_token_signing_alg_values_supported"])
    assert {alg for alg, _ in Client.SIGNING_ALGORITHMS} == algs


# Each member and the test of this module that drives its values.
_AUTH = test_every_advertised_client_authentication_method_authenticates
_ID_TOKEN_ALGS = test_every_advertised_id_token_alg_signs_an_id_token_that_verifies_at_jwks_uri
CHECKED: dict[str, Callable[..., None]] = {
    "issuer": test_the_issuer_is_the_configured_issuer_without_a_trailing_slash,
    "authorization_endpoint": test_authorization_endpoint_answers_an_authorization_request,
    "token_endpoint": test_token_endpoint_issues_tokens,
    "jwks_uri": test_jwks_uri_holds_the_keys_tokens_are_signed_with,
    "revocation_endpoint": test_revocation_and_introspection_endpoints_act_on_a_token,
    "introspection_endpoint": test_revocation_and_introspection_endpoints_act_on_a_token,
    "userinfo_endpoint": test_userinfo_endpoint_answers_with_the_subject,
    "end_session_endpoint": test_end_session_endpoint_signs_the_user_out,
    "scopes_supported": test_every_advertised_scope_is_granted_to_a_client_allowed_it,
    "response_types_supported": test_every_advertised_response_type_is_answered,
    "response_modes_supported": test_every_advertised_response_mode_delivers_the_response,
    "grant_types_supported": test_every_advertised_grant_type_issues_tokens,
    "token_endpoint_auth_methods_supported": _AUTH,
    "token_endpoint_auth_signing_alg_values_supported": _AUTH,
    "revocation_endpoint_auth_methods_supported": _AUTH,
    "revocation_endpoint_auth_signing_alg_values_supported": _AUTH,
    "introspection_endpoint_auth_methods_supported": _AUTH,
    "introspection_endpoint_auth_signing_alg_values_supported": _AUTH,
    "code_challenge_methods_supported": test_every_advertised_code_challenge_method_is_accepted,
    "authorization_response_iss_parameter_supported": test_authorization_responses_carry_iss_as_advertised,
    "subject_types_supported": test_subjects_are_public_as_advertised,
    "acr_values_supported": test_every_advertised_acr_value_is_reachable,
    "id_token_signing_alg_values_supported": _ID_TOKEN_ALGS,
    "claims_supported": test_every_advertised_claim_is_released_by_a_scope_or_the_claims_parameter,
    "prompt_values_supported": test_every_advertised_prompt_value_is_answered,
    "claims_parameter_supported": test_the_claims_parameter_is_honoured_as_advertised,
    "request_parameter_supported": test_request_objects_are_refused_as_advertised,
    "request_uri_parameter_supported": test_request_objects_are_refused_as_advertised,
    "frontchannel_logout_supported": test_no_logout_notification_is_offered_as_advertised,
    "backchannel_logout_supported": test_no_logout_notification_is_offered_as_advertised,
}
