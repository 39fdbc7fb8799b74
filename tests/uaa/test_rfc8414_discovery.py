"""RFC 8414 authorization server metadata and OpenID Connect Discovery 1.0: what is listed is what exists."""

from http import HTTPStatus
from urllib.parse import urlsplit

import pytest

from tests.oauth_client import AuthorizationRequest, form_post, query_of

ISSUER = "http://testserver"
DOCUMENTS = ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
ENDPOINTS = {
    "authorization_endpoint": "/oauth/authorize",
    "token_endpoint": "/oauth/token",
    "revocation_endpoint": "/oauth/revoke",
    "introspection_endpoint": "/oauth/introspect",
    "userinfo_endpoint": "/oauth/userinfo",
    "end_session_endpoint": "/oauth/logout",
    "jwks_uri": "/.well-known/jwks.json",
}


@pytest.fixture(params=DOCUMENTS)
def metadata(request, client, db):
    response = client.get(request.param)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    return response.json()


@pytest.fixture
def openid_configuration(client, db):
    return client.get("/.well-known/openid-configuration").json()


def test_issuer_is_the_configured_issuer(metadata, settings):
    """RFC 8414 §3.3: the issuer value returned MUST be identical to the issuer identifier."""
    assert metadata["issuer"] == settings.UAA_ISSUER == ISSUER


def test_metadata_lists_exactly_the_endpoints_uaa_serves(metadata):
    """RFC 8414 §2: endpoint URLs the server does not offer are omitted, the ones it offers are listed."""
    listed = {name: value for name, value in metadata.items() if name.endswith(("_endpoint", "_uri"))}
    assert listed == {name: ISSUER + path for name, path in ENDPOINTS.items()}


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_every_listed_endpoint_answers(metadata, client, name):
    """RFC 8414 §2 / OIDC Discovery §3: every advertised URL is a live endpoint (any answer but 404/5xx)."""
    url = metadata[name]
    assert urlsplit(url).netloc == urlsplit(ISSUER).netloc
    response = client.get(url)
    assert response.status_code != HTTPStatus.NOT_FOUND
    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR


def test_only_s256_code_challenges_are_advertised(metadata):
    """RFC 8414 §2 code_challenge_methods_supported (RFC 7636 §4.2); RFC 9700 §2.1.1: no plain."""
    assert metadata["code_challenge_methods_supported"] == ["S256"]


def test_only_the_code_response_type_is_advertised(metadata):
    """RFC 8414 §2 response_types_supported; RFC 9700 §2.1.2: no implicit grant."""
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["response_modes_supported"] == ["query", "form_post"]


def test_grant_types_are_code_refresh_and_client_credentials(metadata):
    """RFC 8414 §2 grant_types_supported; RFC 9700 §2.4: no resource owner password grant."""
    assert sorted(metadata["grant_types_supported"]) == [
        "authorization_code",
        "client_credentials",
        "refresh_token",
    ]


def test_authorization_responses_carry_iss(metadata):
    """RFC 9207 §3: authorization_response_iss_parameter_supported is true."""
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_scopes_supported_are_the_configured_scopes(metadata, settings):
    """RFC 8414 §2 scopes_supported; OIDC Discovery §3: the openid scope is listed."""
    assert metadata["scopes_supported"] == list(settings.UAA_SCOPES)
    assert "openid" in metadata["scopes_supported"]


def test_client_authentication_methods_are_those_the_endpoints_accept(metadata):
    """RFC 8414 §2 *_auth_methods_supported: introspection is for confidential clients only."""
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    }
    assert "none" not in metadata["introspection_endpoint_auth_methods_supported"]


def test_id_tokens_can_be_signed_with_rs256(openid_configuration):
    """OIDC Discovery §3: id_token_signing_alg_values_supported MUST include RS256."""
    algorithms = openid_configuration["id_token_signing_alg_values_supported"]
    assert "RS256" in algorithms
    assert set(algorithms) <= {"RS256", "ES256", "EdDSA"}
    assert "none" not in algorithms


