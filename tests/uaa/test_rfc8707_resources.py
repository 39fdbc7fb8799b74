"""RFC 8707 resource indicators: a client gets access tokens only for the resources registered for it.

The attacker is another registered client, or whoever stole one client's credentials: it asks for a
token whose ``aud`` names a resource server it was never registered for, so that the resource server,
checking ``aud`` as RFC 9068 §4 requires, accepts it. RFC 8707 §2: an authorization server that "does
not consider the resource(s) acceptable" rejects the request with ``invalid_target``. Each client has an
allow-list ("resources this client may request", ``Client.allowed_resources``), checked at the
authorization endpoint, on code exchange, on refresh and on client credentials; a grant that names no
resource is stored with the client's default, so a refresh can only narrow it (§2.2).
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client as HttpClient

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, exchange_code, form_post, query_of
from tests.uaa.endpoints import introspect, refresh, token_request, unverified_claims, userinfo
from uaa.oauth.models import AuthorizationCode, Client
from uaa.oauth.services import register_client

API = "https://api.example.com"
REPORTS = "https://reports.example.com"
PAYROLL = "https://payroll.internal"
EVIL = "https://evil.example"
ISSUER = "http://testserver"


def _authorize(browser, registered, resources=(), **params):
    """GET the authorization endpoint naming ``resources``; answer the consent page if it is shown."""
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI, **params)
    query = "&" + urlencode([("resource", resource) for resource in resources]) if resources else ""
    response = browser.get(request.url() + query)
    if response.status_code == HTTPStatus.OK:
        form = response.context["form"]
        consent = {name: form.initial.get(name) or "" for name in form.fields} | {"allow": "Authorize"}
        response = browser.post("/oauth/authorize", consent)
    return request, response


def _code_flow(browser, registered, resources=(), **token_params):
    request, response = _authorize(browser, registered, resources)
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    params = query_of(response["Location"])
    assert "code" in params, params
    return exchange_code(
        HttpClient(), code=params["code"], request=request, auth=registered.basic, **token_params
    )


def _client_credentials(registered, *resources, **params):
    data = [("grant_type", "client_credentials"), *(("resource", r) for r in resources), *params.items()]
    return form_post(HttpClient(), "/oauth/token", data, auth=registered.basic)


def _refused(response):
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == "invalid_target"
    assert "access_token" not in body
    return body


# --- the attacks -----------------------------------------------------------------------------------
def test_client_credentials_cannot_mint_a_token_for_an_unregistered_resource(service_client):
    """RFC 8707 §2: a resource the server "does not consider acceptable" is invalid_target. The service
    client is registered for https://api.example.com only; a token for the payroll service would be
    accepted there (RFC 9068 §4)."""
    body = _refused(_client_credentials(service_client, PAYROLL))
    assert PAYROLL not in body["error_description"]


def test_refresh_cannot_name_an_unregistered_resource_when_the_grant_named_none(browser, confidential_client):
    """RFC 8707 §2.2: a refresh may only narrow the grant's resources; a grant that named none is for
    the client's default audience (here the issuer), never for whatever the refresh names."""
    tokens = _code_flow(browser, confidential_client).json()
    _refused(refresh(confidential_client, tokens["refresh_token"], resource=EVIL))


def test_code_exchange_cannot_name_an_unregistered_resource(browser, confidential_client):
    """RFC 8707 §2.2: the token request's resource must be one the authorization was for; with none
    named, that is the client's default audience."""
    _refused(_code_flow(browser, confidential_client, resource=PAYROLL))


def test_authorization_request_naming_an_unregistered_resource_goes_back_with_invalid_target(
    browser, confidential_client
):
    """RFC 8707 §2 and RFC 6749 §4.1.2.1: the error is redirected to the client with state, and with iss
    (RFC 9207 §2); no consent page, no code."""
    request, response = _authorize(browser, confidential_client, [PAYROLL])
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(REDIRECT_URI + "?")
    params = query_of(response["Location"])
    assert params["error"] == "invalid_target"
    assert params["state"] == request.state
    assert params["iss"] == ISSUER
    assert "code" not in params
    assert not AuthorizationCode.objects.exists()


