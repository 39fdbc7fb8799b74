"""RFC 6749 §4.4 client credentials grant, with RFC 8707 resource indicators and RFC 9068 access tokens."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from tests.oauth_client import basic_auth, form_post
from tests.uaa.endpoints import introspect, token_request, userinfo, verified

API = "https://api.example.com"


def _client_credentials(registered, data=(), **params):
    return token_request(registered, {"grant_type": "client_credentials", **dict(data), **params})


def test_token_names_the_clients_default_audience_and_the_client_as_subject(service_client):
    """RFC 6749 §4.4.3; RFC 9068 §2.2: sub is the client_id when no resource owner is involved."""
    response = _client_credentials(service_client)
    assert response.status_code == HTTPStatus.OK, response.content
    header, claims = verified(response.json()["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == API
    assert claims["sub"] == service_client.client_id
    assert claims["client_id"] == service_client.client_id
    assert claims["iss"] == "http://testserver"
    assert claims["exp"] == claims["iat"] + 600
    assert claims["jti"]
    assert "auth_time" not in claims


def test_token_response_has_no_refresh_token_and_no_id_token(service_client):
    """RFC 6749 §4.4.3: a refresh token SHOULD NOT be included; there is no user, so no ID token."""
    response = _client_credentials(service_client)
    body = response.json()
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert "refresh_token" not in body
    assert "id_token" not in body


def test_resource_parameter_sets_the_audience(client_factory):
    """RFC 8707 §2: the audience of the token is the requested resource."""
    registered = client_factory(
        name="Service",
        grant_type="client-credentials",
        redirect_uris=[],
        default_audience=[API, "https://reports.example.com"],
    )
    response = _client_credentials(registered, resource="https://reports.example.com")
    assert response.status_code == HTTPStatus.OK, response.content
    assert verified(response.json()["access_token"])[1]["aud"] == "https://reports.example.com"


def test_several_resource_parameters_are_all_audiences(client_factory):
    """RFC 8707 §2: the resource parameter may be repeated; the token's aud lists every resource."""
    registered = client_factory(
        name="Service",
        grant_type="client-credentials",
        redirect_uris=[],
        default_audience=[API, "https://reports.example.com"],
    )
    data = [
        ("grant_type", "client_credentials"),
        ("resource", API),
        ("resource", "https://reports.example.com"),
    ]
    response = form_post(HttpClient(), "/oauth/token", data, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    claims = verified(response.json()["access_token"])[1]
    assert sorted(claims["aud"]) == [API, "https://reports.example.com"]
    assert sorted(introspect(registered, response.json()["access_token"]).json()["aud"]) == sorted(
        claims["aud"]
    )


@pytest.mark.parametrize("resource", ["not-a-uri", "https://api.example.com#frag", "/relative"])
def test_malformed_resource_is_invalid_target(service_client, resource):
    """RFC 8707 §2: the resource MUST be an absolute URI without a fragment; otherwise invalid_target."""
    response = _client_credentials(service_client, resource=resource)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid_target"
    assert resource not in response.json()["error_description"]
    assert "access_token" not in response.json()


def test_client_without_a_default_audience_gets_the_issuer_as_audience(client_factory):
    """RFC 9068 §3: aud identifies the resource; without one registered, the token is for UAA itself."""
    registered = client_factory(name="Service", grant_type="client-credentials", redirect_uris=[])
    response = _client_credentials(registered)
    assert verified(response.json()["access_token"])[1]["aud"] == "http://testserver"


def test_requested_scope_is_granted_and_echoed(settings, client_factory):
    """RFC 6749 §4.4.2 and §3.3: the issued scope is in the token and the response."""
    settings.UAA_SCOPES = {**settings.UAA_SCOPES, "reports:read": "Read reports"}
    registered = client_factory(
        name="Service", grant_type="client-credentials", redirect_uris=[], allowed_scopes=["reports:read"]
    )
    response = _client_credentials(registered, scope="reports:read")
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["scope"] == "reports:read"
    assert verified(response.json()["access_token"])[1]["scope"] == "reports:read"


def test_an_offered_scope_not_registered_for_the_client_is_invalid_scope(settings, service_client):
    """RFC 6749 §3.3 and §5.2: UAA offers reports:read, but only to clients registered for it."""
    settings.UAA_SCOPES = {**settings.UAA_SCOPES, "reports:read": "Read reports"}
    response = _client_credentials(service_client, scope="reports:read")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_scope"


def test_a_resource_not_registered_for_the_client_is_invalid_target(service_client):
    """RFC 8707 §2: a resource the server does not consider acceptable for this client: invalid_target."""
    response = _client_credentials(service_client, resource="https://reports.example.com")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_target"


def test_unknown_scope_is_invalid_scope(service_client):
    """RFC 6749 §5.2: invalid_scope when the requested scope is unknown."""
    response = _client_credentials(service_client, scope="admin:everything")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("scope", ["openid", "openid profile email", "offline_access"])
def test_user_scopes_are_refused_without_a_user(service_client, scope):
    """RFC 6749 §4.4 and OIDC Core §3.1.2.1: no resource owner, so no OpenID or offline access scopes."""
    response = _client_credentials(service_client, scope=scope)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_scope"


def test_client_credentials_token_is_not_accepted_at_userinfo(service_client):
    """OIDC Core §5.3: userinfo returns claims about an authenticated end-user; a service token has none."""
    token = _client_credentials(service_client).json()["access_token"]
    response = userinfo(token)
    assert response.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
    assert "sub" not in response.content.decode()


def test_client_credentials_requires_client_authentication(service_client):
    """RFC 6749 §4.4.2: the client MUST authenticate with the authorization server."""
    data = {"grant_type": "client_credentials", "client_id": service_client.client_id}
    response = form_post(HttpClient(), "/oauth/token", data)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("data", "auth"),
    [
        ({"client_id": "PUBLIC"}, None),
        ({"client_id": "PUBLIC", "client_secret": ""}, None),
        ({}, "EMPTY-BASIC"),
    ],
)
def test_public_client_cannot_use_client_credentials(public_client, data, auth):
    """RFC 6749 §4.4: the client credentials grant MUST only be used by confidential clients.

    The grant requires client authentication (§4.4.2), which a public client cannot pass however it
    presents itself (it has no secret it knows): RFC 6749 §5.2 invalid_client, 401.
    """
    data = {key: public_client.client_id if value == "PUBLIC" else value for key, value in data.items()}
    auth = basic_auth(public_client.client_id, "") if auth else None
    data = {"grant_type": "client_credentials", **data}
    response = form_post(HttpClient(), "/oauth/token", data, auth=auth)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


