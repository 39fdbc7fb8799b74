"""RFC 7636 Proof Key for Code Exchange: S256 is required for every code grant, public and confidential."""

from __future__ import annotations

import base64
import hashlib
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post, pkce_pair, query_of


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _request_for(registered, **fields):
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, **fields)


def _exchange(registered, request, code, **overrides):
    auth = registered.basic if registered.secret else None
    return exchange_code(HttpClient(), code=code, request=request, auth=auth, **overrides)


def _assert_error_redirect(response, request, error="invalid_request"):
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params["error"] == error
    assert params["state"] == request.state
    assert params["iss"] == "http://testserver"
    assert "code" not in params


def _consent_form(browser, request):
    page = browser.get(request.url())
    assert page.status_code == HTTPStatus.OK
    form = page.context["form"]
    return {name: form.initial.get(name) or "" for name in form.fields} | {"allow": "Authorize"}


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_missing_code_challenge_is_invalid_request_at_the_redirect_uri(request, browser, kind):
    """RFC 7636 §4.4.1: a server requiring PKCE MUST return invalid_request when code_challenge is missing."""
    authorization = _request_for(request.getfixturevalue(kind))
    response = browser.get(authorization.url(code_challenge=None, code_challenge_method=None))
    _assert_error_redirect(response, authorization)


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_plain_code_challenge_method_is_refused(request, browser, kind):
    """RFC 9700 §2.1.1: use S256; RFC 7636 §4.4.1: a refused method is invalid_request at the redirect URI."""
    verifier, _challenge = pkce_pair()
    authorization = _request_for(request.getfixturevalue(kind))
    response = browser.get(authorization.url(code_challenge=verifier, code_challenge_method="plain"))
    _assert_error_redirect(response, authorization)


def test_code_challenge_without_a_method_defaults_to_plain_and_is_refused(browser, public_client):
    """RFC 7636 §4.3: code_challenge_method defaults to "plain" when absent, which UAA does not accept."""
    authorization = _request_for(public_client)
    response = browser.get(authorization.url(code_challenge_method=None))
    _assert_error_redirect(response, authorization)


def test_unknown_code_challenge_method_is_refused(browser, public_client):
    """RFC 7636 §4.4.1 and §4.3: only "plain" and "S256" are defined; UAA takes S256 alone."""
    authorization = _request_for(public_client)
    response = browser.get(authorization.url(code_challenge_method="S512"))
    _assert_error_redirect(response, authorization)


@pytest.mark.parametrize(
    ("field", "value"),
    [("code_challenge", ""), ("code_challenge_method", "plain"), ("code_challenge_method", "")],
)
def test_consent_form_cannot_drop_or_downgrade_the_code_challenge(browser, public_client, field, value):
    """RFC 7636 §4.4.1, RFC 9700 §2.1.1: the approved request is checked again, not trusted from the form."""
    authorization = _request_for(public_client)
    data = _consent_form(browser, authorization)
    data[field] = value
    response = browser.post("/oauth/authorize", data)
    _assert_error_redirect(response, authorization)


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_s256_code_verifier_redeems_the_code(request, browser, kind):
    """RFC 7636 §4.6: the server compares BASE64URL(SHA256(code_verifier)) with the code_challenge."""
    registered = request.getfixturevalue(kind)
    authorization = _request_for(registered)
    assert authorization.challenge == _s256(authorization.verifier)
    params = authorize(browser, authorization)
    response = _exchange(registered, authorization, params["code"])
    assert response.status_code == HTTPStatus.OK, response.content


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_missing_code_verifier_is_refused(request, browser, kind):
    """RFC 7636 §4.5 and §4.6: code_verifier is REQUIRED once a challenge was sent; no tokens without it."""
    registered = request.getfixturevalue(kind)
    authorization = _request_for(registered)
    params = authorize(browser, authorization)
    data = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT_URI,
        "client_id": registered.client_id,
    }
    auth = registered.basic if registered.secret else None
    response = form_post(HttpClient(), "/oauth/token", data, auth=auth)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"
    assert "access_token" not in response.json()


@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_mismatching_code_verifier_is_invalid_grant(request, browser, caplog, kind):
    """RFC 7636 §4.6: if the values are not equal, an error response indicating "invalid_grant" MUST be
    returned. The verifier is never logged.
    """
    registered = request.getfixturevalue(kind)
    authorization = _request_for(registered)
    params = authorize(browser, authorization)
    wrong_verifier, _ = pkce_pair()
    response = _exchange(registered, authorization, params["code"], code_verifier=wrong_verifier)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert response["Cache-Control"] == "no-store"
    assert wrong_verifier not in caplog.text


def test_code_challenge_sent_as_the_verifier_is_invalid_grant(browser, public_client):
    """RFC 7636 §4.6: the verifier is hashed before comparison, so the (public) challenge never matches."""
    authorization = _request_for(public_client)
    params = authorize(browser, authorization)
    response = _exchange(public_client, authorization, params["code"], code_verifier=authorization.challenge)
    assert response.json()["error"] == "invalid_grant"


