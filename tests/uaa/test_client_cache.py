"""The client cache's check (uaa/oauth/client_cache.py): every write to a client row changes its
generation, so a cached copy is never used after any change (issue 12 item 2).

Attacker: the holder of a rotated secret, of a client whose grant or auth method was changed by a
``QuerySet.update()`` or by SQL (no ``save()``, no signal, no ``updated``), or of a deleted client.
tests/uaa/test_client_cache_processes.py does the same across two server processes.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.db import connection

from tests.uaa.endpoints import token_request
from uaa.oauth import client_cache
from uaa.oauth.models import Client
from uaa.oauth.services import rotate_client_secret


def _generation(client: Client) -> int:
    return Client.objects.values_list("generation", flat=True).get(pk=client.pk)


def test_every_kind_of_write_moves_the_generation(service_client):
    client = service_client.client
    seen = [_generation(client)]
    client.name = "renamed"
    client.save()  # a save carrying the generation it read: the database counts anyway
    seen.append(_generation(client))
    Client.objects.filter(pk=client.pk).update(allowed_scopes="")
    seen.append(_generation(client))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE oauth_client SET name = %s WHERE id = %s", ["by sql", client.pk])
    seen.append(_generation(client))
    assert seen == sorted(set(seen)) and len(seen) == 4


def test_the_cached_copy_is_not_used_after_a_change(service_client):
    def status(secret: str) -> int:
        registered = type(service_client)(client=service_client.client, secret=secret)
        return token_request(registered, {"grant_type": "client_credentials"}).status_code

    old = service_client.secret or ""
    assert status(old) == HTTPStatus.OK  # cached now
    assert client_cache.get_client(service_client.client_id) is not None
    new = rotate_client_secret(client=Client.objects.get(pk=service_client.client.pk))
    assert status(old) == HTTPStatus.UNAUTHORIZED
    assert status(new) == HTTPStatus.OK
    Client.objects.filter(pk=service_client.client.pk).update(authorization_grant_type="authorization-code")
    assert status(new) == HTTPStatus.BAD_REQUEST  # unauthorized_client: the grant is gone
    Client.objects.filter(pk=service_client.client.pk).delete()
    assert status(new) == HTTPStatus.UNAUTHORIZED
    assert client_cache.get_client(service_client.client_id) is None


@pytest.mark.parametrize("client_id", ["", "nobody", "x" * 300])
def test_an_unknown_client_id_is_no_client(db, client_id):
    assert client_cache.get_client(client_id) is None


postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the row version (xmin) is PostgreSQL's; SQLite is the single-machine default, whose file's "
    "writer can do anything (docs/security.md)",
)


def _status(service_client, secret: str) -> int:
    registered = type(service_client)(client=service_client.client, secret=secret)
    return token_request(registered, {"grant_type": "client_credentials"}).status_code


@postgres_only
def test_a_row_deleted_and_inserted_again_with_its_generation_is_not_the_cached_copy(service_client):
    """Red team C8: a database writer deletes the client row and inserts it again, same id and same
    generation (the trigger counts UPDATEs only), with the secret and grant replaced: the cached copy
    went on authenticating the old secret until a restart."""
    old = service_client.secret or ""
    assert _status(service_client, old) == HTTPStatus.OK  # cached now
    generation = _generation(service_client.client)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE held AS SELECT * FROM oauth_client WHERE id = %s", [service_client.client.pk]
        )
        cursor.execute(
            "DELETE FROM oauth2_provider_accesstoken WHERE application_id = %s", [service_client.client.pk]
        )
        cursor.execute("DELETE FROM oauth_client WHERE id = %s", [service_client.client.pk])
        cursor.execute("UPDATE held SET client_secret = '!disabled'")
        cursor.execute("INSERT INTO oauth_client SELECT * FROM held")
        cursor.execute("DROP TABLE held")
    assert _generation(service_client.client) == generation  # the same (id, generation) as the cached copy
    assert _status(service_client, old) == HTTPStatus.UNAUTHORIZED


@postgres_only
def test_an_update_with_the_trigger_switched_off_is_not_missed(service_client):
    """Red team C9: the table's owner turns the generation trigger off (or a superuser sets
    session_replication_role = replica), plants a secret, and writes the original hash back: the
    generation never moved, and every worker's cached copy kept the planted secret until a restart."""
    old = service_client.secret or ""
    assert _status(service_client, old) == HTTPStatus.OK  # cached now
    generation = _generation(service_client.client)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # no trigger fires (a superuser's switch)
        try:
            cursor.execute(
                "UPDATE oauth_client SET client_secret = '!disabled' WHERE id = %s",
                [service_client.client.pk],
            )
        finally:
            cursor.execute("SET session_replication_role = origin")
    assert _generation(service_client.client) == generation  # the trigger never ran
    assert _status(service_client, old) == HTTPStatus.UNAUTHORIZED
