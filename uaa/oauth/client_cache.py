"""Clients cached per process, checked against the database on every use (issue 12 item 2).

The token, revocation and introspection endpoints look a client up on every request. A cached copy is
used only if the database still has that row, unchanged: each use reads the row's ``(id, generation)``
by its unique ``client_id`` in one indexed query of two integers, and ``generation`` is bumped by a
database trigger on every UPDATE of the row (migration oauth 0009), whoever makes it: the admin, the API,
``QuerySet.update()`` in a shell, plain SQL. So the bound on staleness is zero: a secret rotated, a grant
type taken away or a client deleted in any process is seen by the very next request in every process,
and nothing authenticates against an old copy. What the cache saves is the ORM's query (building,
compiling and instantiating a 30-column row), not the round trip.

Why not a TTL or signals: a TTL lets a rotated secret work for the TTL, and signals are not sent by
``QuerySet.update()``, raw SQL or another node. A version counter per row read with the lookup is exact.

The copies are held as plain field values and each use builds a new ``Client`` from them
(``Model.from_db``), so no request sees another's instance; JSON values are copied too.
"""

from __future__ import annotations

import copy
import threading
from functools import cache
from typing import Any

from django.db import connection

from uaa.oauth.models import Client

MAX_CLIENTS = 10_000  # past this many cached clients the cache starts afresh (no client is ever stale)

_lock = threading.Lock()
_cached: dict[str, tuple[int, int, tuple[Any, ...]]] = {}  # client_id -> (id, generation, field values)


@cache
def _fields() -> tuple[str, ...]:
    return tuple(field.attname for field in Client._meta.concrete_fields)


@cache
def _version_sql() -> str:
    quote = connection.ops.quote_name
    return (
        f"SELECT {quote('id')}, {quote('generation')} FROM {quote(Client._meta.db_table)}"  # noqa: S608 - our own tables  # nosec B608
        f" WHERE {quote('client_id')} = %s"
    )


def current_version(client_id: str) -> tuple[int, int] | None:
    """``(id, generation)`` of the client's row now, or ``None`` if there is no such client."""
    with connection.cursor() as cursor:
        cursor.execute(_version_sql(), [client_id])
        row = cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else None


def _instance(values: tuple[Any, ...]) -> Client:
    fresh = tuple(copy.deepcopy(value) if isinstance(value, dict | list) else value for value in values)
    return Client.from_db(connection.alias, list(_fields()), list(fresh))


def _remember(client: Client) -> None:
    values = tuple(getattr(client, name) for name in _fields())
    with _lock:
        if len(_cached) >= MAX_CLIENTS:
            _cached.clear()
        _cached[client.client_id] = (client.pk, client.generation, values)


def get_client(client_id: str, *, version: tuple[int, int] | bool | None = True) -> Client | None:
    """The client with ``client_id`` as the database has it now, or ``None``.

    ``version`` is ``(id, generation)`` if the caller has just read it (``current_version``), ``None``
    if it found no row; by default it is read here."""
    if version is True:
        version = current_version(client_id)
    if not version:
        forget(client_id)
        return None
    held = _cached.get(client_id)
    if held is not None and (held[0], held[1]) == version:
        return _instance(held[2])
    client = Client.objects.filter(client_id=client_id).first()  # the row, as of now (a newer one is fine)
    if client is not None:
        _remember(client)
    return client


def peek(client_id: str, name: str) -> tuple[bool, Any]:
    """Whether the client is cached, and its field ``name`` as this process last read it from the database
    (no query, so it may be a request behind: uaa/oauth/ratelimit.py's per-client limit, never a secret or
    anything that authenticates)."""
    held = _cached.get(client_id)
    if held is None:
        return False, None
    return True, held[2][_fields().index(name)]


def forget(client_id: str) -> None:
    with _lock:
        _cached.pop(client_id, None)


def clear() -> None:
    """Forget every cached client of this process (tests)."""
    with _lock:
        _cached.clear()
