"""Clients cached per process, checked against the database on every use (issue 12 item 2).

The token, revocation and introspection endpoints look a client up on every request. A cached copy is
used only if the database still has that row, unchanged: each use reads the row's version ``(id,
generation, row)`` by its unique ``client_id`` in one indexed query, and ``generation`` is bumped by a
database trigger on every UPDATE of the row (migration oauth 0009), whoever makes it: the admin, the API,
``QuerySet.update()`` in a shell, plain SQL. So the bound on staleness is zero: a secret rotated, a grant
type taken away or a client deleted in any process is seen by the very next request in every process,
and nothing authenticates against an old copy. What the cache saves is the ORM's query (building,
compiling and instantiating a 30-column row), not the round trip.

On PostgreSQL ``row`` is the row version itself, ``xmin`` and ``ctid`` (the transaction that wrote it and
where it lies): every write makes a new one, and no trigger setting suppresses it. So a database writer
who deletes the row and inserts it again with its generation, or who switches the trigger off (``ALTER
TABLE ... DISABLE TRIGGER``, ``session_replication_role = replica``), still changes the version (the red
team's C8 and C9: the planted secret went on working until a restart). What remains: a superuser who
freezes the new version (``VACUUM FREEZE``: ``xmin`` then reads as frozen) into the very slot of the
cached one. On SQLite ``row`` is empty: the generation alone, and the file's writer can do anything.

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
from django.db.models.expressions import RawSQL

from uaa.oauth.models import Client

MAX_CLIENTS = 10_000  # past this many cached clients the cache starts afresh (no client is ever stale)

_lock = threading.Lock()
Version = tuple[int, int, str]  # (id, generation, row version): current_version
_cached: dict[str, tuple[Version, tuple[Any, ...]]] = {}  # client_id -> (version, field values)


@cache
def _fields() -> tuple[str, ...]:
    return tuple(field.attname for field in Client._meta.concrete_fields)


def row_version_sql(vendor: str) -> str:
    """The SQL expression of a client row's own version (PostgreSQL: ``xmin`` and ``ctid``), as text."""
    return "xmin::text || ':' || ctid::text" if vendor == "postgresql" else "''"


@cache
def _version_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    return (
        f"SELECT {quote('id')}, {quote('generation')}, {row_version_sql(vendor)}"  # noqa: S608 - our own tables  # nosec B608
        f" FROM {quote(Client._meta.db_table)} WHERE {quote('client_id')} = %s"
    )


def current_version(client_id: str) -> Version | None:
    """``(id, generation, row version)`` of the client's row now, or ``None`` if there is no such client."""
    with connection.cursor() as cursor:
        cursor.execute(_version_sql(connection.vendor), [client_id])
        row = cursor.fetchone()
    return (int(row[0]), int(row[1]), str(row[2] or "")) if row else None


def _instance(values: tuple[Any, ...]) -> Client:
    fresh = tuple(copy.deepcopy(value) if isinstance(value, dict | list) else value for value in values)
    return Client.from_db(connection.alias, list(_fields()), list(fresh))


def _remember(client: Client, row_version: str) -> None:
    values = tuple(getattr(client, name) for name in _fields())
    with _lock:
        if len(_cached) >= MAX_CLIENTS:
            _cached.clear()
        _cached[client.client_id] = ((client.pk, client.generation, row_version), values)


def get_client(client_id: str, *, version: Version | bool | None = True) -> Client | None:
    """The client with ``client_id`` as the database has it now, or ``None``.

    ``version`` is the row's version if the caller has just read it (``current_version``), ``None`` if it
    found no row; by default it is read here."""
    if version is True:
        version = current_version(client_id)
    if not version:
        forget(client_id)
        return None
    held = _cached.get(client_id)
    if held is not None and held[0] == version:
        return _instance(held[1])
    # The row as of now (a newer one than ``version`` is fine), with the version it is cached under.
    found = (
        Client.objects.filter(client_id=client_id)
        .annotate(_row_version=RawSQL(row_version_sql(connection.vendor), []))  # noqa: S611 - a constant  # nosec B611
        .first()
    )
    if found is not None:
        _remember(found, str(getattr(found, "_row_version", "") or ""))
    return found


def peek(client_id: str, name: str) -> tuple[bool, Any]:
    """Whether the client is cached, and its field ``name`` as this process last read it from the database
    (no query, so it may be a request behind: uaa/oauth/ratelimit.py's per-client limit, never a secret or
    anything that authenticates)."""
    held = _cached.get(client_id)
    if held is None:
        return False, None
    return True, held[1][_fields().index(name)]


def forget(client_id: str) -> None:
    with _lock:
        _cached.pop(client_id, None)


def clear() -> None:
    """Forget every cached client of this process (tests)."""
    with _lock:
        _cached.clear()
