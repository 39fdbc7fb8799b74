"""RFC 7662 token introspection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from freezegun import freeze_time

from tests.oauth_client import basic_auth, form_post
from tests.uaa.endpoints import introspect, refresh, revoke, token_request, unverified_claims, verified

INACTIVE = {"active": False}


API = "https://api.example.com"


@pytest.fixture
def confidential_client(client_factory):
    """The relying party whose users' tokens are for the API (aud, RFC 8707 / its default audience)."""
    return client_factory(default_audience=[API])


@pytest.fixture
def tokens(code_flow, confidential_client):
    return code_flow(confidential_client)["tokens"]


@pytest.fixture
def resource_server(client_factory):
    """A confidential client registered as serving the API: it may introspect tokens for the API that
    were issued to other clients (RFC 7662 §4)."""
    return client_factory(
        name="Resource server",
        grant_type="client-credentials",
        redirect_uris=[],
        introspection_resources=[API],
    )


def _assert_inactive(response):
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json() == INACTIVE
    assert response["Cache-Control"] == "no-store"


def test_active_access_token_is_described(resource_server, confidential_client, tokens, user):
    """RFC 7662 §2.2: active, scope, client_id, username, token_type, exp, iat, sub, aud, iss, jti."""
    response = introspect(resource_server, tokens["access_token"])
    assert response.status_code == HTTPStatus.OK, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    claims = verified(tokens["access_token"])[1]
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == {"openid", "profile", "email"}
    assert body["client_id"] == confidential_client.client_id
    assert body["sub"] == str(user.pk)
    assert body["username"] == user.email
    assert body["iss"] == "http://testserver"
    for claim in ("exp", "iat", "aud", "jti", "auth_time"):
        assert body[claim] == claims[claim]


def test_client_credentials_token_is_described_with_the_client_as_subject(resource_server, service_client):
    """RFC 7662 §2.2 and RFC 9068 §2.2: sub is the client_id when no user is involved; no username."""
    access_token = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    body = introspect(resource_server, access_token).json()
    assert body["active"] is True
    assert body["sub"] == service_client.client_id
    assert body["client_id"] == service_client.client_id
    assert body["aud"] == API
    assert "username" not in body


def test_introspection_requires_client_authentication(tokens):
    """RFC 7662 §2.1: the endpoint MUST require some form of authorization; RFC 6749 §5.2 invalid_client."""
    response = form_post(HttpClient(), "/oauth/introspect", {"token": tokens["access_token"]})
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")
    assert "active" not in response.json()


