"""RFC 9207 Authorization Server Issuer Identification: ``iss`` in every authorization response, once.

Attacker: another authorization server a client also talks to (a mix-up attack, RFC 9700 §4.4). The
client tells the responses apart by ``iss``, so every redirect back to it (the code, and every error)
carries UAA's issuer identifier, exactly once, whatever the registered redirect URI's own query holds.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.oauth_client import AuthorizationRequest, authorize
from uaa.oauth import rfc9207

ISSUER = "http://testserver"


@pytest.fixture
def client_with_query_in_redirect_uri(client_factory):
    """A redirect URI whose own query has a parameter ending in "iss" (RFC 6749 §3.1.2 allows a query)."""
    return client_factory(name="Query RP", redirect_uris=["https://rp.example.com/cb?kiss=1"])


@pytest.fixture
def client_with_iss_in_redirect_uri(client_factory):
    """A redirect URI whose own query has an ``iss`` parameter (RFC 6749 §3.1.2 allows a query)."""
    return client_factory(name="Iss RP", redirect_uris=["https://rp.example.com/cb?iss=https%3A%2F%2Fother"])


@pytest.mark.parametrize(
    "overrides",
    [{"code_challenge_method": "plain"}, {"scope": "openid bogus"}, {"prompt": "none"}, {"max_age": "x"}],
)
def test_every_error_redirect_carries_iss_even_when_the_redirect_uri_has_a_query(
    browser, client_with_query_in_redirect_uri, overrides
):
    """RFC 9207 §2: the iss parameter is in every authorization response, error responses included."""
    request = AuthorizationRequest(
        client_id=client_with_query_in_redirect_uri.client_id, redirect_uri="https://rp.example.com/cb?kiss=1"
    )
    response = browser.get(request.url(**overrides))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("https://rp.example.com/cb?kiss=1&")
    params = parse_qs(urlsplit(response["Location"]).query)
    assert params["kiss"] == ["1"]
    assert params["iss"] == [ISSUER]
    assert params["state"] == [request.state]
    assert "error" in params


def test_the_code_response_carries_iss_once(browser, client_with_query_in_redirect_uri):
    """RFC 9207 §2: "an authorization server supporting this specification MUST indicate its identity by
    including the iss parameter in the response"."""
    request = AuthorizationRequest(
        client_id=client_with_query_in_redirect_uri.client_id, redirect_uri="https://rp.example.com/cb?kiss=1"
    )
    response = browser.get(request.url())
    if response.status_code == HTTPStatus.OK:  # the consent page
        form = response.context["form"]
        response = browser.post(
            "/oauth/authorize", {**{n: form.initial.get(n) or "" for n in form.fields}, "allow": "Authorize"}
        )
    params = parse_qs(urlsplit(response["Location"]).query)
    assert params["iss"] == [ISSUER]
    assert params["kiss"] == ["1"]
    assert "code" in params


@pytest.mark.parametrize("overrides", [{}, {"prompt": "none"}, {"code_challenge_method": "plain"}])
def test_a_redirect_uri_with_its_own_iss_gets_only_the_issuers(
    browser, client_with_iss_in_redirect_uri, overrides
):
    """RFC 9207 §2: the client compares iss with the issuer identifier it expects, so the response holds one
    iss, UAA's, for the code and every error alike (django-oauth-toolkit's rule for the code response)."""
    redirect_uri = "https://rp.example.com/cb?iss=https%3A%2F%2Fother"
    request = AuthorizationRequest(
        client_id=client_with_iss_in_redirect_uri.client_id, redirect_uri=redirect_uri
    )
    if overrides:
        location = browser.get(request.url(**overrides))["Location"]
        params = parse_qs(urlsplit(location).query)
        assert "error" in params
    else:
        params = {name: [value] for name, value in authorize(browser, request).items()}
        assert "code" in params
    assert params["iss"] == [ISSUER]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://rp.example.com/cb?code=c", "https://rp.example.com/cb?code=c&iss=http%3A%2F%2Ftestserver"),
        ("https://rp.example.com/cb?code=c&iss=http%3A%2F%2Ftestserver", None),  # unchanged
        (
            "https://rp.example.com/cb?iss=x&code=c",
            "https://rp.example.com/cb?code=c&iss=http%3A%2F%2Ftestserver",
        ),
    ],
)
def test_with_iss_adds_the_issuer_exactly_once(uri, expected):
    """RFC 9207 §2: one iss, the authorization server's issuer identifier."""
    assert rfc9207.with_iss(uri) == (expected or uri)
