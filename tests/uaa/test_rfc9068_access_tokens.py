"""RFC 9068 JWT profile for access tokens, checked the way a resource server checks them (RFC 9068 §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import urlencode

import jwt as pyjwt
import pytest
from django.conf import settings
from django.test import Client as HttpClient
from freezegun import freeze_time

from tests.conftest import REDIRECT_URI, sign_in
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, query_of
from tests.uaa.endpoints import (
    introspect,
    jwks,
    refresh,
    token_request,
    unverified_claims,
    userinfo,
    verified,
)

API = "https://api.example.com"
REPORTS = "https://reports.example.com"


def _resource_server_verifies(token: str, *, audience: str) -> dict:
    """What docs/integrating-a-resource-server.md tells an API to do, with PyJWT."""
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    keys = {key["kid"]: key for key in jwks()["keys"]}
    published = keys[header["kid"]]
    assert published["alg"] in {"RS256", "ES256", "EdDSA"}  # the allow-list; the key names its own
    public = pyjwt.PyJWK(published).key
    return pyjwt.decode(
        token,
        public,
        algorithms=[published["alg"]],
        audience=audience,
        issuer="http://testserver",
        options={"require": ["exp", "iat", "iss", "aud", "sub", "client_id", "jti"]},
    )


def _code_flow_with(browser, registered, resources, **token_overrides):
    """Authorization code flow whose authorization request names ``resources`` (RFC 8707 §2.1)."""
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    page = browser.get(request.url() + "&" + urlencode([("resource", resource) for resource in resources]))
    form = page.context["form"]
    consent = {name: form.initial.get(name) or "" for name in form.fields} | {"allow": "Authorize"}
    params = query_of(browser.post("/oauth/authorize", consent)["Location"])
    return exchange_code(
        HttpClient(), code=params["code"], request=request, auth=registered.basic, **token_overrides
    )


def test_user_access_token_passes_a_resource_servers_checks(code_flow, confidential_client, user):
    """RFC 9068 §4: typ, signature by a published key, iss, aud, exp; then sub, client_id, scope."""
    tokens = code_flow(confidential_client)["tokens"]
    claims = _resource_server_verifies(tokens["access_token"], audience="http://testserver")
    assert claims["sub"] == str(user.pk)
    assert claims["client_id"] == confidential_client.client_id
    assert set(claims["scope"].split()) == {"openid", "profile", "email"}
    assert claims["auth_time"] <= claims["iat"]
    assert claims["amr"] == ["pwd", "otp", "mfa"]  # RFC 8176 §2: password, then a TOTP code
    assert claims["acr"] == "urn:uaa:acr:mfa"


def test_client_credentials_token_passes_a_resource_servers_checks(service_client):
    """RFC 9068 §2.2 and §4: a service token verifies for its audience, with the client as subject."""
    access_token = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    claims = _resource_server_verifies(access_token, audience=API)
    assert claims["sub"] == claims["client_id"] == service_client.client_id


def test_a_resource_server_for_another_audience_rejects_the_token(service_client):
    """RFC 9068 §4: the resource server MUST validate that aud contains its own identifier."""
    access_token = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    with pytest.raises(pyjwt.InvalidAudienceError):
        _resource_server_verifies(access_token, audience=REPORTS)


def test_access_token_carries_no_personal_data(code_flow, confidential_client, user):
    """RFC 9068 §6 (privacy): identity claims belong to the ID token and userinfo, not to every API call."""
    claims = unverified_claims(code_flow(confidential_client)["tokens"]["access_token"])
    assert user.email not in str(claims)
    assert not {"email", "name", "given_name", "family_name"} & set(claims)


def test_header_names_a_published_key_and_the_at_jwt_type(code_flow, confidential_client):
    """RFC 9068 §2.1: typ is "at+jwt"; RFC 7515 §4.1.4: kid names a key in the JWKS."""
    header, _ = verified(code_flow(confidential_client)["tokens"]["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == settings.UAA_ACCESS_TOKEN_ALG
    assert header["kid"] in {key["kid"] for key in jwks()["keys"]}


def test_id_token_is_not_mistaken_for_an_access_token(code_flow, confidential_client):
    """RFC 9068 §2.1 and §4: resource servers tell the two apart by typ; the ID token's typ is "JWT"."""
    id_token = code_flow(confidential_client)["tokens"]["id_token"]
    with pytest.raises(AssertionError):
        _resource_server_verifies(id_token, audience=confidential_client.client_id)


def test_exp_iat_and_expires_in_agree(service_client):
    """RFC 9068 §2.2 and RFC 6749 §5.1: exp is iat plus the lifetime that expires_in announces."""
    body = token_request(service_client, {"grant_type": "client_credentials"}).json()
    claims = unverified_claims(body["access_token"])
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 600


