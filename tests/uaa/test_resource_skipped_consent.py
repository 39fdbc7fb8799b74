"""RFC 8707 §2.1 on the path that skips the consent page (a trusted client, or consent given before).

Issue 11 item 7: one ``resource`` on such a request was a 500 (django-oauth-toolkit's "Resource must be a
list of URI strings": the grant got a bare string), listed under Known issues in docs/endpoints.md. These
tests failed so at 327c40d; commit 206facc made the code's resources a list (rfc8707.resources_for_new_code)
on every path, and the entry was left behind.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import urlencode

import pytest
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from tests.uaa.endpoints import unverified_claims

API = "https://api.example.com"


def _get(browser, registered, *resources):
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    query = urlencode([("resource", resource) for resource in resources])
    return request, browser.get(request.url() + "&" + query)


def _token_audience(registered, request, response):
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    params = query_of(response["Location"])
    assert "code" in params, params
    tokens = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic)
    assert tokens.status_code == HTTPStatus.OK, tokens.content
    return unverified_claims(tokens.json()["access_token"])["aud"]


def test_trusted_client_naming_one_resource_gets_a_code_for_it(browser, client_factory):
    registered = client_factory(trusted=True, allowed_resources=[API])
    request, response = _get(browser, registered, API)
    assert _token_audience(registered, request, response) == API


@pytest.mark.parametrize("prompt", [None, "none"])
def test_remembered_consent_with_one_resource_gets_a_code_for_it(browser, client_factory, prompt):
    registered = client_factory(allowed_resources=[API])
    authorize(browser, AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI))
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    response = browser.get(request.url(prompt=prompt) + "&" + urlencode({"resource": API}))
    assert _token_audience(registered, request, response) == API


def test_a_trusted_client_naming_an_unregistered_resource_gets_invalid_target(browser, client_factory):
    registered = client_factory(trusted=True, allowed_resources=[API])
    _, response = _get(browser, registered, "https://payroll.internal")
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["error"] == "invalid_target"
