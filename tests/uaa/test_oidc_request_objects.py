"""OIDC Core §6: UAA supports neither ``request`` nor ``request_uri``, so it answers ``request_not_supported``
and ``request_uri_not_supported`` (§6.1, §6.2) on the registered redirect URI, with ``state`` and ``iss``,
whatever else is wrong with the request: a client (or a certification suite) sending a request object learns
that it is not read, not some error about parameters it put inside the object. Before, PKCE, scope and
response_type were checked first (``invalid_request``, ``invalid_scope``, ``unauthorized_client``).
An unknown client or redirect URI still gets the error page (nothing is redirected to an unverified URI).
"""

from __future__ import annotations

from http import HTTPStatus

import pytest

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, query_of

OBJECTS = [("request", "eyJhbGciOiJub25lIn0.e30."), ("request_uri", "https://rp.example.com/request.jwt")]
ALSO_WRONG = [
    {},
    {"code_challenge": None, "code_challenge_method": None},
    {"code_challenge_method": "plain"},
    {"scope": "openid bogus"},
    {"response_type": "token"},
    {"response_type": None},
    {"prompt": "select_account"},
    {"resource": "not a uri"},
    {"response_mode": "fragment"},
]


@pytest.mark.parametrize(("parameter", "value"), OBJECTS)
@pytest.mark.parametrize("overrides", ALSO_WRONG)
def test_a_request_object_is_refused_first(client, confidential_client, parameter, value, overrides):
    """Signed out: the error goes back before anyone is asked to sign in."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = client.get(request.url(**{parameter: value}, **overrides))
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params["error"] == f"{parameter}_not_supported"
    assert params["state"] == request.state
    assert params["iss"] == "http://testserver"
    assert "code" not in params


@pytest.mark.parametrize(("parameter", "value"), OBJECTS)
def test_a_request_object_of_an_unknown_client_gets_the_error_page(client, db, parameter, value):
    request = AuthorizationRequest(client_id="no-such-client", redirect_uri=REDIRECT_URI)
    response = client.get(request.url(**{parameter: value}))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
