"""/api/v1/clients: register, list, read, change, delete, rotate the secret.

Attackers: an automation token's holder reading secrets back (list, read, logs); a caller setting what only
the server sets (client_secret, client_id, id, dates, the grant type) through a change; a caller sending
bodies built to break the server (not JSON, wrong types, huge, deeply nested, unknown fields) hoping
for a 500 or a half-validated client; a registration with redirect URIs an attacker controls (http on a
public host, a fragment, a relative URI). Every change must be in the ledger naming the calling client.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import pytest

from tests.api.conftest import call
from tests.staff import ledger_records
from tests.uaa.endpoints import token_request
from tokens.models import LedgerRecord
from uaa.oauth.models import Client

CLIENTS = "/api/v1/clients"
SERVICE = {"name": "Billing", "client_type": "confidential", "grant_type": "client_credentials"}
WEB_APP = {
    "name": "Web app",
    "client_type": "confidential",
    "grant_type": "authorization_code",
    "redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:8080/cb"],
}


@pytest.fixture
def admin(admin_client):
    registered = admin_client()
    from tests.api.conftest import ALL_ADMIN, client_credentials_token

    return registered, client_credentials_token(registered, ALL_ADMIN)


def test_registration_returns_the_secret_once_and_it_works(admin, caplog):
    _caller, token = admin
    caplog.set_level(logging.DEBUG)
    response = call("POST", CLIENTS, token, SERVICE)
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    secret = body["client_secret"]
    assert secret and body["client_id"] and body["grant_type"] == "client_credentials"
    from tests.conftest import RegisteredClient

    new = RegisteredClient(client=Client.objects.get(client_id=body["client_id"]), secret=secret)
    assert token_request(new, {"grant_type": "client_credentials"}).status_code == HTTPStatus.OK
    listed = call("GET", CLIENTS, token)
    read = call("GET", f"{CLIENTS}/{body['client_id']}", token)
    for response in (listed, read):
        assert response.status_code == HTTPStatus.OK
        assert secret not in response.content.decode()
        shown = response.json()["results"] if "results" in response.json() else [response.json()]
        assert all("client_secret" not in client for client in shown)
    assert Client.objects.get(client_id=body["client_id"]).client_secret != secret  # stored hashed
    assert secret not in caplog.text


def test_registration_is_recorded_with_the_calling_client_as_actor(admin):
    caller, token = admin
    body = call("POST", CLIENTS, token, WEB_APP).json()
    [record] = [
        r for r in ledger_records(LedgerRecord.Event.CLIENT_REGISTERED) if r["client_id"] == body["client_id"]
    ]
    assert record["sub"] == caller.client_id
    assert body["client_secret"] not in str(record)


def test_list_filters_and_pages(admin, client_factory):
    caller, token = admin
    for n in range(3):
        client_factory(name=f"Shop {n}")
    client_factory(name="SPA", client_type=Client.CLIENT_PUBLIC)
    page = call("GET", f"{CLIENTS}?name=shop&page_size=2", token).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    second = call("GET", f"{CLIENTS}?name=shop&page_size=2&page=2", token).json()
    assert len(second["results"]) == 1
    assert {c["name"] for c in page["results"] + second["results"]} == {"Shop 0", "Shop 1", "Shop 2"}
    public = call("GET", f"{CLIENTS}?client_type=public", token).json()
    assert [c["name"] for c in public["results"]] == ["SPA"]
    services = call("GET", f"{CLIENTS}?grant_type=client_credentials", token).json()
    assert [c["client_id"] for c in services["results"]] == [caller.client_id]
    one = call("GET", f"{CLIENTS}?client_id={caller.client_id}", token).json()
    assert one["count"] == 1
    bad = call("GET", f"{CLIENTS}?client_type=admin", token)
    assert bad.status_code == HTTPStatus.BAD_REQUEST and "client_type" in bad.json()["fields"]


def test_change_is_validated_saved_and_recorded(admin, confidential_client):
    caller, token = admin
    path = f"{CLIENTS}/{confidential_client.client_id}"
    response = call(
        "PATCH", path, token, {"name": "Renamed", "redirect_uris": ["https://rp.example.com/new"]}
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["redirect_uris"] == ["https://rp.example.com/new"]
    client = Client.objects.get(pk=confidential_client.client.pk)
    assert client.name == "Renamed" and client.redirect_uris == "https://rp.example.com/new"
    [record] = ledger_records(LedgerRecord.Event.ADMIN_CHANGE)
    assert record["sub"] == caller.client_id
    assert record["client_id"] == confidential_client.client_id
    assert record["detail"]["fields"] == ["name", "redirect_uris"]
    assert "Renamed" not in str(record)  # names, never values


@pytest.mark.parametrize(
    "field",
    [
        "client_secret",
        "client_id",
        "id",
        "created",
        "updated",
        "grant_type",
        "client_type",
        "hash_client_secret",
    ],
)
def test_change_refuses_what_only_the_server_sets(admin, confidential_client, field):
    """Mass assignment: a field the API shows or the model has is not settable by naming it."""
    _caller, token = admin
    before = Client.objects.values().get(pk=confidential_client.client.pk)
    response = call("PATCH", f"{CLIENTS}/{confidential_client.client_id}", token, {field: "x", "name": "n"})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert field in response.json()["fields"]
    assert Client.objects.values().get(pk=confidential_client.client.pk) == before
    assert not ledger_records(LedgerRecord.Event.ADMIN_CHANGE)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://app.example.com/cb", "https"),
        ("https://app.example.com/cb#frag", "fragment"),
        ("/cb", "absolute"),
        ("app.example.com/cb", "absolute"),
        ("https://app.example.com/c b", "spaces"),
        ("javascript:alert(1)", "absolute"),
        ("https://app.example.com:99999/cb", "URI"),
    ],
)
def test_redirect_uris_must_be_absolute_https_without_fragment(admin, uri, why):
    """RFC 6749 §3.1.2, RFC 9700 §2.1: http only on loopback (RFC 8252 §7.3)."""
    _caller, token = admin
    response = call("POST", CLIENTS, token, {**WEB_APP, "redirect_uris": [uri]})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert why in str(response.json()["fields"]["redirect_uris"])
    assert not Client.objects.filter(name="Web app").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SERVICE, "grant_type": "password"}, "grant_type"),
        ({**SERVICE, "grant_type": "implicit"}, "grant_type"),
        ({**SERVICE, "client_type": "root"}, "client_type"),
        ({**SERVICE, "allowed_scopes": ["no.such.scope"]}, "allowed_scopes"),
        ({**SERVICE, "allowed_scopes": ["openid"]}, "allowed_scopes"),
        ({**WEB_APP, "allowed_scopes": ["uaa.clients.write"]}, "allowed_scopes"),
        ({**SERVICE, "name": 12}, "name"),
        ({**SERVICE, "trusted": "yes"}, "trusted"),
        ({**SERVICE, "trusted": 1}, "trusted"),
        ({**SERVICE, "redirect_uris": "https://a.example/cb"}, "redirect_uris"),
        ({**SERVICE, "redirect_uris": [7]}, "redirect_uris"),
        ({**SERVICE, "jwks": "[]"}, "jwks"),
        ({**SERVICE, "algorithm": "HS256"}, "algorithm"),
        ({**SERVICE, "name": "x" * 300}, "name"),
        ({**SERVICE, "allowed_resources": ["not a uri"]}, "allowed_resources"),
        ({**SERVICE, "allowed_resources": ["relative"]}, "allowed_resources"),
        ({**SERVICE, "colour": "blue"}, "colour"),
        ({**SERVICE, "client_secret": "chosen-by-me"}, "client_secret"),
        ({"client_type": "public", "grant_type": "authorization_code"}, "name"),
        ({**SERVICE, "client_type": "public"}, "client_type"),
        ({**WEB_APP, "client_type": "public", "require_pkce": False}, "require_pkce"),
    ],
)
def test_bad_registrations_are_400_with_the_field_named(admin, body, field):
    _caller, token = admin
    before = Client.objects.count()
    response = call("POST", CLIENTS, token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"], response.json()
    assert Client.objects.count() == before


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"a string"', "application/json"),
        ("null", "application/json"),
        ('{"name": NaN}', "application/json"),
        ('{"name": "a", "name": "b"}', "application/json"),
        (b"\xff\xfe", "application/json"),
        ("[" * 100000 + "]" * 100000, "application/json"),
        ("[" * 30000 + "]" * 30000, "application/json"),
        ('{"name": "' + "a" * 70000 + '"}', "application/json"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_400(admin, data, content_type):
    _caller, token = admin
    response = call("POST", CLIENTS, token, data, content_type=content_type)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content[:300]
    assert response.json()["error"] == "invalid_request"


def test_a_form_body_is_415(admin):
    _caller, token = admin
    response = call("POST", CLIENTS, token, "name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert response.json()["error"] == "unsupported_media_type"


def test_an_unknown_client_is_404_json(admin):
    _caller, token = admin
    response = call("GET", f"{CLIENTS}/nope", token)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "not_found"


def test_delete_removes_the_client_and_its_tokens_and_is_recorded(admin, service_client):
    caller, token = admin
    victim_token = token_request(service_client, {"grant_type": "client_credentials"}).json()["access_token"]
    response = call("DELETE", f"{CLIENTS}/{service_client.client_id}", token)
    assert response.status_code == HTTPStatus.NO_CONTENT
    assert not Client.objects.filter(client_id=service_client.client_id).exists()
    from oauth2_provider.models import get_access_token_model

    from tokens.checksum import sha256_hex

    assert not get_access_token_model().objects.filter(token_checksum=sha256_hex(victim_token)).exists()
    [record] = ledger_records(LedgerRecord.Event.ADMIN_CHANGE)
    assert record["sub"] == caller.client_id and record["detail"]["action"] == "delete"
    assert record["client_id"] == service_client.client_id


def test_rotate_secret_returns_a_new_secret_once_and_the_old_one_stops(admin, service_client, caplog):
    """No grace window asked for: the old secret fails at once (as the Django admin's rotation does)."""
    caller, token = admin
    caplog.set_level(logging.DEBUG)
    # no body (as curl -X POST sends): no grace window by default (UAA_CLIENT_SECRET_GRACE_SECONDS 0)
    response = call("POST", f"{CLIENTS}/{service_client.client_id}/rotate-secret", token, b"")
    assert response.status_code == HTTPStatus.OK, response.content
    assert response["Cache-Control"] == "no-store"
    new_secret = response.json()["client_secret"]
    assert new_secret and new_secret != service_client.secret
    assert token_request(service_client, {"grant_type": "client_credentials"}).status_code == 401
    from tests.conftest import RegisteredClient

    rotated = RegisteredClient(client=service_client.client, secret=new_secret)
    assert token_request(rotated, {"grant_type": "client_credentials"}).status_code == HTTPStatus.OK
    [record] = ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)
    assert record["sub"] == caller.client_id and record["client_id"] == service_client.client_id
    assert new_secret not in caplog.text
    assert new_secret not in call("GET", f"{CLIENTS}/{service_client.client_id}", token).content.decode()


