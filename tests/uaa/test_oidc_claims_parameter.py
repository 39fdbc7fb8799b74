"""OIDC Core §5.5: the claims request parameter: claims one by one, for the ID token or userinfo.

What is released, and why a claim outside the granted scopes needs the consent page, is
uaa/oauth/claims.py's (its docstring is the policy); these tests hold it to that, and to bad input.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post, query_of
from tests.uaa.endpoints import userinfo, verified


@pytest.fixture
def user(db):
    return UserFactory(phone_number="+442079460000", nickname="Ada")


def _request(client, *, scope="openid", claims=None, **extra):
    params = {"claims": json.dumps(claims)} if claims is not None else {}
    return AuthorizationRequest(
        client_id=client.client_id, redirect_uri=REDIRECT_URI, scope=scope, extra={**params, **extra}
    )


def _tokens(browser, client, request, **token_request):
    code = authorize(browser, request)["code"]
    response = exchange_code(HttpClient(), code=code, request=request, auth=client.basic, **token_request)
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


def _released(browser, client, request):
    tokens = _tokens(browser, client, request)
    return userinfo(tokens["access_token"]).json(), verified(tokens["id_token"])[1], tokens


# --- placement ----------------------------------------------------------------------------------------
def test_a_claim_asked_for_at_userinfo_is_released_there_only(browser, confidential_client, user):
    """OIDC Core §5.5: userinfo "requests that the listed individual Claims be returned from the UserInfo
    Endpoint"; the scope alone (openid) would release none of them. Not released before issue 11."""
    request = _request(confidential_client, claims={"userinfo": {"email": None, "nickname": None}})
    body, id_token, _ = _released(browser, confidential_client, request)
    assert body["email"] == user.email and body["nickname"] == "Ada"
    assert "email" not in id_token and "nickname" not in id_token


def test_a_claim_asked_for_in_the_id_token_is_released_there_only(browser, confidential_client, user):
    """OIDC Core §5.5: id_token "requests that the listed individual Claims be returned in the ID Token"."""
    request = _request(confidential_client, claims={"id_token": {"phone_number": {"essential": True}}})
    body, id_token, _ = _released(browser, confidential_client, request)
    assert id_token["phone_number"] == "+442079460000"
    assert set(body) == {"sub"}


def test_the_claims_outlive_a_refresh(browser, confidential_client, user):
    """The claims a grant was given hold for every access token of the grant, refreshed ones too."""
    request = _request(confidential_client, claims={"userinfo": {"phone_number": None}})
    tokens = _tokens(browser, confidential_client, request)
    refreshed = form_post(
        HttpClient(),
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=confidential_client.basic,
    )
    assert refreshed.status_code == HTTPStatus.OK, refreshed.content
    assert userinfo(refreshed.json()["access_token"]).json()["phone_number"] == "+442079460000"


def test_an_essential_claim_the_user_has_no_value_for_is_left_out(browser, confidential_client, user):
    """OIDC Core §5.5.1: essential "does not mean that the End-User has consented"; §5.5: the server
    returns what it can, and a missing claim is not an error."""
    request = _request(confidential_client, claims={"userinfo": {"website": {"essential": True}}})
    body, _, _ = _released(browser, confidential_client, request)
    assert "website" not in body


def test_claims_of_a_granted_scope_are_released_as_before(browser, confidential_client, user):
    request = _request(confidential_client, scope="openid profile", claims={"userinfo": {"nickname": None}})
    body, id_token, _ = _released(browser, confidential_client, request)
    assert body["nickname"] == "Ada" and id_token["nickname"] == "Ada"


def test_unknown_claim_names_are_ignored(browser, confidential_client, user):
    """OIDC Core §5.5: "Claims that are not understood by the OP MUST be ignored" (not an error)."""
    request = _request(confidential_client, claims={"userinfo": {"shoe_size": None}, "x-other": 1})
    body, _, _ = _released(browser, confidential_client, request)
    assert set(body) == {"sub"}


# --- consent --------------------------------------------------------------------------------------------
def test_the_consent_page_lists_the_claims_asked_for_outside_the_scopes(browser, confidential_client, user):
    """OIDC Core §3.1.2.4: consent to what is released; a claim outside the scopes is listed by itself."""
    request = _request(confidential_client, claims={"userinfo": {"phone_number": None, "email": None}})
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.OK
    assert [name for name, _ in response.context["claim_items"]] == ["email", "phone_number"]
    assert b"your phone number" in response.content


def test_claims_outside_the_scopes_are_dropped_when_the_consent_page_is_skipped(
    browser, confidential_client, user
):
    """A remembered consent covers its scopes only: a claim asked for later, outside them, is not
    released without a consent page that showed it."""
    _tokens(browser, confidential_client, _request(confidential_client))  # consent to openid remembered
    request = _request(confidential_client, claims={"userinfo": {"phone_number": None}})
    code = authorize(browser, request, consent=False)["code"]  # no page this time
    response = exchange_code(HttpClient(), code=code, request=request, auth=confidential_client.basic)
    assert set(userinfo(response.json()["access_token"]).json()) == {"sub"}


