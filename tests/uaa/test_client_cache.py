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