def test_authorization_code_client_cannot_use_client_credentials(confidential_client):
    """RFC 6749 §5.2: unauthorized_client when the client is not authorized to use this grant type."""
    response = _client_credentials(confidential_client)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "unauthorized_client"
    assert "access_token" not in response.json()


def test_client_credentials_client_cannot_redeem_authorization_codes(service_client):
    """RFC 6749 §5.2: unauthorized_client for a grant type the client is not registered for."""
    response = token_request(
        service_client,
        {
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": "https://x.example",
            "code_verifier": "y",
        },
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "implicit"},
        {"grant_type": "x"},
        {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"},
        {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "guess"},
        {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y.z"},
    ],
)
def test_grant_types_uaa_does_not_offer_are_unsupported(service_client, data):
    """RFC 6749 §5.2: unsupported_grant_type when the server does not support the grant type."""
    response = token_request(service_client, data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("kind", ["service_client", "confidential_client", "public_client"])
def test_password_grant_is_unsupported_and_never_checks_the_password(request, user, password, kind):
    """RFC 9700 §2.4: the resource owner password credentials grant MUST NOT be used.

    Right and wrong passwords get the same answer, so the token endpoint is no way around sign-in
    throttling and MFA.
    """
    registered = request.getfixturevalue(kind)
    answers = []
    for attempt in (password, "wrong password"):
        response = token_request(
            registered, {"grant_type": "password", "username": user.email, "password": attempt}
        )
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert "access_token" not in response.json()
        answers.append(response.json())
    assert answers[0] == answers[1]
    assert answers[0]["error"] == "unsupported_grant_type"


def test_token_endpoint_refuses_get(service_client):
    """RFC 6749 §3.2: the client MUST use the HTTP POST method when making access token requests."""
    response = HttpClient().get(
        "/oauth/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=service_client.basic
    )
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert "access_token" not in response.content.decode()