def test_introspection_with_a_wrong_secret_is_invalid_client(resource_server, tokens):
    """RFC 7662 §2.1 and RFC 6749 §5.2: failed Basic authentication is 401 with WWW-Authenticate."""
    response = form_post(
        HttpClient(),
        "/oauth/introspect",
        {"token": tokens["access_token"]},
        auth=basic_auth(resource_server.client_id, "wrong"),
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")


def test_malformed_basic_header_at_introspection_is_invalid_client(tokens):
    """RFC 6749 §2.3.1, §5.2: an undecodable Basic header is a failed authentication, not a server error."""
    response = form_post(
        HttpClient(), "/oauth/introspect", {"token": tokens["access_token"]}, auth="Basic !!not-base64!!"
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"


def test_public_clients_cannot_introspect(public_client, tokens):
    """RFC 7662 §2.1 and §4: only authenticated callers learn about tokens; a public client has no secret."""
    response = introspect(public_client, tokens["access_token"])
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    for auth in (basic_auth(public_client.client_id, ""), basic_auth(public_client.client_id, "x")):
        response = form_post(HttpClient(), "/oauth/introspect", {"token": tokens["access_token"]}, auth=auth)
        assert response.status_code == HTTPStatus.UNAUTHORIZED
        assert "active" not in response.json()


def test_bearer_token_is_not_introspection_authorization(tokens):
    """RFC 7662 §2.1: UAA requires client authentication (RFC 6749 §2.3), not a bearer token."""
    response = form_post(
        HttpClient(),
        "/oauth/introspect",
        {"token": tokens["access_token"]},
        auth=f"Bearer {tokens['access_token']}",
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert "active" not in response.json()


def test_expired_access_token_is_exactly_inactive(resource_server, tokens):
    """RFC 7662 §2.2: an expired token is not active, and nothing else is said about it."""
    exp = unverified_claims(tokens["access_token"])["exp"]
    with freeze_time(datetime.fromtimestamp(exp, UTC) + timedelta(seconds=1)):
        _assert_inactive(introspect(resource_server, tokens["access_token"]))


def test_revoked_access_token_is_exactly_inactive(resource_server, confidential_client, tokens):
    """RFC 7662 §2.2 and RFC 7009 §2.1: a revoked token is not active."""
    revoke(confidential_client, tokens["access_token"])
    _assert_inactive(introspect(resource_server, tokens["access_token"]))


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 3000])
def test_garbage_is_exactly_inactive(resource_server, db, token):
    """RFC 7662 §2.2: a token that is not one of ours is simply not active."""
    _assert_inactive(introspect(resource_server, token))


def test_tampered_access_token_is_exactly_inactive(resource_server, tokens):
    """RFC 7662 §2.2: only tokens we issued, unchanged, are active."""
    header, payload, signature = tokens["access_token"].split(".")
    _assert_inactive(introspect(resource_server, f"{header}.{payload}.{signature[:-4]}AAAA"))


def test_id_token_is_not_an_active_access_token(resource_server, tokens):
    """RFC 7662 §2.2: introspection describes access and refresh tokens; an ID token is neither."""
    _assert_inactive(introspect(resource_server, tokens["id_token"]))


def test_refresh_token_is_described_to_its_own_client(confidential_client, tokens, user):
    """RFC 7662 §2.1: refresh tokens MAY be introspected; UAA tells only the client that holds it."""
    for hint in (None, "refresh_token", "access_token"):
        extra = {"token_type_hint": hint} if hint else {}
        body = introspect(confidential_client, tokens["refresh_token"], **extra).json()
        assert body["active"] is True
        assert body["token_type"] == "refresh_token"
        assert body["client_id"] == confidential_client.client_id
        assert body["sub"] == str(user.pk)
        assert body["exp"] > unverified_claims(tokens["access_token"])["exp"]


def test_refresh_token_is_inactive_to_any_other_client(resource_server, client_factory, tokens):
    """RFC 7662 §4: the server decides what to tell whom; another client learns nothing about it."""
    _assert_inactive(introspect(resource_server, tokens["refresh_token"]))
    _assert_inactive(
        introspect(client_factory(name="Other RP"), tokens["refresh_token"], token_type_hint="refresh_token")
    )


def test_rotated_refresh_token_is_inactive(confidential_client, tokens):
    """RFC 9700 §4.14.2: a refresh token that was used is invalid from then on."""
    refresh(confidential_client, tokens["refresh_token"])
    _assert_inactive(introspect(confidential_client, tokens["refresh_token"]))


def test_expired_refresh_token_is_inactive(confidential_client, tokens, settings):
    """RFC 7662 §2.2: an expired refresh token is not active."""
    exp = unverified_claims(tokens["access_token"])["exp"]
    later = datetime.fromtimestamp(exp, UTC) + timedelta(seconds=settings.UAA_REFRESH_TOKEN_LIFETIME + 1)
    with freeze_time(later):
        _assert_inactive(introspect(confidential_client, tokens["refresh_token"]))


def test_missing_token_parameter_is_invalid_request(resource_server):
    """RFC 7662 §2.1: token is REQUIRED; RFC 6749 §5.2 invalid_request."""
    response = form_post(HttpClient(), "/oauth/introspect", {}, auth=resource_server.basic)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"


def test_introspection_refuses_get(resource_server, tokens):
    """RFC 7662 §2.1: the protected resource calls the endpoint using an HTTP POST request."""
    response = HttpClient().get(
        "/oauth/introspect", {"token": tokens["access_token"]}, HTTP_AUTHORIZATION=resource_server.basic
    )
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert b"active" not in response.content


# --- who may learn what (RFC 7662 §2.1, §4) ----------------------------------------------------------
# The attacker is another registered confidential client: it holds (or guesses at) a token issued to
# someone else and must learn nothing about it, not even that it is active, unless it serves the token's
# audience; and nobody learns a user's e-mail address from a token that was not granted the email scope.


def test_another_client_learns_nothing_about_a_token_for_an_audience_it_does_not_serve(
    client_factory, tokens, service_client
):
    """RFC 7662 §4: the server MUST determine whether the caller is allowed to learn about the token; a
    client that neither holds it nor serves its audience gets exactly {"active": false}."""
    other = client_factory(name="Other RP")
    _assert_inactive(introspect(other, tokens["access_token"]))
    _assert_inactive(introspect(service_client, tokens["access_token"]))
    elsewhere = client_factory(
        name="Other API",
        grant_type="client-credentials",
        redirect_uris=[],
        introspection_resources=["https://other.example.com"],
    )
    _assert_inactive(introspect(elsewhere, tokens["access_token"]))


def test_a_client_may_introspect_its_own_tokens(confidential_client, tokens):
    """RFC 7662 §2.1: the client the token was issued to may ask about it."""
    body = introspect(confidential_client, tokens["access_token"]).json()
    assert body["active"] is True
    assert body["client_id"] == confidential_client.client_id


def test_a_resource_server_learns_about_tokens_for_any_audience_it_serves(client_factory, browser):
    """RFC 7662 §4 with RFC 8707 §2: a token with several audiences is described to a server of any one."""
    from tests.conftest import REDIRECT_URI
    from tests.oauth_client import AuthorizationRequest, authorize, exchange_code

    rp = client_factory(default_audience=["https://a.example.com", API])
    request = AuthorizationRequest(client_id=rp.client_id, redirect_uri=REDIRECT_URI)
    code = authorize(browser, request)["code"]
    access_token = exchange_code(HttpClient(), code=code, request=request, auth=rp.basic).json()[
        "access_token"
    ]
    server = client_factory(
        name="B", grant_type="client-credentials", redirect_uris=[], introspection_resources=[API]
    )
    assert introspect(server, access_token).json()["active"] is True


def test_the_issuer_is_not_a_resource_a_client_can_serve(client_factory):
    """Tokens for UAA itself (aud = the issuer: userinfo) are described only to the client that holds
    them, so no client may be registered as serving the issuer."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        client_factory(
            name="X",
            grant_type="client-credentials",
            redirect_uris=[],
            introspection_resources=["http://testserver"],
        )
    assert "introspection_resources" in error.value.message_dict


@pytest.mark.parametrize("resource", ["not a uri", "https://api.example.com/#frag", "/relative"])
def test_served_resources_are_absolute_uris_without_a_fragment(client_factory, resource):
    """RFC 8707 §2: a resource is an absolute URI and MUST NOT include a fragment."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        client_factory(
            name="X", grant_type="client-credentials", redirect_uris=[], introspection_resources=[resource]
        )