def test_a_trusted_clients_claims_are_released_without_a_page(browser, client_factory, user):
    """A trusted (first-party) client's consent is an admin's, for its claims as for its scopes."""
    trusted = client_factory(trusted=True)
    request = _request(trusted, claims={"userinfo": {"phone_number": None}})
    code = authorize(browser, request, consent=False)["code"]
    tokens = exchange_code(HttpClient(), code=code, request=request, auth=trusted.basic).json()
    assert userinfo(tokens["access_token"]).json()["phone_number"] == "+442079460000"


def test_the_consent_form_cannot_change_the_claims(browser, confidential_client, user):
    """The claims are bound to the consent page (uaa/oauth/consent.py): an edited copy is refused."""
    request = _request(confidential_client, claims={"userinfo": {"email": None}})
    form = browser.get(request.url()).context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(allow="Authorize", claims=json.dumps({"userinfo": {"email": None, "phone_number": None}}))
    response = browser.post("/oauth/authorize", data)
    assert "code" not in query_of(response.get("Location", ""))


# --- attacks --------------------------------------------------------------------------------------------
def test_another_clients_claims_request_does_not_widen_a_token(
    browser, confidential_client, client_factory, user
):
    """The claims are the grant's: client A's request never shows in client B's token or userinfo."""
    other = client_factory(name="Other")
    _released(browser, other, _request(other, claims={"userinfo": {"phone_number": None}}))
    body, id_token, _ = _released(browser, confidential_client, _request(confidential_client))
    assert set(body) == {"sub"} and "phone_number" not in id_token


def test_a_claims_parameter_at_the_token_endpoint_adds_nothing(browser, confidential_client, user):
    """The ID token's claims are the authorization request's; a token request cannot add to them."""
    request = _request(confidential_client)
    extra = json.dumps({"id_token": {"phone_number": None, "email": None}})
    tokens = _tokens(browser, confidential_client, request, claims=extra)
    id_token = verified(tokens["id_token"])[1]
    assert "phone_number" not in id_token and "email" not in id_token


def test_a_sub_value_of_another_user_gets_no_code(browser, confidential_client, user):
    """OIDC Core §5.5.1: if sub is requested with a value and it is not the End-User's, "the Authorization
    Server MUST NOT reply with an ID Token or Access Token for the request"; the failed authentication is
    login_required (§3.1.2.6) on the registered redirect URI with state and iss."""
    for member in ("id_token", "userinfo"):
        request = _request(confidential_client, claims={member: {"sub": {"value": "someone-else"}}})
        params = authorize(browser, request)
        assert params["error"] == "login_required", params
        assert params["state"] == request.state and "iss" in params
        assert "code" not in params


def test_a_sub_value_of_the_signed_in_user_is_answered(browser, confidential_client, user):
    request = _request(confidential_client, claims={"id_token": {"sub": {"value": str(user.pk)}}})
    _, id_token, _ = _released(browser, confidential_client, request)
    assert id_token["sub"] == str(user.pk)


MALFORMED = [
    "not json",
    "[]",
    "1",
    '"userinfo"',
    "true",
    '{"userinfo": []}',
    '{"userinfo": "email"}',
    '{"id_token": {"email": 1}}',
    '{"id_token": {"email": {"essential": "yes"}}}',
    '{"userinfo": {"email": {"values": "a"}}}',
    '{"userinfo": {"email": {"values": []}}}',
    '{"id_token": {"sub": {"value": {"nested": {"deeper": [1, [2, [3]]]}}}}}',
    "[" * 2000 + "]" * 2000,
    '{"userinfo": {"email": {"value": ' + "[" * 900 + "]" * 900 + "}}}",
    json.dumps({"userinfo": {f"claim{n}": None for n in range(200)}})[:4000] + "}}",
]


@pytest.mark.parametrize("value", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_claims_parameter_is_invalid_request_on_the_redirect(browser, confidential_client, value):
    """OIDC Core §5.5 and §3.1.2.6: a claims parameter that is not the JSON object §5.5 describes is
    invalid_request, redirected with state and iss; never a 500. Several were accepted before issue 11."""
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI, extra={"claims": value}
    )
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.FOUND, (response.status_code, response.content[:300])
    params = query_of(response["Location"])
    assert params["error"] == "invalid_request", params
    assert params["state"] == request.state and "iss" in params


def test_a_huge_claims_parameter_is_refused_without_a_500(browser, confidential_client):
    """docs/endpoints.md: claims is at most 4096 characters; longer is refused (error page), never a 500."""
    value = json.dumps({"userinfo": {f"claim{n}": {"essential": True} for n in range(2000)}})
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI, extra={"claims": value}
    )
    response = browser.get(request.url())
    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
    assert "code=" not in response.get("Location", "")


def test_claim_names_reach_the_consent_page_escaped_or_not_at_all(browser, confidential_client, user):
    """RFC 6749 §10.14: only known claims are listed, with UAA's own words; the client's text never is."""
    script = '<script>alert("claims")</script>'
    request = _request(confidential_client, claims={"userinfo": {script: None, "email": {"value": script}}})
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.OK
    assert script.encode() not in response.content
    assert [name for name, _ in response.context["claim_items"]] == ["email"]