def test_refresh_cannot_widen_beyond_the_default_the_grant_was_stored_with(browser, client_factory):
    """RFC 8707 §2.2: the client may request REPORTS, but this grant named nothing and so is for its
    default audience (API) alone; a refresh naming REPORTS widens it and is invalid_target."""
    registered = client_factory(default_audience=[API], allowed_resources=[API, REPORTS])
    tokens = _code_flow(browser, registered).json()
    assert unverified_claims(tokens["access_token"])["aud"] == API
    _refused(refresh(registered, tokens["refresh_token"], resource=REPORTS))
    _refused(refresh(registered, tokens["refresh_token"], resource=EVIL))


def test_code_exchange_cannot_widen_beyond_the_default_the_code_was_stored_with(browser, client_factory):
    """RFC 8707 §2.2: REPORTS is registered for the client, but this authorization named nothing and is
    for the default audience (API): naming REPORTS on the code exchange widens it."""
    registered = client_factory(default_audience=[API], allowed_resources=[API, REPORTS])
    _refused(_code_flow(browser, registered, resource=REPORTS))


# --- what stays allowed ----------------------------------------------------------------------------
def test_client_credentials_may_name_any_resource_it_is_registered_for(client_factory):
    """RFC 8707 §2: with several resources, aud lists them all; the default is used when none is named."""
    registered = client_factory(
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        redirect_uris=[],
        default_audience=[API],
        allowed_resources=[API, REPORTS],
    )
    assert unverified_claims(_client_credentials(registered).json()["access_token"])["aud"] == API
    response = _client_credentials(registered, REPORTS)
    assert response.status_code == HTTPStatus.OK, response.content
    assert unverified_claims(response.json()["access_token"])["aud"] == REPORTS
    both = unverified_claims(_client_credentials(registered, API, REPORTS).json()["access_token"])
    assert sorted(both["aud"]) == [API, REPORTS]
    _refused(_client_credentials(registered, API, PAYROLL))  # one unlisted resource spoils the request


def test_a_resource_is_compared_exactly(client_factory):
    """RFC 8707 §2: the resource is an identifier; a look-alike (a path below it, another port, a
    trailing slash) is another resource, and not registered."""
    registered = client_factory(
        grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[], default_audience=[API]
    )
    for look_alike in (API + "/", API + "/admin", "https://api.example.com:8443", "HTTPS://API.EXAMPLE.COM"):
        _refused(_client_credentials(registered, look_alike))


def test_authorization_for_registered_resources_gives_tokens_for_them(browser, client_factory):
    """RFC 8707 §2.1 and §2.2: the code is for the resources of the authorization request; the token
    request may narrow to one of them; a refresh keeps them, or narrows, never widens."""
    registered = client_factory(allowed_resources=[API, REPORTS])
    response = _code_flow(browser, registered, [API, REPORTS], resource=REPORTS)
    assert response.status_code == HTTPStatus.OK, response.content
    tokens = response.json()
    assert unverified_claims(tokens["access_token"])["aud"] == REPORTS
    refreshed = refresh(registered, tokens["refresh_token"])
    assert unverified_claims(refreshed.json()["access_token"])["aud"] == REPORTS
    _refused(refresh(registered, refreshed.json()["refresh_token"], resource=API))


def test_grant_without_a_resource_is_stored_with_the_clients_default(browser, client_factory):
    """RFC 8707 §2: "the authorization server MAY ... [use] a predefined default resource value"; it is
    stored on the code and the refresh token, so that later requests are narrowed against it."""
    registered = client_factory(default_audience=[API, REPORTS], allowed_resources=[API, REPORTS])
    request, response = _authorize(browser, registered)
    params = query_of(response["Location"])
    assert AuthorizationCode.objects.get(code=params["code"]).resource == [API, REPORTS]
    tokens = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic).json()
    narrowed = refresh(registered, tokens["refresh_token"], resource=API)
    assert narrowed.status_code == HTTPStatus.OK, narrowed.content
    assert unverified_claims(narrowed.json()["access_token"])["aud"] == API
    _refused(refresh(registered, narrowed.json()["refresh_token"], resource=REPORTS))  # stays narrowed