def test_verifier_of_another_authorization_request_is_invalid_grant(browser, public_client):
    """RFC 7636 §1: only the client that started this authorization request holds its code_verifier."""
    mine = _request_for(public_client)
    theirs = _request_for(public_client)
    params = authorize(browser, mine)
    response = _exchange(public_client, mine, params["code"], code_verifier=theirs.verifier)
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "!", "a" * 42 + " ", "ä" * 43])
def test_code_verifier_outside_the_rfc_alphabet_or_length_is_refused(browser, public_client, verifier):
    """RFC 7636 §4.1: code_verifier is 43 to 128 of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"."""
    authorization = AuthorizationRequest(
        client_id=public_client.client_id,
        redirect_uri=REDIRECT_URI,
        verifier=verifier,
        challenge=_s256(verifier),
    )
    params = authorize(browser, authorization)
    response = _exchange(public_client, authorization, params["code"])
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"


def test_a_failed_verifier_does_not_spend_the_code_for_the_rightful_client(browser, public_client):
    """RFC 7636 §4.6: a wrong verifier gets no tokens; the client holding the right one still redeems once."""
    authorization = _request_for(public_client)
    params = authorize(browser, authorization)
    wrong_verifier, _ = pkce_pair()
    assert _exchange(public_client, authorization, params["code"], code_verifier=wrong_verifier).json()[
        "error"
    ] == ("invalid_grant")
    response = _exchange(public_client, authorization, params["code"])
    assert response.status_code == HTTPStatus.OK, response.content


# --- the code_challenge's own grammar, checked at the authorization endpoint ---------------------
#
# Attacker: none in particular; a client bug (a hex digest, padding, the verifier itself) must be found at
# authorize, where the developer sees it in the redirect, and not produce a code no verifier can redeem.

S256_CHALLENGE_IS_43 = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 Appendix B


@pytest.mark.parametrize(
    "challenge",
    [
        S256_CHALLENGE_IS_43[:42],  # too short
        S256_CHALLENGE_IS_43 + "A",  # 44
        S256_CHALLENGE_IS_43 + "=",  # padded (RFC 7636 §3: no padding)
        "a" * 128,  # long enough for "plain", not a SHA-256 digest
        S256_CHALLENGE_IS_43[:42] + "+",  # base64, not base64url
        S256_CHALLENGE_IS_43[:42] + "/",
        S256_CHALLENGE_IS_43[:42] + ".",  # unreserved but outside base64url
        S256_CHALLENGE_IS_43[:42] + "N",  # 43 characters, but not the encoding of 32 octets
        "ä" * 43,
        hashlib.sha256(b"verifier").hexdigest(),  # a hex digest: 64 characters
    ],
)
@pytest.mark.parametrize("kind", ["confidential_client", "public_client"])
def test_malformed_s256_code_challenge_is_invalid_request_at_authorize(request, browser, kind, challenge):
    """RFC 7636 §4.2: code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), without padding
    (§3): exactly 43 base64url characters; §4.4.1: otherwise invalid_request at the redirect URI."""
    authorization = _request_for(request.getfixturevalue(kind))
    response = browser.get(authorization.url(code_challenge=challenge))
    _assert_error_redirect(response, authorization)


def test_malformed_code_challenge_is_refused_before_sign_in(client, public_client):
    """RFC 7636 §4.4.1, OIDC Core §3.1.2.6: the client learns of the bad request without a sign-in."""
    authorization = _request_for(public_client)
    response = client.get(authorization.url(code_challenge="x" * 42))
    _assert_error_redirect(response, authorization)


def test_malformed_code_challenge_is_refused_when_consent_is_skipped(browser, public_client):
    """RFC 7636 §4.4.1: no code is issued for a malformed challenge, even where no page is shown."""
    authorize(browser, _request_for(public_client))
    authorization = _request_for(public_client)
    response = browser.get(authorization.url(code_challenge="x" * 42))
    _assert_error_redirect(response, authorization)


def test_consent_form_cannot_carry_a_malformed_code_challenge(browser, public_client):
    """RFC 7636 §4.4.1: the approved request is checked again, including the challenge's grammar."""
    authorization = _request_for(public_client)
    data = _consent_form(browser, authorization)
    data["code_challenge"] = "x" * 42
    response = browser.post("/oauth/authorize", data)
    _assert_error_redirect(response, authorization)


def test_rfc7636_appendix_b_challenge_is_accepted(browser, public_client):
    """RFC 7636 Appendix B: the example verifier and challenge redeem a code."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert _s256(verifier) == S256_CHALLENGE_IS_43
    authorization = AuthorizationRequest(
        client_id=public_client.client_id,
        redirect_uri=REDIRECT_URI,
        verifier=verifier,
        challenge=_s256(verifier),
    )
    params = authorize(browser, authorization)
    assert _exchange(public_client, authorization, params["code"]).status_code == HTTPStatus.OK
