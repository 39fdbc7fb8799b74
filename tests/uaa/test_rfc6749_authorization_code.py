"""RFC 6749 §4.1 authorization code grant over HTTP, with OIDC ID tokens and RFC 9068 access tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
from django.conf import settings
from django.test import Client as HttpClient
from freezegun import freeze_time

from tests.conftest import REDIRECT_URI, sign_in
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post, query_of
from tests.uaa.endpoints import introspect, left_half_hash, refresh, userinfo, verified


def _authorize_for_code(browser, registered, **fields):
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, **fields)
    return request, authorize(browser, request)


def _exchange(registered, request, code, **overrides):
    auth = registered.basic if registered.secret else None
    return exchange_code(HttpClient(), code=code, request=request, auth=auth, **overrides)


def _assert_error_page_without_redirect(response):
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert "oauth/error.html" in [template.name for template in response.templates]


# --- the happy path -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_authorization_response_echoes_state_and_names_the_issuer(request, browser, kind):
    """RFC 6749 §4.1.2: state is returned exactly as received; RFC 9207 §2: the response carries ``iss``."""
    registered = request.getfixturevalue(kind)
    authorization, params = _authorize_for_code(browser, registered, state="xyz-Ω state/+=")
    assert params["state"] == "xyz-Ω state/+="
    assert params["iss"] == "http://testserver"
    assert params["code"]
    assert "error" not in params
    assert authorization.redirect_uri == REDIRECT_URI


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_code_exchange_returns_a_bearer_token_response_that_must_not_be_cached(request, browser, kind):
    """RFC 6749 §5.1: access_token, token_type, expires_in; Cache-Control no-store and Pragma no-cache."""
    registered = request.getfixturevalue(kind)
    authorization, params = _authorize_for_code(browser, registered)
    response = _exchange(registered, authorization, params["code"])
    assert response.status_code == HTTPStatus.OK, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert set(body["scope"].split()) == {"openid", "profile", "email"}
    assert body["access_token"] and body["refresh_token"] and body["id_token"]


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_id_token_names_the_client_the_nonce_and_the_sign_in(request, browser, user, kind):
    """OIDC Core §2, §3.1.3.7: aud is the client_id; nonce as sent; auth_time, sid, amr tell the sign-in."""
    registered = request.getfixturevalue(kind)
    authorization, params = _authorize_for_code(browser, registered)
    tokens = _exchange(registered, authorization, params["code"]).json()
    header, claims = verified(tokens["id_token"])
    assert header["typ"] == "JWT"
    assert header["alg"] == "RS256"
    assert claims["iss"] == "http://testserver"
    assert claims["sub"] == str(user.pk)
    assert claims["aud"] == registered.client_id
    assert claims["nonce"] == authorization.nonce
    assert claims["at_hash"] == left_half_hash(tokens["access_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]  # RFC 8176 §2: password, then a TOTP code
    assert claims["acr"] == "urn:uaa:acr:mfa"
    assert claims["sid"]
    assert claims["jti"]
    assert claims["iat"] <= claims["exp"] == claims["iat"] + 600
    assert claims["auth_time"] <= claims["iat"]
    assert claims["email"] == user.email


def test_auth_time_is_when_the_user_signed_in_not_when_the_code_was_redeemed(confidential_client, user):
    """OIDC Core §2: auth_time is the time when the End-User authentication occurred."""
    signed_in_at = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    with freeze_time(signed_in_at) as frozen:
        browser = HttpClient()
        sign_in(browser, user)
        frozen.tick(timedelta(minutes=30))
        authorization, params = _authorize_for_code(browser, confidential_client)
        tokens = _exchange(confidential_client, authorization, params["code"]).json()
    _, id_claims = verified(tokens["id_token"])
    _, access_claims = verified(tokens["access_token"])
    assert id_claims["auth_time"] == int(signed_in_at.timestamp())
    assert access_claims["auth_time"] == int(signed_in_at.timestamp())
    assert id_claims["iat"] == int((signed_in_at + timedelta(minutes=30)).timestamp())


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_access_token_follows_the_rfc9068_jwt_profile(request, browser, user, kind):
    """RFC 9068 §2.1-§2.2: typ at+jwt; iss, exp, aud, sub, client_id, iat, jti, scope and auth_time."""
    registered = request.getfixturevalue(kind)
    authorization, params = _authorize_for_code(browser, registered)
    tokens = _exchange(registered, authorization, params["code"]).json()
    header, claims = verified(tokens["access_token"])
    _, id_claims = verified(tokens["id_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == settings.UAA_ACCESS_TOKEN_ALG
    assert header["kid"]
    assert claims["iss"] == "http://testserver"
    assert claims["sub"] == str(user.pk)
    assert claims["aud"] == "http://testserver"
    assert claims["client_id"] == registered.client_id
    assert set(claims["scope"].split()) == {"openid", "profile", "email"}
    assert len(claims["jti"]) >= 16
    assert claims["exp"] == claims["iat"] + 600
    assert claims["auth_time"] == id_claims["auth_time"]


def test_each_access_token_has_its_own_jti(browser, confidential_client):
    """RFC 9068 §2.2 / RFC 7519 §4.1.7: jti is unique per token."""
    jtis = set()
    for _ in range(2):
        authorization, params = _authorize_for_code(browser, confidential_client)
        tokens = _exchange(confidential_client, authorization, params["code"]).json()
        jtis.add(verified(tokens["access_token"])[1]["jti"])
    assert len(jtis) == 2


def test_narrower_scope_at_authorize_is_the_scope_of_the_tokens(browser, confidential_client, user):
    """RFC 6749 §3.3 and OIDC Core §5.4: tokens carry exactly the scope granted."""
    authorization, params = _authorize_for_code(browser, confidential_client, scope="openid")
    tokens = _exchange(confidential_client, authorization, params["code"]).json()
    assert tokens["scope"] == "openid"
    _, id_claims = verified(tokens["id_token"])
    assert "email" not in id_claims and "name" not in id_claims
    assert verified(tokens["access_token"])[1]["scope"] == "openid"


# --- the redirect URI at the authorization endpoint ---------------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        "https://rp.example.com/callback/extra",
        "https://rp.example.com/callback?next=https://evil.example.com",
        "https://rp.example.com/callback#fragment",
        "https://rp.example.com/Callback",
        "http://rp.example.com/callback",
        "https://rp.example.com:8443/callback",
        "https://rp.example.com.evil.example/callback",
        "https://rp.example.com/callback https://evil.example.com/callback",
        "javascript:alert(1)",
        "not a uri",
    ],
)
def test_unregistered_redirect_uri_renders_an_error_page_and_never_redirects(
    browser, confidential_client, redirect_uri
):
    """RFC 6749 §4.1.2.1 and §10.15: with an invalid redirection URI the server MUST NOT redirect."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = browser.get(request.url(redirect_uri=redirect_uri))
    _assert_error_page_without_redirect(response)
    assert b"evil.example" not in response.content


