"""Parameters named like the attributes oauthlib's Request carries for the server (red team rth, issue 10).

oauthlib's ``Request`` starts with ``user = None`` and ``nonce = None`` and takes every request parameter of
the same name in their place. Attacker: a registered client, sending ``user=…`` or ``nonce=…`` at the token
endpoint. They must not break the endpoint (a 500 and an ERROR log line per request) nor put a value of their
own into a token: the user of a token is the grant's, and an ID token's nonce is the one the authorization
request carried (OIDC Core §3.1.3.6), never the token request's.
"""

from __future__ import annotations

from http import HTTPStatus

from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code
from tests.uaa.endpoints import token_request, unverified_claims


def test_a_user_parameter_on_client_credentials_is_not_the_tokens_user(service_client, user):
    for value in ("1", "", str(user.pk), "admin"):
        response = token_request(service_client, {"grant_type": "client_credentials", "user": value})
        assert response.status_code == HTTPStatus.OK, (value, response.content)
        claims = unverified_claims(response.json()["access_token"])
        assert claims["sub"] == service_client.client_id
        assert "auth_time" not in claims


def test_a_nonce_sent_to_the_token_endpoint_never_enters_the_id_token(browser, confidential_client):
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI, nonce=""
    )
    params = authorize(browser, request, nonce=None)
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=confidential_client.basic, nonce="INJECTED"
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert "nonce" not in unverified_claims(response.json()["id_token"])


def test_the_authorization_requests_nonce_wins_over_one_sent_to_the_token_endpoint(
    browser, confidential_client
):
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI, nonce="REAL"
    )
    params = authorize(browser, request)
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=confidential_client.basic, nonce="INJECTED"
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert unverified_claims(response.json()["id_token"])["nonce"] == "REAL"
