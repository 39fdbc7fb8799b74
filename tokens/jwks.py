"""RFC 7517 JSON Web Key Set of the published keys (next, active, retired) that this process has proven.

The JWKS endpoint reads the publishable rows on every request (:func:`published_key_set`), but only
what decides the document: each row's kid, algorithm, state and stored public key, in one plain
statement. The document built from them is kept per process with exactly those values, and served
again only while the database still has exactly those rows: a key published, rotated, revoked,
expired or contradicted (a row tampered with, a ledger record of its kid) changes what the statement
returns, so the very next request in every process builds the document again. What else goes into the
document, this process's proof of each row (tokens/keys.py), changes only with the row's stored public
key, which is in the check, or when the proofs are forgotten (``proof_epoch``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from tokens.keys import PUBLIC_MEMBERS, proof_epoch, proven_key, retain_private_keys
from tokens.models import SigningKey, contradiction_sql
from tokens.rows import RowShape, database

__all__ = ["PUBLIC_MEMBERS", "KeySet", "build_jwks", "public_jwk", "published_key_set"]


def public_jwk(key: SigningKey) -> dict[str, object] | None:
    """RFC 7517 §4 public members of ``key``, derived from its proven private half; ``None`` if the
    row fails the proof (tokens/keys.py): a key UAA cannot show is its own is never published."""
    proven = proven_key(key)
    return dict(proven.public) if proven is not None else None


def build_jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, object]]]:
    """The JWK Set of ``keys`` (the publishable rows). Private halves of keys these rows show are no
    longer active leave this process's memory here too."""
    rows = list(keys)
    retain_private_keys(key.kid for key in rows if key.state == SigningKey.State.ACTIVE)
    published = (public_jwk(key) for key in rows)
    return {"keys": [member for member in published if member is not None]}


@dataclass(frozen=True)
class KeySet:
    """The JWKS document of the publishable rows, as the endpoint sends it."""

    body: bytes  # canonical JSON (sorted keys, no spaces)
    etag: str  # a strong validator of ``body`` (RFC 9110 §8.8.3)
    active_kids: frozenset[str]
    signing: frozenset[str]  # the algorithms with an active key


# What decides the document, per row, in the order the document lists them.
_DECIDING = ("kid", "algorithm", "state", "public_jwk")
_PUBLISHED = (SigningKey.State.NEXT, SigningKey.State.ACTIVE, SigningKey.State.RETIRED)


@cache
def _statements(vendor: str) -> tuple[str, str, RowShape]:
    """The deciding columns of the publishable rows, and the same rows whole (for building the document),
    with the same condition and order as ``SigningKey.objects.publishable().order_by("created_at")``."""
    db = database()
    quote = db.ops.quote_name
    shape = RowShape(db, (SigningKey, "k"))
    deciding = ", ".join(f"k.{quote(SigningKey._meta.get_field(name).column)}" for name in _DECIDING)  # type: ignore[union-attr,arg-type]
    rest = (
        f" FROM {quote(SigningKey._meta.db_table)} k WHERE k.state IN (%s, %s, %s)"
        f" AND NOT {contradiction_sql('k')} ORDER BY k.created_at, k.{quote('id')}"
    )
    return f"SELECT {deciding}{rest}", f"SELECT {deciding}, {shape.select}{rest}", shape


_lock = threading.Lock()
_held: tuple[tuple[int, tuple[tuple[Any, ...], ...]], KeySet] | None = None  # (epoch, deciding rows) -> set


def _build(rows: list[SigningKey]) -> KeySet:
    document = build_jwks(rows)
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    active = [key for key in rows if key.state == SigningKey.State.ACTIVE]
    return KeySet(
        body=body,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        active_kids=frozenset(key.kid for key in active),
        signing=frozenset(key.algorithm for key in active),
    )


def published_key_set() -> KeySet:
    """The JWKS of the rows publishable right now: read from the database on every call (their deciding
    columns), built again whenever they differ from what the held document was built from."""
    global _held
    db = database()
    narrow, whole, shape = _statements(db.vendor)
    epoch = proof_epoch()  # before the rows: a proof forgotten meanwhile makes the next call build again
    with db.cursor() as cursor:
        cursor.execute(narrow, list(_PUBLISHED))
        deciding = tuple(tuple(row) for row in cursor.fetchall())
    held = _held
    if held is not None and held[0] == (epoch, deciding):
        retain_private_keys(held[1].active_kids)
        return held[1]
    with db.cursor() as cursor:  # what the document is built from, with its own deciding columns
        cursor.execute(whole, list(_PUBLISHED))
        rows = cursor.fetchall()
    width = len(_DECIDING)
    key_set = _build([shape.instances(db, row[width:])[0] for row in rows])
    with _lock:
        _held = ((epoch, tuple(tuple(row[:width]) for row in rows)), key_set)
    return key_set
