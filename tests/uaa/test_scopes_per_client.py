"""RFC 6749 §3.3: a client gets only the scopes registered for it ("extra scopes this client may request").

The attacker is another registered client, or whoever stole one client's credentials, asking for a
scope it was never granted (``api.admin``) so that a resource server honouring that scope lets it in.
"The authorization server MAY fully or partially ignore the scope requested by the client, based on
the authorization server policy" (§3.3); a scope outside that policy is ``invalid_scope`` (§4.1.2.1
at the authorization endpoint, §5.2 at the token endpoint). The OpenID Connect user scopes (openid,
profile, email, offline_access) stay available to every authorization-code client, and never to a
client acting for itself.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, exchange_code, query_of
from tests.uaa.endpoints import refresh, token_request, unverified_claims
from uaa.oauth.models import AuthorizationCode, Client
from uaa.oauth.scopes import USER_SCOPES, UAAScopes
from uaa.oauth.services import register_client

EXTRA = {"api.admin": "Administer the API", "reports:read": "Read reports", "orders:read": "Read orders"}


@pytest.fixture(autouse=True)
def _extra_scopes(settings):
    settings.UAA_SCOPES = {**settings.UAA_SCOPES, **EXTRA}


def _service(client_factory, **kwargs):
    return client_factory(
        name="Service", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[], **kwargs
    )


def _client_credentials(registered, scope):
    return token_request(registered, {"grant_type": "client_credentials", "scope": scope})


def _authorize(browser, registered, scope):
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, scope=scope)
    response = browser.get(request.url())
    if response.status_code == HTTPStatus.OK:
        form = response.context["form"]
        consent = {name: form.initial.get(name) or "" for name in form.fields} | {"allow": "Authorize"}
        response = browser.post("/oauth/authorize", consent)
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    return request, query_of(response["Location"])


def _code_flow(browser, registered, scope):
    request, params = _authorize(browser, registered, scope)
    assert "code" in params, params
    response = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


# --- the attacks -----------------------------------------------------------------------------------
def test_client_credentials_client_cannot_take_a_scope_it_was_never_granted(service_client):
    """RFC 6749 §5.2: invalid_scope when the scope "exceeds the scope granted"; the service client was
    registered with no extra scope, so api.admin, although UAA offers it, is not its to ask for."""
    response = _client_credentials(service_client, "api.admin")
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["error"] == "invalid_scope"
    assert "access_token" not in response.json()


def test_authorization_code_client_cannot_take_an_extra_scope_it_was_never_granted(
    browser, confidential_client
):
    """RFC 6749 §4.1.2.1: invalid_scope is redirected to the client, with state (and iss, RFC 9207), and
    the user is never asked to consent to it."""
    request, params = _authorize(browser, confidential_client, "openid api.admin")
    assert params["error"] == "invalid_scope"
    assert params["state"] == request.state
    assert params["iss"] == "http://testserver"
    assert "code" not in params
    assert not AuthorizationCode.objects.exists()


# --- what stays allowed ----------------------------------------------------------------------------
def test_client_credentials_client_gets_the_scopes_registered_for_it(client_factory):
    """RFC 6749 §4.4.2, §3.3: the issued scope is in the token and the response."""
    registered = _service(client_factory, allowed_scopes=["reports:read", "orders:read"])
    response = _client_credentials(registered, "reports:read orders:read")
    assert response.status_code == HTTPStatus.OK, response.content
    assert set(response.json()["scope"].split()) == {"reports:read", "orders:read"}
    assert set(unverified_claims(response.json()["access_token"])["scope"].split()) == {
        "reports:read",
        "orders:read",
    }
    refused = _client_credentials(registered, "reports:read api.admin")
    assert refused.json()["error"] == "invalid_scope"


def test_client_credentials_without_a_scope_gets_none(client_factory):
    """RFC 6749 §3.3: without a scope the server uses a default; for a client acting for itself, none."""
    registered = _service(client_factory, allowed_scopes=["reports:read"])
    response = token_request(registered, {"grant_type": "client_credentials"})
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["scope"] == ""


@pytest.mark.parametrize("scope", sorted(USER_SCOPES))
def test_user_scopes_are_never_a_service_clients(client_factory, scope):
    """OIDC Core §3.1.2.1: there is no end-user in client credentials (RFC 6749 §4.4)."""
    registered = _service(client_factory, allowed_scopes=["reports:read"])
    assert _client_credentials(registered, scope).json()["error"] == "invalid_scope"


def test_code_client_keeps_the_user_scopes_and_gets_its_extra_scopes(browser, client_factory):
    """OIDC Core §5.4, §11: openid, profile, email and offline_access need no registration."""
    registered = client_factory(allowed_scopes=["reports:read"])
    tokens = _code_flow(browser, registered, "openid profile email offline_access reports:read")
    assert set(tokens["scope"].split()) == {"openid", "profile", "email", "offline_access", "reports:read"}
    assert "refresh_token" in tokens


def test_refresh_drops_an_extra_scope_the_client_is_no_longer_allowed(browser, client_factory):
    """RFC 6749 §6 and §3.3: the refreshed token has the original scope, less what the server's policy
    now refuses (the response's scope says so, §5.1); asking for it again is invalid_scope."""
    registered = client_factory(allowed_scopes=["reports:read", "orders:read"])
    tokens = _code_flow(browser, registered, "openid offline_access reports:read orders:read")
    Client.objects.filter(pk=registered.client.pk).update(allowed_scopes="orders:read")
    refreshed = refresh(registered, tokens["refresh_token"])
    assert refreshed.status_code == HTTPStatus.OK, refreshed.content
    assert set(refreshed.json()["scope"].split()) == {"openid", "offline_access", "orders:read"}
    assert "reports:read" not in unverified_claims(refreshed.json()["access_token"])["scope"].split()
    asked = refresh(registered, refreshed.json()["refresh_token"], scope="openid reports:read")
    assert asked.status_code == HTTPStatus.BAD_REQUEST
    assert asked.json()["error"] == "invalid_scope"


def test_a_scope_no_longer_offered_is_granted_to_nobody(settings, client_factory):
    """A scope removed from UAA_EXTRA_SCOPES stops at once, even for clients that still list it."""
    registered = _service(client_factory, allowed_scopes=["reports:read"])
    settings.UAA_SCOPES = {k: v for k, v in settings.UAA_SCOPES.items() if k != "reports:read"}
    assert _client_credentials(registered, "reports:read").json()["error"] == "invalid_scope"


def test_discovery_lists_exactly_the_scopes_uaa_offers(client, settings, client_factory):
    """RFC 8414 §2 scopes_supported: what the server supports; a client's list never adds to it."""
    _service(client_factory, allowed_scopes=["reports:read"])
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["scopes_supported"] == list(settings.UAA_SCOPES)


def test_available_scopes_without_a_client_are_all_scopes(settings):
    assert UAAScopes().get_available_scopes() == list(settings.UAA_SCOPES)


# --- registration --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scope", "why"),
    [("unknown:scope", "not offered"), ("openid", "a user scope"), ("offline_access", "a user scope")],
)
def test_allowed_scopes_are_extra_scopes_uaa_offers(db, scope, why):
    with pytest.raises(ValidationError) as error:
        register_client(
            name="Service",
            client_type=Client.CLIENT_CONFIDENTIAL,
            grant_type=Client.GRANT_CLIENT_CREDENTIALS,
            allowed_scopes=[scope],
        )
    assert "allowed_scopes" in error.value.message_dict, why


def test_create_client_registers_the_scopes_a_client_may_request(db, capsys):
    call_command(
        "create_client",
        *("--name", "Batch", "--grant", "client_credentials", "--json"),
        *("--scope", "reports:read", "--scope", "orders:read"),
    )
    assert Client.objects.get(name="Batch").requestable_scopes == ["reports:read", "orders:read"]
