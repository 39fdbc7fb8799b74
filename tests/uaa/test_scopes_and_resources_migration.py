"""Migration oauth/0006: existing clients fail closed, and the operator is told what they used before.

Before 0006 any client could name any resource and get any extra scope. Upgrading keeps an existing
client's default audience (a request naming no resource still works) and grants nothing else; what its
stored tokens show it was issued beyond that is printed per client, for the operator to review
(docs/operations.md, "Upgrading"). A token minted through the old rule by an attacker shows up there
too, which is why the migration does not grant it back.
"""

from __future__ import annotations

import hashlib
import importlib
import secrets
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from tests.uaa.endpoints import token_request, unverified_claims
from uaa.oauth.models import Client

migration = importlib.import_module("uaa.oauth.migrations.0006_client_allowed_resources_and_scopes")
API = "https://api.example.com"
PAYROLL = "https://payroll.internal"


def _issued(client: Client, *, scope: str, resource: list[str]) -> None:
    get_access_token_model().objects.create(
        application=client,
        token_checksum=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        scope=scope,
        resource=resource,
        expires=timezone.now() + timedelta(minutes=10),
    )


def test_existing_clients_keep_their_default_audience_and_get_no_extra_scope(client_factory, capsys):
    service = client_factory(
        name="Batch", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[], default_audience=[API]
    )
    quiet = client_factory(name="Portal")
    Client.objects.update(allowed_resources="", allowed_scopes="")  # as the columns are added
    _issued(service.client, scope="api.admin openid", resource=[PAYROLL])

    migration.allow_the_default_audience(django_apps, None)

    service.client.refresh_from_db()
    quiet.client.refresh_from_db()
    assert service.client.requestable_resources == [API]
    assert service.client.requestable_scopes == []
    assert quiet.client.requestable_resources == []  # its implicit default, the issuer, needs no entry
    report = capsys.readouterr().out
    assert f"{service.client_id} (Batch): scopes api.admin; resources {PAYROLL}" in report
    assert quiet.client_id not in report
    assert "openid" not in report.split(service.client_id)[1]  # user scopes need no grant


def test_a_default_audience_that_is_not_a_uri_is_not_copied(client_factory, capsys):
    """RFC 8707 §2 resources are absolute URIs; an older free-text audience stays the client's default."""
    registered = client_factory(name="Old", grant_type=Client.GRANT_CLIENT_CREDENTIALS, redirect_uris=[])
    Client.objects.filter(pk=registered.client.pk).update(default_audience=f"orders-api {API}")
    migration.allow_the_default_audience(django_apps, None)
    registered.client.refresh_from_db()
    assert registered.client.requestable_resources == [API]
    response = token_request(registered, {"grant_type": "client_credentials"})
    assert response.status_code == HTTPStatus.OK, response.content
    assert unverified_claims(response.json()["access_token"])["aud"] == ["orders-api", API]
    named = token_request(registered, {"grant_type": "client_credentials", "resource": API})
    assert unverified_claims(named.json()["access_token"])["aud"] == API
    refused = token_request(registered, {"grant_type": "client_credentials", "resource": "orders-api"})
    assert refused.json()["error"] == "invalid_target"  # only URIs may be named
    assert capsys.readouterr().out == ""


@pytest.mark.django_db(transaction=True)
def test_manage_py_migrate_upgrades_a_database_of_the_previous_release():
    """The real path: `migrate` from 0005 with a client registered before allow-lists existed."""
    executor = MigrationExecutor(connection)
    target = [("oauth", "0005_clientauthenticationtally")]
    latest = executor.loader.graph.leaf_nodes("oauth")
    executor.migrate(target)
    try:
        old = MigrationExecutor(connection).loader.project_state(target[0]).apps
        old.get_model("oauth", "Client").objects.create(
            name="Batch",
            client_id="batch",
            client_type="confidential",
            authorization_grant_type="client-credentials",
            default_audience=API,
        )
    finally:
        MigrationExecutor(connection).migrate(latest)
    client = Client.objects.get(client_id="batch")
    assert client.requestable_resources == [API]
    assert client.requestable_scopes == []
