"""Two breaks of the claims parameter found by the issue 11 red team (against a production gunicorn on
PostgreSQL), each performed here.

1. Attacker: a relying party (malicious, or passing on what its own user typed) that puts a JSON value no
   database column can hold into a claim's ``value``/``values``: ``NaN``, ``Infinity``, ``1e400`` (parsed as
   infinity), a lone surrogate, a NUL. The code was issued and every redemption was a 500 (PostgreSQL's
   jsonb refused it: ``DataError``). Must be: ``invalid_request`` on the redirect, no code.
2. Attacker: the relying party, against the user's choice on the consent page. It asks for the ``phone``
   scope and, with ``claims``, for ``phone_number``; the user grants ``openid`` only. ``phone_number`` was
   not listed on its own (its scope was on the page) and its scope was refused, yet userinfo released it.
   Must be: a claim outside the granted scopes is kept only if the page listed it by itself.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.factories import UserFactory
from tests.oauth_client import AuthorizationRequest, exchange_code, query_of
from tests.uaa.endpoints import userinfo, verified

PHONE = "+442079460000"


@pytest.fixture
def user(db):
    return UserFactory(phone_number=PHONE, nickname="Ada")


UNSTORABLE = [
    '{"id_token": {"name": {"value": NaN}}}',
    '{"id_token": {"name": {"value": Infinity}}}',
    '{"id_token": {"name": {"value": -Infinity}}}',
    '{"id_token": {"name": {"value": 1e400}}}',
    '{"userinfo": {"email": {"values": ["a", NaN]}}}',
    '{"id_token": {"name": {"value": "\\ud800"}}}',
    '{"id_token": {"name": {"value": "a\\u0000b"}}}',
    '{"userinfo": {"email": {"values": ["\\udfff"]}}}',
]


@pytest.mark.parametrize("value", UNSTORABLE, ids=range(len(UNSTORABLE)))
def test_a_claim_value_no_database_can_store_is_invalid_request_not_a_500(
    browser, confidential_client, user, value
):
    request = AuthorizationRequest(
        client_id=confidential_client.client_id,
        redirect_uri=REDIRECT_URI,
        scope="openid profile email",
        extra={"claims": value},
    )
    browser.raise_request_exception = False
    response = browser.get(request.url())
    assert response.status_code == HTTPStatus.FOUND, (response.status_code, response.content[:300])
    params = query_of(response["Location"])
    assert params.get("error") == "invalid_request", params
    assert "code" not in params


def _answer(browser, request, *, scope):
    """The consent page for ``request``, answered granting ``scope`` (a narrowing the page allows)."""
    page = browser.get(request.url())
    assert page.status_code == HTTPStatus.OK, page.content[:300]
    form = page.context["form"]
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(allow="Authorize", scope=scope)
    response = browser.post("/oauth/authorize", data)
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    return page, query_of(response["Location"])


def _request(client, *, scope, claims):
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=REDIRECT_URI,
        scope=scope,
        extra={"claims": json.dumps(claims), "prompt": "consent"},
    )


def test_a_claim_of_a_scope_the_user_refused_is_not_released(browser, confidential_client, user):
    request = _request(confidential_client, scope="openid phone", claims={"userinfo": {"phone_number": None}})
    page, params = _answer(browser, request, scope="openid")
    assert page.context["claim_items"] == []  # phone_number was on the page only through its scope
    tokens = exchange_code(HttpClient(), code=params["code"], request=request, auth=confidential_client.basic)
    assert tokens.status_code == HTTPStatus.OK, tokens.content
    assert tokens.json()["scope"] == "openid"
    assert "phone_number" not in userinfo(tokens.json()["access_token"]).json()


def test_the_same_claim_in_the_id_token_is_dropped_too(browser, confidential_client, user):
    request = _request(
        confidential_client, scope="openid phone email", claims={"id_token": {"phone_number": None}}
    )
    _, params = _answer(browser, request, scope="openid email")
    tokens = exchange_code(HttpClient(), code=params["code"], request=request, auth=confidential_client.basic)
    claims = verified(tokens.json()["id_token"])[1]
    assert "phone_number" not in claims


def test_a_claim_the_page_listed_by_itself_is_still_released_after_narrowing(
    browser, confidential_client, user
):
    """What stays allowed: phone_number asked for on its own (no phone scope) is on the page's list, so
    consenting releases it whatever else the user narrowed."""
    request = _request(confidential_client, scope="openid email", claims={"userinfo": {"phone_number": None}})
    page, params = _answer(browser, request, scope="openid")
    assert [name for name, _ in page.context["claim_items"]] == ["phone_number"]
    tokens = exchange_code(HttpClient(), code=params["code"], request=request, auth=confidential_client.basic)
    body = userinfo(tokens.json()["access_token"]).json()
    assert body["phone_number"] == PHONE
    assert "email" not in body


def test_granting_every_scope_shown_releases_the_scopes_claims(browser, confidential_client, user):
    request = _request(confidential_client, scope="openid phone", claims={"userinfo": {"phone_number": None}})
    _, params = _answer(browser, request, scope="openid phone")
    tokens = exchange_code(HttpClient(), code=params["code"], request=request, auth=confidential_client.basic)
    assert userinfo(tokens.json()["access_token"]).json()["phone_number"] == PHONE