def test_client_without_a_default_audience_gets_tokens_for_the_issuer_and_userinfo_accepts_them(
    browser, confidential_client
):
    """RFC 9068 §3: the implicit default audience is UAA itself, where userinfo is (OIDC Core §5.3)."""
    tokens = _code_flow(browser, confidential_client).json()
    assert unverified_claims(tokens["access_token"])["aud"] == ISSUER
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK
    refreshed = refresh(confidential_client, tokens["refresh_token"], resource=ISSUER).json()
    assert userinfo(refreshed["access_token"]).status_code == HTTPStatus.OK


def test_userinfo_refuses_a_token_whose_audience_is_another_resource(browser, client_factory):
    """RFC 9068 §4: a resource server, userinfo included, accepts only tokens whose aud names it. A
    client that calls both its API and userinfo lists the issuer among its default audiences."""
    api_only = client_factory(default_audience=[API])
    tokens = _code_flow(browser, api_only).json()
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    both = client_factory(default_audience=[API, ISSUER])
    tokens = _code_flow(browser, both).json()
    assert userinfo(tokens["access_token"]).status_code == HTTPStatus.OK


def test_trusted_client_naming_resources_gets_them_without_the_consent_page(browser, client_factory):
    """RFC 8707 §2: a repeated resource parameter names several resources, on the path that skips
    consent (a trusted client) as on the consent page; before, that path kept a bare string (a 500)."""
    registered = client_factory(trusted=True, allowed_resources=[API, REPORTS])
    request, response = _authorize(browser, registered, [API, REPORTS])
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    tokens = exchange_code(HttpClient(), code=params["code"], request=request, auth=registered.basic)
    assert tokens.status_code == HTTPStatus.OK, tokens.content
    assert sorted(unverified_claims(tokens.json()["access_token"])["aud"]) == [API, REPORTS]
    _, refused = _authorize(browser, registered, [API, PAYROLL])
    assert query_of(refused["Location"])["error"] == "invalid_target"


def test_tampered_consent_form_cannot_add_a_resource(browser, client_factory):
    """RFC 8707 §2: the hidden resource field of the consent form is checked again when it is posted."""
    registered = client_factory(allowed_resources=[API])
    request = AuthorizationRequest(client_id=registered.client_id, redirect_uri=REDIRECT_URI)
    page = browser.get(request.url() + "&" + urlencode({"resource": API}))
    form = page.context["form"]
    consent = {name: form.initial.get(name) or "" for name in form.fields} | {"allow": "Authorize"}
    response = browser.post("/oauth/authorize", consent | {"resource": f"{API} {PAYROLL}"})
    assert response.status_code == HTTPStatus.FOUND
    params = query_of(response["Location"])
    assert params["error"] == "invalid_target"
    assert params["iss"] == ISSUER
    assert not AuthorizationCode.objects.exists()


def test_an_unregistered_resource_is_refused_before_anyone_signs_in(client, confidential_client):
    """RFC 6749 §4.1.2.1: an error other than the client or redirect URI goes back to the client at once."""
    request = AuthorizationRequest(client_id=confidential_client.client_id, redirect_uri=REDIRECT_URI)
    response = client.get(request.url() + "&" + urlencode({"resource": PAYROLL}))
    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["error"] == "invalid_target"


def test_a_resource_removed_from_the_allow_list_is_refused_on_the_next_refresh(browser, client_factory):
    """Least privilege now, not when the grant was made: the allow-list is read on every token request."""
    registered = client_factory(default_audience=[API], allowed_resources=[API, REPORTS])
    tokens = _code_flow(browser, registered, [REPORTS]).json()
    Client.objects.filter(pk=registered.client.pk).update(allowed_resources=API)
    _refused(refresh(registered, tokens["refresh_token"]))


def test_introspection_reports_the_audience_it_was_issued_for(service_client):
    """RFC 7662 §2.2 and RFC 8707 §2: aud in introspection is the token's resources."""
    token = _client_credentials(service_client).json()["access_token"]
    assert introspect(service_client, token).json()["aud"] == API