def test_repeated_redirect_uri_renders_an_error_page_and_never_redirects(browser, confidential_client):
    """RFC 6749 §3.1: request parameters MUST NOT be included more than once; §4.1.2.1: do not redirect."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    url = request.url() + "&redirect_uri=https%3A%2F%2Fevil.example.com%2Fcallback"
    response = browser.get(url)
    _assert_error_page_without_redirect(response)


def test_unregistered_redirect_uri_is_refused_even_when_the_user_approves(browser, confidential_client):
    """RFC 6749 §4.1.2.1: the consent form's hidden redirect_uri is checked again, and never followed."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    page = browser.get(request.url())
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(allow="Authorize", redirect_uri="https://evil.example.com/callback")
    response = browser.post("/oauth/authorize", data)
    _assert_error_page_without_redirect(response)


def test_unknown_client_id_renders_an_error_page_and_never_redirects(browser, db):
    """RFC 6749 §4.1.2.1: with a missing or invalid client identifier the server MUST NOT redirect."""
    request = AuthorizationRequest(client_id="no-such-client", redirect_uri=REDIRECT_URI)
    response = browser.get(request.url())
    _assert_error_page_without_redirect(response)


def test_missing_client_id_renders_an_error_page_and_never_redirects(browser, db):
    """RFC 6749 §4.1.2.1: with a missing client identifier the server MUST NOT redirect."""
    request = AuthorizationRequest(client_id="", redirect_uri=REDIRECT_URI)
    response = browser.get(request.url(client_id=None))
    _assert_error_page_without_redirect(response)


