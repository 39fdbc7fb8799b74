"""The sealer's witness: the last tree head this deployment signed, kept outside the database.

RFC 9162 §8.1: a monitor keeps the tree heads it has seen and checks that every new one extends them.
The sealer is its own first monitor. A database writer who does not know ``UAA_KEK`` can delete heads and
records and INSERT records of their own; a sealer that trusted the database would sign that history
(tokens/ledger/sealing.py extends only the tree this file describes).

The file (``UAA_AUDIT_WITNESS``, default ``$UAA_VAR_DIR/audit-witness.json``) is canonical JSON::

    {"format": "uaa-audit-witness/1", "issuer", "tree_size", "root_hash", "timestamp", "kid", "signature",
     "frontier": [hex, ...]}

that is, a signed tree head (usable as the verifier's ``--trusted-head``) plus its Merkle frontier: the
roots of the perfect subtrees covering ``[0, tree_size)``, which must fold to ``root_hash``. It is written
after the head's transaction commits, atomically (a temporary file renamed over it), under an exclusive
``flock`` on ``<file>.lock``, and only forwards: an older head never replaces a newer one, so sealers that
finish out of order cannot rewind it. Every process that seals must see the same file (docs/audit-ledger.md).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from tokens.verifier import Frontier, canonical_json, parse_json

FORMAT = "uaa-audit-witness/1"
MEMBERS = ("tree_size", "root_hash", "timestamp", "kid", "signature")


class WitnessUnreadable(ValueError):
    """The witness file exists but is not one this sealer wrote (corrupt, another issuer, bad frontier)."""


def witness_path() -> Path:
    return Path(settings.UAA_AUDIT_WITNESS)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        document = parse_json(raw)
    except ValueError as exc:
        raise WitnessUnreadable(f"not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise WitnessUnreadable(f"not a {FORMAT} document")
    if document.get("issuer") != settings.UAA_ISSUER:
        raise WitnessUnreadable(f"it is the witness of issuer {document.get('issuer')!r}")
    size, root, frontier = document.get("tree_size"), document.get("root_hash"), document.get("frontier")
    if not (
        isinstance(size, int)
        and not isinstance(size, bool)
        and size > 0
        and isinstance(document.get("timestamp"), int)
        and isinstance(root, str)
        and isinstance(frontier, list)
        and all(isinstance(node, str) for node in frontier)
    ):
        raise WitnessUnreadable("it lacks tree_size, timestamp, root_hash or frontier")
    try:
        folded = Frontier(size, [bytes.fromhex(node) for node in frontier]).root().hex()
    except ValueError as exc:
        raise WitnessUnreadable(f"its frontier is unusable ({exc})") from exc
    if folded != root:
        raise WitnessUnreadable("its frontier does not fold to its root hash")
    return document


def load() -> dict[str, Any] | None:
    """The witness, or ``None`` if there is no file yet (a first run); ``WitnessUnreadable`` if it is bad."""
    try:
        raw = witness_path().read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WitnessUnreadable(f"cannot be read ({exc.strerror})") from exc
    return _parse(raw)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_writable() -> None:
    """``OSError`` unless the witness's directory exists (or can be made) and takes files."""
    path = witness_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a"):
        pass


def advance(head: dict[str, Any], *, frontier: list[str]) -> bool:
    """Record ``head`` (a signed head as ``TreeHead.as_dict`` gives it) as the last one signed, unless the
    witness already holds a later one or cannot be read; ``True`` if the file now holds it."""
    path = witness_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT,
        "issuer": settings.UAA_ISSUER,
        **{member: head[member] for member in MEMBERS},
        "frontier": list(frontier),
    }
    with _exclusive(path):
        try:
            current = load()
        except WitnessUnreadable:
            return False  # never replace what the sealer could not check against
        if current is not None and (current["tree_size"], current["timestamp"]) >= (
            document["tree_size"],
            document["timestamp"],
        ):
            return False
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(canonical_json(document) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return True