def test_a_public_client_has_no_secret_to_rotate(admin, public_client):
    _caller, token = admin
    response = call("POST", f"{CLIENTS}/{public_client.client_id}/rotate-secret", token)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert not ledger_records(LedgerRecord.Event.CLIENT_SECRET_ROTATED)


def test_a_public_registration_has_no_secret_in_its_answer(admin):
    _caller, token = admin
    body = call(
        "POST",
        CLIENTS,
        token,
        {**WEB_APP, "client_type": "public", "redirect_uris": ["https://spa.example/cb"]},
    ).json()
    assert body["client_secret"] is None


def test_an_empty_change_changes_and_records_nothing(admin, confidential_client):
    _caller, token = admin
    response = call("PATCH", f"{CLIENTS}/{confidential_client.client_id}", token, {})
    assert response.status_code == HTTPStatus.OK
    assert response.json()["name"] == "Relying Party"
    assert not ledger_records(LedgerRecord.Event.ADMIN_CHANGE)


def test_a_change_that_breaks_a_model_rule_is_400_and_saves_nothing(admin, service_client):
    """private_key_jwt without keys (Client.clean): refused as the admin form refuses it."""
    _caller, token = admin
    path = f"{CLIENTS}/{service_client.client_id}"
    response = call("PATCH", path, token, {"token_endpoint_auth_method": "private_key_jwt"})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert "jwks" in response.json()["fields"]
    assert Client.objects.get(pk=service_client.client.pk).token_endpoint_auth_method == "client_secret_basic"
    assert not ledger_records(LedgerRecord.Event.ADMIN_CHANGE)


def test_an_admin_scope_cannot_be_given_to_an_authorization_code_client_by_a_change(
    admin, confidential_client
):
    _caller, token = admin
    path = f"{CLIENTS}/{confidential_client.client_id}"
    response = call("PATCH", path, token, {"allowed_scopes": ["uaa.users.write"]})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "allowed_scopes" in response.json()["fields"]