def test_username_is_released_only_with_the_email_scope(
    code_flow, confidential_client, resource_server, user
):
    """OIDC Core §5.4: the e-mail address is released by the email scope; RFC 7662 §2.2 username is
    OPTIONAL, so a token granted only openid does not tell its introspector the user's address."""
    without = code_flow(confidential_client, scope="openid profile")["tokens"]
    for caller in (confidential_client, resource_server):
        body = introspect(caller, without["access_token"]).json()
        assert body["active"] is True
        assert "username" not in body
        assert user.email not in json.dumps(body)
        refreshed = introspect(confidential_client, without["refresh_token"]).json()
        assert refreshed["active"] is True and "username" not in refreshed
    granted = code_flow(confidential_client, scope="openid email")["tokens"]
    assert introspect(resource_server, granted["access_token"]).json()["username"] == user.email
    assert introspect(confidential_client, granted["refresh_token"]).json()["username"] == user.email


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_a_deactivated_users_tokens_are_inactive(confidential_client, resource_server, tokens, user, which):
    """RFC 7662 §2.2 active: the token is currently usable; a deactivated account's are not (userinfo and
    refresh already refuse them), so introspection must not tell a resource server otherwise."""
    assert introspect(confidential_client, tokens[which]).json()["active"] is True
    user.is_active = False
    user.save(update_fields=["is_active"])
    _assert_inactive(introspect(confidential_client, tokens[which]))
    if which == "access_token":
        _assert_inactive(introspect(resource_server, tokens[which]))


def test_create_client_registers_the_resources_a_client_serves(db):
    """manage.py create_client --serves URI (repeatable): the admin's way to make a resource server."""
    from io import StringIO

    from django.core.management import call_command

    from uaa.oauth.models import Client

    out = StringIO()
    call_command(
        "create_client",
        "--name",
        "orders-api",
        "--grant",
        "client_credentials",
        "--serves",
        API,
        "--serves",
        "https://orders.example.com",
        "--json",
        stdout=out,
    )
    client = Client.objects.get(client_id=json.loads(out.getvalue())["client_id"])
    assert client.served_resources == [API, "https://orders.example.com"]


def test_the_admin_shows_the_resources_a_client_serves(resource_server):
    from tests.factories import UserFactory

    http = HttpClient()
    http.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = http.get(f"/admin/oauth/client/{resource_server.client.pk}/change/")
    assert page.status_code == HTTPStatus.OK
    assert "resources this client serves" in page.content.decode().lower()
    assert page.context["adminform"].form.initial["introspection_resources"] == API