def test_a_client_credentials_client_cannot_start_a_code_flow(browser, service_client):
    """RFC 6749 §4.1.2.1: the client has no registered redirect URI to send an error to, so no redirect."""
    request = AuthorizationRequest(client_id=service_client.client_id, redirect_uri=REDIRECT_URI)
    _assert_error_page_without_redirect(browser.get(request.url()))


@pytest.mark.parametrize(
    ("response_type", "error"),
    [("bogus", "unsupported_response_type"), ("token", "unsupported_response_type")],
)
def test_refused_response_type_is_redirected_to_the_registered_uri(
    browser, confidential_client, response_type, error
):
    """RFC 6749 §4.1.2.1: errors go back to the valid redirect URI with state; RFC 9207 §2: with iss.

    The implicit grant (response_type=token) exists in oauthlib, which refused it as unauthorized_client;
    UAA offers only code, so it is unsupported_response_type (uaa/oauth/server.py).
    """
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = browser.get(request.url(response_type=response_type))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params["error"] == error
    assert params["state"] == request.state
    assert params["iss"] == "http://testserver"
    assert "code" not in params


def test_user_denying_consent_is_access_denied_at_the_registered_uri(browser, confidential_client):
    """RFC 6749 §4.1.2.1: access_denied, with state, at the client's redirection URI."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    page = browser.get(request.url())
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    response = browser.post("/oauth/authorize", data)
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert params["error"] == "access_denied"
    assert params["state"] == request.state
    assert params["iss"] == "http://testserver"
    assert "code" not in params


# --- before sign-in: the request is checked first -------------------------------------------------
#
# Attacker: anyone who can send a victim a link. With a bogus client_id or redirect_uri, UAA's own
# sign-in page must not be the landing page of a phishing link (RFC 6749 §10.15), and no error may be
# sent to an unregistered URI (§4.1.2.1). A signed-out browser gets the error page at once.


def _assert_not_sent_to_sign_in(response):
    assert "/accounts/login" not in response.get("Location", "")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        "https://rp.example.com/callback/",
        "https://rp.example.com.evil.example/callback",
        "javascript:alert(1)",
        None,
    ],
)
def test_signed_out_link_with_an_unregistered_redirect_uri_gets_the_error_page(
    client, confidential_client, redirect_uri
):
    """RFC 6749 §4.1.2.1: if the redirection URI is missing, invalid or mismatching, the server SHOULD
    inform the resource owner and MUST NOT redirect; §10.15: no open redirector. Checked before sign-in."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = client.get(request.url(redirect_uri=redirect_uri))
    _assert_not_sent_to_sign_in(response)
    _assert_error_page_without_redirect(response)
    assert b"evil.example" not in response.content


@pytest.mark.parametrize("client_id", ["no-such-client", None, "", "x" * 300])
def test_signed_out_link_with_an_unknown_client_id_gets_the_error_page(client, db, client_id):
    """RFC 6749 §4.1.2.1: if the client identifier is missing or invalid, the server SHOULD inform the
    resource owner and MUST NOT redirect; nobody is asked to sign in for a client that does not exist."""
    request = AuthorizationRequest(client_id="placeholder", redirect_uri=REDIRECT_URI)
    response = client.get(request.url(client_id=client_id))
    _assert_not_sent_to_sign_in(response)
    _assert_error_page_without_redirect(response)


def test_signed_out_link_for_a_client_credentials_client_gets_the_error_page(client, service_client):
    """RFC 6749 §4.1.2.1: a client with no registered redirect URI has nowhere to receive an error."""
    request = AuthorizationRequest(client_id=service_client.client_id, redirect_uri=REDIRECT_URI)
    response = client.get(request.url())
    _assert_not_sent_to_sign_in(response)
    _assert_error_page_without_redirect(response)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"scope": "openid bogus"}, "invalid_scope"),
        ({"response_type": "bogus"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"max_age": "soon"}, "invalid_request"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ],
)
def test_signed_out_request_errors_go_to_the_client_before_sign_in(
    client, confidential_client, overrides, error
):
    """RFC 6749 §4.1.2.1: for reasons other than the redirect URI or client, the server informs the client
    at its redirect URI, with state; RFC 9207 §2: and iss. The user is not asked to sign in for a request
    that cannot succeed (OIDC Core §3.1.2.6)."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = client.get(request.url(**overrides))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params["error"] == error
    assert params["state"] == request.state
    assert params["iss"] == "http://testserver"
    assert "code" not in params


def test_signed_out_valid_request_is_sent_to_sign_in(client, confidential_client):
    """OIDC Core §3.1.2.3: a valid request from a signed-out browser goes on to authentication."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = client.get(request.url())
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/accounts/login?")


