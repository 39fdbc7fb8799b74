"""RFC 8252 §7.3 loopback redirects: any port for native (public) clients only, exact ports for the rest.

Attacker: another program on the user's machine (or a second web app on the same host) listening on a
loopback port the client did not register. For a confidential web client registered with
``http://127.0.0.1:3101/callback`` it must not receive the code by naming ``:3102`` in the request
(RFC 9700 §4.1.3: exact matching; RFC 8252 §7.3 allows the port exception for native apps only).
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ValidationError
from django.test import Client as HttpClient

from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from uaa.oauth.models import Client

WEB_CALLBACK = "http://127.0.0.1:3101/callback"
WEB_BYE = "http://127.0.0.1:3101/bye"


def _assert_error_page_without_redirect(response):
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    assert "oauth/error.html" in [template.name for template in response.templates]


@pytest.fixture
def loopback_web_client(client_factory):
    """A confidential web client whose (local development) callback listens on port 3101."""
    return client_factory(
        name="Local web app", redirect_uris=[WEB_CALLBACK], post_logout_redirect_uris=[WEB_BYE]
    )


@pytest.fixture
def native_client(client_factory):
    """A native app (public client) registered with loopback redirect URIs, as RFC 8252 §7.3 describes."""
    return client_factory(
        name="Desktop app",
        client_type=Client.CLIENT_PUBLIC,
        redirect_uris=["http://127.0.0.1/callback", "http://[::1]/callback"],
        post_logout_redirect_uris=[],
    )


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:3102/callback", "http://127.0.0.1/callback", "http://127.0.0.1:80/callback"],
)
def test_confidential_client_gets_no_code_at_another_loopback_port(
    browser, loopback_web_client, redirect_uri
):
    """RFC 9700 §4.1.3 / RFC 8252 §7.3: the any-port rule is for native apps; a confidential client's
    loopback redirect URI is compared exactly, port included (RFC 6749 §4.1.2.1: error page, no redirect)."""
    request = AuthorizationRequest(client_id=loopback_web_client.client_id, redirect_uri=redirect_uri)
    response = browser.get(request.url())
    _assert_error_page_without_redirect(response)


def test_confidential_client_on_ipv6_loopback_gets_no_code_at_another_port(browser, client_factory):
    """RFC 8252 §7.3 names both 127.0.0.1 and [::1]; the exact-port rule covers both for web clients."""
    registered = client_factory(name="IPv6 web app", redirect_uris=["http://[::1]:3101/callback"])
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri="http://[::1]:3102/callback")
    _assert_error_page_without_redirect(browser.get(request.url()))


def test_confidential_client_at_its_registered_loopback_port_gets_a_code(browser, loopback_web_client):
    """RFC 6749 §3.1.2: the registered redirect URI itself works, port and all."""
    request = AuthorizationRequest(client_id=loopback_web_client.client_id, redirect_uri=WEB_CALLBACK)
    params = authorize(browser, request)
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=loopback_web_client.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content


def test_signed_out_browser_gets_the_error_page_for_another_loopback_port(client, loopback_web_client):
    """RFC 6749 §4.1.2.1: the redirect URI is checked before anyone is asked to sign in."""
    request = AuthorizationRequest(
        client_id=loopback_web_client.client_id, redirect_uri="http://127.0.0.1:3102/callback"
    )
    _assert_error_page_without_redirect(client.get(request.url()))


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:49152/callback", "http://127.0.0.1/callback", "http://[::1]:50001/callback"],
)
def test_native_client_may_use_any_loopback_port(browser, native_client, redirect_uri):
    """RFC 8252 §7.3: the authorization server MUST allow any port to be specified at the time of the
    request for loopback IP redirect URIs (native apps get an ephemeral port from the OS)."""
    request = AuthorizationRequest(client_id=native_client.client_id, redirect_uri=redirect_uri)
    params = authorize(browser, request)
    assert params["code"]
    response = exchange_code(HttpClient(), code=params["code"], request=request)
    assert response.status_code == HTTPStatus.OK, response.content


def test_native_client_loopback_path_must_still_match(browser, native_client):
    """RFC 8252 §7.3: only the port is free; scheme, host and path are compared as registered."""
    request = AuthorizationRequest(
        client_id=native_client.client_id, redirect_uri="http://127.0.0.1:5000/other"
    )
    _assert_error_page_without_redirect(browser.get(request.url()))


def test_native_client_localhost_is_not_a_loopback_ip(browser, client_factory):
    """RFC 8252 §8.3: "localhost" is NOT RECOMMENDED: it is refused at registration (uaa/oauth/rfc8252.py
    check_redirect_uri), and one stored before that rule gets no port exception; ports match exactly."""
    with pytest.raises(ValidationError):
        client_factory(
            name="Localhost app", client_type=Client.CLIENT_PUBLIC, redirect_uris=["http://localhost:3101/cb"]
        )
    registered = client_factory(name="Localhost app", client_type=Client.CLIENT_PUBLIC)
    Client.objects.filter(pk=registered.client.pk).update(redirect_uris="http://localhost:3101/cb")
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri="http://localhost:3102/cb")
    _assert_error_page_without_redirect(browser.get(request.url()))


def test_token_request_must_repeat_the_native_clients_port_exactly(browser, native_client):
    """RFC 6749 §4.1.3: the token request's redirect_uri is identical to the authorization request's;
    the any-port rule does not apply to that comparison."""
    request = AuthorizationRequest(
        client_id=native_client.client_id, redirect_uri="http://127.0.0.1:49152/callback"
    )
    params = authorize(browser, request)
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, redirect_uri="http://127.0.0.1:49153/callback"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"


def test_token_request_must_repeat_the_web_clients_port_exactly(browser, loopback_web_client):
    """RFC 6749 §4.1.3: a code issued for :3101 is not redeemed with :3102."""
    request = AuthorizationRequest(client_id=loopback_web_client.client_id, redirect_uri=WEB_CALLBACK)
    params = authorize(browser, request)
    response = exchange_code(
        HttpClient(),
        code=params["code"],
        request=request,
        auth=loopback_web_client.basic,
        redirect_uri="http://127.0.0.1:3102/callback",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"


@pytest.fixture
def web_client_tokens(browser, loopback_web_client):
    request = AuthorizationRequest(client_id=loopback_web_client.client_id, redirect_uri=WEB_CALLBACK)
    params = authorize(browser, request)
    response = exchange_code(
        HttpClient(), code=params["code"], request=request, auth=loopback_web_client.basic
    )
    return response.json()


def test_post_logout_redirect_to_another_loopback_port_is_refused(browser, web_client_tokens):
    """OIDC RP-Initiated Logout §3: post_logout_redirect_uri MUST have been registered; a loopback URI at
    another port is another URI (RFC 9700 §4.1.3: exact matching)."""
    query = urlencode(
        {
            "id_token_hint": web_client_tokens["id_token"],
            "post_logout_redirect_uri": "http://127.0.0.1:3102/bye",
        }
    )
    response = browser.get(f"/oauth/logout?{query}")
    _assert_error_page_without_redirect(response)


def test_post_logout_redirect_to_the_registered_loopback_port_works(browser, web_client_tokens):
    """OIDC RP-Initiated Logout §3: the registered post_logout_redirect_uri is followed."""
    query = urlencode({"id_token_hint": web_client_tokens["id_token"], "post_logout_redirect_uri": WEB_BYE})
    response = browser.get(f"/oauth/logout?{query}")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == WEB_BYE


@pytest.mark.parametrize("redirect_uri", ["http://127.0.0.1:abc/callback", "http://127.0.0.1:99999/callback"])
def test_malformed_loopback_port_is_an_error_page_not_a_crash(
    browser, loopback_web_client, native_client, redirect_uri
):
    """RFC 6749 §4.1.2.1: a redirect URI that cannot be parsed is invalid; the user gets the error page."""
    for registered in (loopback_web_client, native_client):
        request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=redirect_uri)
        _assert_error_page_without_redirect(browser.get(request.url()))


def test_loopback_error_redirect_follows_the_same_rule(browser, loopback_web_client):
    """RFC 6749 §4.1.2.1: an error (here a bad scope) goes only to a redirect URI that is registered."""
    request = AuthorizationRequest(
        client_id=loopback_web_client.client_id,
        redirect_uri="http://127.0.0.1:3102/callback",
        scope="openid bogus",
    )
    _assert_error_page_without_redirect(browser.get(request.url()))
    request = AuthorizationRequest(
        client_id=loopback_web_client.client_id, redirect_uri=WEB_CALLBACK, scope="openid bogus"
    )
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["error"] == "invalid_scope"