def test_a_legacy_refresh_token_without_resources_is_narrowed_against_the_default(browser, client_factory):
    """A refresh token issued before this rule stored no resources: it is for the client's default."""
    from oauth2_provider.models import get_refresh_token_model

    registered = client_factory(default_audience=[API], allowed_resources=[API, REPORTS])
    tokens = _code_flow(browser, registered).json()
    get_refresh_token_model().objects.update(resource=[])
    _refused(refresh(registered, tokens["refresh_token"], resource=REPORTS))
    response = refresh(registered, tokens["refresh_token"])
    assert response.status_code == HTTPStatus.OK, response.content
    assert unverified_claims(response.json()["access_token"])["aud"] == API


# --- registration --------------------------------------------------------------------------------
def test_default_audience_must_be_a_resource_the_client_may_request(db):
    """The default audience is the resource a request without one gets: it must be in the allow-list."""
    with pytest.raises(ValidationError) as error:
        register_client(
            name="Service",
            client_type=Client.CLIENT_CONFIDENTIAL,
            grant_type=Client.GRANT_CLIENT_CREDENTIALS,
            default_audience=[API],
            allowed_resources=[REPORTS],
        )
    assert "default_audience" in error.value.message_dict


def test_without_an_explicit_allow_list_the_default_audience_is_the_allow_list(db):
    issued = register_client(
        name="Service",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        default_audience=[API],
    )
    assert issued.client.requestable_resources == [API]


@pytest.mark.parametrize("resource", ["not-a-uri", "https://api.example.com#x", "/relative", "urn:x:y"])
def test_allowed_resources_must_be_absolute_uris_without_a_fragment(db, resource):
    """RFC 8707 §2: a resource is an absolute URI without a fragment, with a host (DOT's matching)."""
    with pytest.raises(ValidationError) as error:
        register_client(
            name="Service",
            client_type=Client.CLIENT_CONFIDENTIAL,
            grant_type=Client.GRANT_CLIENT_CREDENTIALS,
            allowed_resources=[resource],
        )
    assert "allowed_resources" in error.value.message_dict


def test_create_client_registers_the_resources_a_client_may_request(db, capsys):
    call_command(
        "create_client",
        *("--name", "Batch", "--grant", "client_credentials", "--json"),
        *("--audience", API, "--resource", API, "--resource", REPORTS),
    )
    client = Client.objects.get(name="Batch")
    assert client.requestable_resources == [API, REPORTS]
    assert client.audiences == [API]
    assert client.served_resources == []  # requesting a resource is not serving it


def test_token_request_for_a_registered_resource_keeps_working_after_the_admin_adds_it(service_client):
    """An operator grants a resource by adding it to the allow-list; the next request may name it."""
    _refused(_client_credentials(service_client, REPORTS))
    Client.objects.filter(pk=service_client.client.pk).update(allowed_resources=f"{API} {REPORTS}")
    response = token_request(service_client, {"grant_type": "client_credentials", "resource": REPORTS})
    assert response.status_code == HTTPStatus.OK, response.content


def test_a_resource_named_many_times_is_one_audience(browser, client_factory):
    """A red team sent one resource fifty times: the token's aud held fifty copies, and so did every
    refresh after it (the grant was stored with them). §2: the parameter names resources; one named
    twice is still one."""
    registered = client_factory(allowed_resources=[API, REPORTS], default_audience=[API])
    service = client_factory(
        grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[], default_audience=[API]
    )
    issued = _client_credentials(service, *([API] * 50))
    assert issued.status_code == HTTPStatus.OK, issued.content
    assert unverified_claims(issued.json()["access_token"])["aud"] == API
    tokens = _code_flow(browser, registered, [API, REPORTS, API]).json()
    assert sorted(unverified_claims(tokens["access_token"])["aud"]) == [API, REPORTS]
    body = [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"])]
    refreshed = form_post(HttpClient(), "/oauth/token", body + [("resource", API)] * 3, auth=registered.basic)
    assert refreshed.status_code == HTTPStatus.OK, refreshed.content
    assert unverified_claims(refreshed.json()["access_token"])["aud"] == API
    again = refresh(registered, refreshed.json()["refresh_token"])
    assert unverified_claims(again.json()["access_token"])["aud"] == API