# --- the redirect URI at the token endpoint -----------------------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example.com/callback", "https://rp.example.com/callback/", "https://rp.example.com/other"],
)
def test_token_request_with_a_different_redirect_uri_is_invalid_grant(
    browser, confidential_client, redirect_uri
):
    """RFC 6749 §4.1.3: redirect_uri MUST be identical to the one in the authorization request."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    response = _exchange(confidential_client, authorization, params["code"], redirect_uri=redirect_uri)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert response["Cache-Control"] == "no-store"


def test_token_request_without_the_redirect_uri_sent_at_authorize_is_invalid_request(
    browser, confidential_client
):
    """RFC 6749 §4.1.3: redirect_uri is REQUIRED if it was included in the authorization request."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    data = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "code_verifier": authorization.verifier,
    }
    response = form_post(HttpClient(), "/oauth/token", data, auth=confidential_client.basic)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"
    assert "access_token" not in response.json()


def test_authorization_request_without_redirect_uri_renders_an_error_page(browser, confidential_client):
    """OIDC Core §3.1.2.1: redirect_uri is REQUIRED; RFC 6749 §4.1.2.1: without a valid one, no redirect."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = browser.get(request.url(redirect_uri=None))
    _assert_error_page_without_redirect(response)


# --- the code itself --------------------------------------------------------------------------------


def test_unknown_code_is_invalid_grant(browser, confidential_client):
    """RFC 6749 §5.2: invalid_grant when the authorization code is invalid."""
    authorization, _params = _authorize_for_code(browser, confidential_client)
    response = _exchange(confidential_client, authorization, "not-a-code-we-issued")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"


def test_missing_code_is_invalid_request(confidential_client):
    """RFC 6749 §4.1.3 and §5.2: code is REQUIRED; a missing parameter is invalid_request."""
    data = {"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI, "code_verifier": "a" * 43}
    response = form_post(HttpClient(), "/oauth/token", data, auth=confidential_client.basic)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"


def test_expired_code_is_invalid_grant(browser, confidential_client):
    """RFC 6749 §4.1.2: the code MUST expire shortly after it is issued (UAA: 60 s); §5.2 invalid_grant."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    with freeze_time(datetime.now(UTC) + timedelta(seconds=61)):
        response = _exchange(confidential_client, authorization, params["code"])
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"