def test_openid_configuration_has_the_required_oidc_members(openid_configuration):
    """OIDC Discovery §3: subject_types_supported and the prompt values AuthorizeView implements."""
    assert openid_configuration["subject_types_supported"] == ["public"]
    assert set(openid_configuration["prompt_values_supported"]) == {"none", "login", "consent"}
    assert "sub" in openid_configuration["claims_supported"]


def test_both_documents_agree_on_every_rfc8414_member(client, db):
    """OIDC Discovery §3 and RFC 8414 §2 describe one server: shared members have the same values."""
    oauth = client.get("/.well-known/oauth-authorization-server").json()
    oidc = client.get("/.well-known/openid-configuration").json()
    assert {name: oidc[name] for name in oauth} == oauth


@pytest.mark.parametrize("path", DOCUMENTS)
def test_metadata_is_public_and_cacheable(client, db, path):
    """RFC 8414 §3: any client may fetch the metadata; it changes rarely."""
    response = client.get(path)
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "public" in response["Cache-Control"]


@pytest.mark.parametrize("path", DOCUMENTS)
def test_metadata_answers_head_like_get(client, db, path):
    """RFC 9110 §9.3.2: HEAD is GET without the content (monitoring and caches use it)."""
    response = client.head(path)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    assert response.content == b""


@pytest.mark.parametrize("path", DOCUMENTS)
def test_metadata_refuses_post(client, db, path):
    """RFC 8414 §3.1: the metadata is requested with GET."""
    assert client.post(path).status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_plain_code_challenge_is_refused_as_advertised(browser, confidential_client):
    """RFC 7636 §4.4.1 / RFC 8414 §2: a method the server does not list is an invalid_request."""
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri="https://rp.example.com/callback"
    )
    response = browser.get(request.url(code_challenge="x" * 43, code_challenge_method="plain"))
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params


@pytest.mark.parametrize("response_type", ["token", "id_token", "code token"])
def test_implicit_response_types_are_refused_as_advertised(browser, confidential_client, response_type):
    """RFC 6749 §4.1.2.1: only "code" is listed, so other response types get an error, never a token."""
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri="https://rp.example.com/callback"
    )
    response = browser.get(request.url(response_type=response_type))
    assert response.status_code == HTTPStatus.FOUND
    location = response["Location"]
    assert "#" not in location
    params = query_of(location)
    assert params["error"] == "unsupported_response_type"
    assert params["state"] == request.state
    assert not {"code", "access_token", "id_token"} & set(params)


def test_password_grant_is_refused_as_advertised(client, confidential_client, user, password):
    """RFC 6749 §5.2 unsupported_grant_type: the password grant is not listed (RFC 9700 §2.4)."""
    response = form_post(
        client,
        "/oauth/token",
        {"grant_type": "password", "username": user.email, "password": password},
        auth=confidential_client.basic,
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "unsupported_grant_type"
    assert "access_token" not in response.json()


def test_only_the_query_and_form_post_response_modes_are_advertised(metadata):
    """OAuth 2.0 Multiple Response Type Encoding Practices §2.1 and Form Post Response Mode §2: UAA returns
    parameters in the query or in an auto-submitted form (tests/uaa/test_oidc_form_post.py), never in the
    fragment."""
    assert metadata["response_modes_supported"] == ["query", "form_post"]


@pytest.mark.parametrize("response_mode", ["fragment", "query.jwt", "form_post.jwt", "bogus"])
def test_other_response_modes_are_refused_as_advertised(browser, confidential_client, response_mode):
    """RFC 8414 §2 response_modes_supported: a mode the server does not list is refused with
    invalid_request, in the query of the registered redirect URI, never with a code in a fragment."""
    request = AuthorizationRequest(
        client_id=confidential_client.client_id, redirect_uri="https://rp.example.com/callback"
    )
    response = browser.get(request.url(response_mode=response_mode))
    assert response.status_code == HTTPStatus.FOUND
    location = response["Location"]
    assert "#" not in location
    params = query_of(location)
    assert params["error"] == "invalid_request"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params
