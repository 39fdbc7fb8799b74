"""OIDC Core §3.1.2.1 ``prompt``: "a space delimited, case sensitive list of ASCII string values". UAA
answers none, login and consent, which is what discovery lists; any other value is refused.

Attacker: a client (or whoever edits the link) sending a value UAA would otherwise ignore, so that a
request that asked for an interaction (``CONSENT``, ``select_account``) silently gets a code without it.
node-oidc-provider refuses unsupported prompt values with invalid_request; so does UAA.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, query_of
from uaa.oauth.models import AuthorizationCode

ISSUER = "http://testserver"


@pytest.fixture
def remembered(browser, confidential_client):
    """The user consented to the client before, so a request that asks for nothing gets a code at once."""
    authorize(
        browser, AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    )
    AuthorizationCode.objects.all().delete()
    return browser


def _request(registered):
    return AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)


UNSUPPORTED = [
    "CONSENT",
    "Login",
    "NONE",
    "select_account",
    "create",
    "consent select_account",
    "login\tconsent",
]


@pytest.mark.parametrize("prompt", UNSUPPORTED)
def test_an_unsupported_prompt_value_is_invalid_request_not_ignored(remembered, confidential_client, prompt):
    """OIDC Core §3.1.2.1: prompt values are case sensitive; UAA supports none, login and consent, and a
    request naming another value is refused (RFC 6749 §4.1.2.1 invalid_request), never answered with a
    code as if the value were not there."""
    request = _request(confidential_client)
    response = remembered.get(request.url(prompt=prompt))
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params
    assert prompt not in params.get("error_description", "")
    assert not AuthorizationCode.objects.exists()


@pytest.mark.parametrize("prompt", ["select_account", "CONSENT"])
def test_an_unsupported_prompt_value_is_refused_before_sign_in(client, confidential_client, prompt):
    """RFC 6749 §4.1.2.1 / OIDC Core §3.1.2.6: the error goes to the client before anyone signs in."""
    response = client.get(_request(confidential_client).url(prompt=prompt))
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert query_of(response["Location"])["error"] == "invalid_request"


@pytest.mark.parametrize("prompt", ["none login", "none consent", "consent none"])
def test_none_with_another_value_is_invalid_request_without_openid_too(browser, confidential_client, prompt):
    """OIDC Core §3.1.2.1: "If this parameter contains none with any other value, an error is returned";
    also for a request without the openid scope, which oauthlib's OIDC checks do not see."""
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI, scope="profile"
    )
    params = query_of(browser.get(request.url(prompt=prompt))["Location"])
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_discovery_lists_exactly_the_prompt_values_that_are_answered(client, db):
    """OIDC Discovery 1.0 (Prompt Create §4.1 prompt_values_supported): the values the OP supports."""
    document = client.get("/.well-known/openid-configuration").json()
    assert document["prompt_values_supported"] == ["none", "login", "consent"]


@pytest.mark.parametrize("prompt", ["login", "consent", "login consent", "consent  login", ""])
def test_every_listed_prompt_value_is_accepted(browser, confidential_client, prompt):
    """OIDC Core §3.1.2.1: the supported values, alone or together (repeated spaces are only delimiters;
    an empty value is treated as omitted, RFC 6749 §3.1)."""
    response = browser.get(_request(confidential_client).url(prompt=prompt))
    location = response.get("Location", "")
    assert "error=" not in location
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND)


def test_prompt_none_alone_is_accepted(client, confidential_client):
    """OIDC Core §3.1.2.6: none is answered (here login_required), not refused as invalid."""
    params = query_of(HttpClient().get(_request(confidential_client).url(prompt="none"))["Location"])
    assert params["error"] == "login_required"