def test_code_just_before_expiry_is_still_redeemed(browser, confidential_client):
    """RFC 6749 §4.1.2: the code lifetime is UAA_AUTHORIZATION_CODE_LIFETIME (60 s), not less."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    with freeze_time(datetime.now(UTC) + timedelta(seconds=55)):
        response = _exchange(confidential_client, authorization, params["code"])
    assert response.status_code == HTTPStatus.OK, response.content


def test_code_replay_is_invalid_grant_and_revokes_the_first_tokens(browser, confidential_client):
    """RFC 6749 §4.1.2: a code used twice MUST be denied and SHOULD revoke the tokens it produced."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    first = _exchange(confidential_client, authorization, params["code"]).json()
    assert introspect(confidential_client, first["access_token"]).json()["active"] is True
    replay = _exchange(confidential_client, authorization, params["code"])
    assert replay.status_code == HTTPStatus.BAD_REQUEST
    assert replay.json()["error"] == "invalid_grant"
    assert "access_token" not in replay.json()
    assert introspect(confidential_client, first["access_token"]).json() == {"active": False}
    assert introspect(confidential_client, first["refresh_token"]).json() == {"active": False}
    assert userinfo(first["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    refreshed = refresh(confidential_client, first["refresh_token"])
    assert refreshed.status_code == HTTPStatus.BAD_REQUEST
    assert refreshed.json()["error"] == "invalid_grant"


def test_code_replay_by_a_public_client_revokes_the_first_tokens(browser, public_client, confidential_client):
    """RFC 6749 §4.1.2 and RFC 9700 §4.10: replay detection holds for public clients too."""
    authorization, params = _authorize_for_code(browser, public_client)
    first = _exchange(public_client, authorization, params["code"]).json()
    replay = _exchange(public_client, authorization, params["code"])
    assert replay.status_code == HTTPStatus.BAD_REQUEST
    assert replay.json()["error"] == "invalid_grant"
    assert introspect(confidential_client, first["access_token"]).json() == {"active": False}
    assert userinfo(first["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    assert refresh(public_client, first["refresh_token"]).json()["error"] == "invalid_grant"


def test_code_replay_leaves_the_users_other_grants_alone(browser, confidential_client):
    """RFC 6749 §4.1.2: only tokens "based on that authorization code" are revoked."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    _exchange(confidential_client, authorization, params["code"])
    other_request, other_params = _authorize_for_code(browser, confidential_client)
    other = _exchange(confidential_client, other_request, other_params["code"]).json()
    _exchange(confidential_client, authorization, params["code"])
    assert userinfo(other["access_token"]).status_code == HTTPStatus.OK
    assert refresh(confidential_client, other["refresh_token"]).status_code == HTTPStatus.OK


def test_code_replay_also_revokes_tokens_refreshed_from_the_first_redemption(browser, confidential_client):
    """RFC 6749 §4.1.2, RFC 9700 §4.10: every token "based on that authorization code", refreshed ones too."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    first = _exchange(confidential_client, authorization, params["code"]).json()
    rotated = refresh(confidential_client, first["refresh_token"]).json()
    _exchange(confidential_client, authorization, params["code"])
    assert userinfo(rotated["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    assert refresh(confidential_client, rotated["refresh_token"]).json()["error"] == "invalid_grant"


def test_code_issued_to_another_client_is_invalid_grant(browser, confidential_client, client_factory):
    """RFC 6749 §4.1.3: ensure the authorization code was issued to the authenticated confidential client."""
    other = client_factory(name="Other RP")
    authorization, params = _authorize_for_code(browser, confidential_client)
    stolen = AuthorizationRequest(
        client_id=other.client_id, redirect_uri=REDIRECT_URI, verifier=authorization.verifier
    )
    response = _exchange(other, stolen, params["code"])
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"


def test_code_tried_by_another_client_still_works_for_its_own_client(
    browser, confidential_client, client_factory
):
    """RFC 6749 §4.1.3: another client's attempt is refused and does not spend the rightful client's code.

    The code was never redeemed, so there is nothing to revoke: the rightful client still redeems it once.
    """
    other = client_factory(name="Other RP")
    authorization, params = _authorize_for_code(browser, confidential_client)
    stolen = AuthorizationRequest(
        client_id=other.client_id, redirect_uri=REDIRECT_URI, verifier=authorization.verifier
    )
    assert _exchange(other, stolen, params["code"]).json()["error"] == "invalid_grant"
    response = _exchange(confidential_client, authorization, params["code"])
    assert response.status_code == HTTPStatus.OK, response.content
    assert _exchange(confidential_client, authorization, params["code"]).json()["error"] == "invalid_grant"


def test_replay_by_another_client_revokes_the_rightful_clients_tokens(
    browser, confidential_client, client_factory
):
    """RFC 6749 §4.1.2 and RFC 9700 §4.10: a spent code seen again is a replay, whoever presents it."""
    other = client_factory(name="Other RP")
    authorization, params = _authorize_for_code(browser, confidential_client)
    first = _exchange(confidential_client, authorization, params["code"]).json()
    stolen = AuthorizationRequest(
        client_id=other.client_id, redirect_uri=REDIRECT_URI, verifier=authorization.verifier
    )
    assert _exchange(other, stolen, params["code"]).json()["error"] == "invalid_grant"
    assert userinfo(first["access_token"]).status_code == HTTPStatus.UNAUTHORIZED


def test_confidential_client_must_authenticate_to_redeem_a_code(browser, confidential_client):
    """RFC 6749 §4.1.3: the client MUST authenticate if it is a confidential client."""
    authorization, params = _authorize_for_code(browser, confidential_client)
    response = exchange_code(HttpClient(), code=params["code"], request=authorization)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    retry = _exchange(confidential_client, authorization, params["code"])
    assert retry.status_code == HTTPStatus.OK, retry.content