def test_the_server_stops_accepting_the_token_exactly_at_exp(service_client, code_flow, confidential_client):
    """RFC 7519 §4.1.4: the token MUST NOT be accepted on or after exp, by UAA as by resource servers.

    The clock ticks a second on every read, so issuing the token takes several seconds of server time.
    """
    started = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    with freeze_time(started, auto_tick_seconds=1):
        access_token = token_request(service_client, {"grant_type": "client_credentials"}).json()[
            "access_token"
        ]
    exp = datetime.fromtimestamp(unverified_claims(access_token)["exp"], UTC)
    with freeze_time(exp - timedelta(seconds=1)):
        assert introspect(service_client, access_token).json()["active"] is True
    with freeze_time(exp):
        assert introspect(service_client, access_token).json() == {"active": False}


def test_user_token_stops_working_at_userinfo_exactly_at_exp(confidential_client, user, password):
    """RFC 7519 §4.1.4 and RFC 6750 §3.1: on or after exp the token is invalid_token."""
    started = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    with freeze_time(started, auto_tick_seconds=1):
        browser = HttpClient()
        sign_in(browser, user, password)
        request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
        params = authorize(browser, request)
        tokens = exchange_code(
            HttpClient(), code=params["code"], request=request, auth=confidential_client.basic
        )
    access_token = tokens.json()["access_token"]
    exp = datetime.fromtimestamp(unverified_claims(access_token)["exp"], UTC)
    with freeze_time(exp - timedelta(seconds=1)):
        assert userinfo(access_token).status_code == HTTPStatus.OK
    with freeze_time(exp):
        assert userinfo(access_token).status_code == HTTPStatus.UNAUTHORIZED


def test_resource_at_authorize_becomes_the_audience(browser, client_factory):
    """RFC 8707 §2.1: the authorization request names the resource; the access token is for it."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    response = _code_flow_with(browser, registered, [API])
    assert response.status_code == HTTPStatus.OK, response.content
    claims = _resource_server_verifies(response.json()["access_token"], audience=API)
    assert claims["aud"] == API


def test_token_request_may_narrow_the_resources_of_the_grant(browser, client_factory):
    """RFC 8707 §2.2: the token request may name one of the resources the authorization was for."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    response = _code_flow_with(browser, registered, [API, REPORTS], resource=REPORTS)
    assert response.status_code == HTTPStatus.OK, response.content
    assert unverified_claims(response.json()["access_token"])["aud"] == REPORTS


def test_token_request_cannot_widen_the_resources_of_the_grant(browser, client_factory):
    """RFC 8707 §2.2: a resource the authorization was not for is invalid_target."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    response = _code_flow_with(browser, registered, [API], resource="https://payroll.example.com")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid_target"
    assert "payroll" not in response.json()["error_description"]


def test_several_resources_at_authorize_are_all_audiences(browser, client_factory):
    """RFC 8707 §2: with several resources, aud lists them all, in the JWT as in introspection."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    response = _code_flow_with(browser, registered, [API, REPORTS])
    access_token = response.json()["access_token"]
    assert sorted(unverified_claims(access_token)["aud"]) == [API, REPORTS]
    assert sorted(introspect(registered, access_token).json()["aud"]) == [API, REPORTS]


def test_refreshed_token_keeps_the_audience_of_the_grant(browser, client_factory):
    """RFC 8707 §2.2: a refresh without resource gets the resources of the original grant."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    first = _code_flow_with(browser, registered, [API]).json()
    body = refresh(registered, first["refresh_token"]).json()
    assert unverified_claims(body["access_token"])["aud"] == API


def test_refresh_cannot_widen_the_audience(browser, client_factory):
    """RFC 8707 §2.2: a refresh naming a resource outside the grant is invalid_target."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    first = _code_flow_with(browser, registered, [API]).json()
    response = refresh(registered, first["refresh_token"], resource=REPORTS)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid_target"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_access_tokens_follow_the_configured_algorithm(settings, service_client, algorithm):
    """RFC 9068 §2.1: signed with an asymmetric algorithm; UAA_ACCESS_TOKEN_ALG picks which."""
    settings.UAA_ACCESS_TOKEN_ALG = algorithm
    access_token = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    header, claims = verified(access_token)
    assert header["alg"] == algorithm
    assert claims["aud"] == API
    assert introspect(service_client, access_token).json()["active"] is True


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_id_token_follows_the_clients_registered_algorithm(code_flow, client_factory, algorithm):
    """OIDC Core §2 and Dynamic Client Registration §2: id_token_signed_response_alg of the client."""
    registered = client_factory(algorithm=algorithm)
    tokens = code_flow(registered)["tokens"]
    header, claims = verified(tokens["id_token"])
    assert header["alg"] == algorithm
    assert claims["aud"] == registered.client_id
