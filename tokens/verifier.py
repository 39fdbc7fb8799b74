"""Offline verifier of an exported UAA audit ledger: RFC 9162 Merkle tree, RFC 8785 canonical JSON.

Standalone by design: this module imports the Python standard library and ``cryptography`` only,
never Django or anything else from UAA, so an auditor can copy this one file and run, years later::

    python verifier.py EXPORT_DIR --keys PINNED-audit-keys.json --trusted-head SAVED-head.json
    python verifier.py EXPORT_DIR              # no pinned keys, no saved head: prints a WARNING for each
    python verifier.py --proof PROOF.json --keys audit-keys.json   # one inclusion proof

Exit status 0 only if everything verifies. ``--keys`` is the audit JWK Set the auditor obtained
independently (keys taken from the export only show that the export agrees with itself);
``--trusted-head`` is a signed tree head saved earlier (``/.well-known/audit-head.json``), which the
export must contain and extend (RFC 9162 §2.1.4, §8): without it, an export cut short together with its
last heads looks complete. Head times must not decrease, nor be after ``exported_at`` or before a record
they cover, within ``CLOCK_TOLERANCE_MS``.

The server builds its tree heads and proofs with the same functions (tokens/ledger/), so what is
specified here is what is deployed. The export format (docs/audit-ledger.md):

``manifest.json``
    ``{"format": "uaa-audit-ledger/1", "issuer", "first_index", "frontier", "tree_size", "exported_at"}``;
    ``frontier`` holds the Merkle hashes of the pruned records ``[0, first_index)`` (empty if none).
    ``tree_size`` is the size of the latest head, and ``first_index`` + the number of records.
    An export with ``first_index`` > 0 must hold the ``ledger.pruned`` record of that prune, whose
    prune statement (tree size, root, signed by an audit key) names the signed head at ``first_index``
    that the frontier reproduces.
``records.jsonl``
    one line per record, in leaf order: ``{"index": i, "leaf_hash": hex, "record": {...}}``. The leaf is
    the RFC 8785 canonical form of ``record``; ``leaf_hash`` is what the server computed when it sealed it.
``tree-heads.jsonl``
    one signed tree head per line, in order: ``{"tree_size", "root_hash", "timestamp", "kid",
    "signature", "consistency"}``; ``consistency`` is the RFC 9162 §2.1.4 proof from the previous head.
``audit-keys.json``
    the JWK Set (RFC 7517) of every Ed25519 audit key the server ever used (RFC 8037 ``OKP`` keys).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "uaa-audit-ledger/1"
TREE_HEAD_TYPE = "uaa-audit-tree-head/1"
PRUNE_STATEMENT_TYPE = "uaa-audit-prune/1"
PRUNED_EVENT = "ledger.pruned"
MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles, exact up to here
# How far apart the clocks of the hosts that append records, seal heads and export may be: a head may be
# dated up to this much before a record it covers or after the export, and the sealer refuses heads and
# records dated more than this in its future (docs/audit-ledger.md, "The verifier checks").
CLOCK_TOLERANCE_MS = 5 * 60 * 1000
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()


# --- RFC 8785 canonical JSON ---------------------------------------------------------------------
class NotCanonical(ValueError):
    """A value outside the subset of JSON the ledger uses (str, int, bool, None, list, dict)."""


def _check(value: Any, path: str = "$") -> None:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
                raise NotCanonical(f"{path}: not valid Unicode") from exc
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise NotCanonical(f"{path}: integer outside ±(2**53-1)")
        return
    if isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _check(item, f"{path}[{position}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise NotCanonical(f"{path}: member names must be ASCII strings")
            _check(item, f"{path}.{key}")
        return
    raise NotCanonical(f"{path}: {type(value).__name__} is not allowed (no floats, no other types)")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) serialization of ``value``, UTF-8 encoded.

    For the subset the ledger allows (strings, integers within ±(2**53-1), booleans, null, arrays and
    objects with ASCII member names) Python's ``json.dumps`` with sorted keys, no whitespace and
    ``ensure_ascii=False`` is byte-for-byte JCS: integers print as ECMAScript does, strings escape
    exactly ``"``, ``\\`` and U+0000..U+001F (the short forms \\b \\f \\n \\r \\t, else lowercase
    ``\\u00xx``), and sorting ASCII names by code point equals JCS's sort by UTF-16 code units.
    Floats are refused rather than canonicalized.
    """
    _check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise NotCanonical(f"duplicate member name {key!r}")
        result[key] = value
    return result


def _refuse_float(text: str) -> Any:
    raise NotCanonical(f"number {text} is not an integer")


def parse_json(text: str | bytes) -> Any:
    """Parse JSON strictly: duplicate member names and non-integer numbers are errors."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_refuse_float)


def time_ms(value: object) -> int | None:
    """Milliseconds since the epoch of an RFC 3339 UTC time as records hold it (``…Z``), else ``None``."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


# --- RFC 9162 §2.1 Merkle tree -------------------------------------------------------------------
def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier_ranges(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``[start, end)`` whose roots summarize ``[0, size)``, largest first."""
    ranges, start = [], 0
    for bit in reversed(range(size.bit_length())):
        if size & (1 << bit):
            ranges.append((start, start + (1 << bit)))
            start += 1 << bit
    return ranges


def fold_frontier(hashes: Sequence[bytes]) -> bytes:
    """The tree root from a frontier: MTH folds right, ``H(f0, H(f1, ... H(fn-1, fn)))``."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for node in reversed(hashes[:-1]):
        root = node_hash(node, root)
    return root


class Frontier:
    """A compact range over ``[0, size)``: append leaves one by one, read the root at any size (O(log n))."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a frontier of size {size} has {bin(size).count('1')} hashes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        node, carry = leaf, self.size
        while carry & 1:
            node = node_hash(self.hashes.pop(), node)
            carry >>= 1
        self.hashes.append(node)
        self.size += 1

    def root(self) -> bytes:
        return fold_frontier(self.hashes)


class PrunedRange(LookupError):
    """A hash below the retained range was needed (the records were exported and pruned)."""


class MerkleTree:
    """RFC 9162 §2.1 over leaf hashes ``[offset, offset + len(leaves))`` and the frontier of ``[0, offset)``.

    The frontier stands in for pruned records: every root, inclusion proof (for retained leaves) and
    consistency proof (from a size ≥ offset) is computable from it.
    """

    def __init__(self, leaves: Sequence[bytes], *, offset: int = 0, frontier: Sequence[bytes] = ()) -> None:
        ranges = frontier_ranges(offset)
        if len(ranges) != len(frontier):
            raise ValueError(f"a frontier of size {offset} has {len(ranges)} hashes")
        self.leaves = leaves
        self.offset = offset
        self.known: dict[tuple[int, int], bytes] = dict(zip(ranges, frontier, strict=True))

    @property
    def size(self) -> int:
        return self.offset + len(self.leaves)

    def hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end])."""
        if end <= start:
            if start == end == 0:
                return EMPTY_ROOT
            raise ValueError(f"empty range [{start}, {end})")
        if end > self.size:
            raise IndexError(f"the tree has {self.size} leaves, not {end}")
        known = self.known.get((start, end))
        if known is not None:
            return known
        if end - start == 1:
            if start < self.offset:
                raise PrunedRange(f"leaf {start} was pruned")
            return self.leaves[start - self.offset]
        k = _split(end - start)
        return node_hash(self.hash(start, start + k), self.hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        return self.hash(0, self.size if size is None else size)

    def frontier(self, size: int | None = None) -> list[bytes]:
        return [self.hash(start, end) for start, end in frontier_ranges(self.size if size is None else size)]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
        if not 0 <= index < size <= self.size:
            raise IndexError(f"leaf {index} is not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = _split(end - start)
        if m < k:
            return [*self._path(m, start, start + k), self.hash(start + k, end)]
        return [*self._path(m - k, start + k, end), self.hash(start, start + k)]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
        if not 0 <= first <= second <= self.size:
            raise IndexError(f"no consistency proof from {first} to {second} in a tree of size {self.size}")
        if first in (0, second):
            return []
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        if m == end - start:
            return [] if complete else [self.hash(start, end)]
        k = _split(end - start)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self.hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.hash(start, start + k)]


def verify_inclusion(*, index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: verify that leaf hash ``leaf`` is at ``index`` in the tree with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    *, first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: verify that the tree of size ``second`` extends the tree of size ``first``."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof  # every tree extends the empty tree
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the old root is itself a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


# --- signed tree heads ---------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tree_head_message(*, issuer: str, tree_size: int, root_hash: bytes, timestamp: int, kid: str) -> bytes:
    """The bytes an audit key signs: the canonical JSON of the head (timestamp in ms since the epoch)."""
    return canonical_json(
        {
            "type": TREE_HEAD_TYPE,
            "issuer": issuer,
            "tree_size": tree_size,
            "root_hash": root_hash.hex(),
            "timestamp": timestamp,
            "kid": kid,
        }
    )


def prune_statement_message(
    *, issuer: str, tree_size: int, root_hash: bytes, timestamp: int, kid: str, export_manifest_sha256: str
) -> bytes:
    """The bytes an audit key signs when ``audit prune`` deletes the records below ``tree_size``: the
    canonical JSON of the statement (its own ``type``, so no tree head signature can pass for one)."""
    return canonical_json(
        {
            "type": PRUNE_STATEMENT_TYPE,
            "issuer": issuer,
            "tree_size": tree_size,
            "root_hash": root_hash.hex(),
            "timestamp": timestamp,
            "kid": kid,
            "export_manifest_sha256": export_manifest_sha256,
        }
    )


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an RFC 8037 OKP key: SHA-256 over its required members, base64url."""
    required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    return b64url(hashlib.sha256(canonical_json(required)).digest())


def public_key_from_jwk(jwk: dict[str, Any]) -> Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("audit keys are RFC 8037 OKP Ed25519 keys")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))


def load_keys(jwks: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    """``kid`` → public key; a ``kid`` must be the RFC 7638 thumbprint of its key."""
    keys = {}
    for jwk in jwks.get("keys", []):
        if jwk.get("kid") != jwk_thumbprint(jwk):
            raise ValueError(f"audit key {jwk.get('kid')!r}: kid is not its RFC 7638 thumbprint")
        keys[jwk["kid"]] = public_key_from_jwk(jwk)
    return keys


def _unknown_key(kid: object, pinned: bool) -> str:
    return f"is signed by an unknown key {kid!r}" + (
        " that is not among the pinned audit keys" if pinned else ""
    )


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SAFE_INTEGER


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def verify_tree_head(
    head: object,
    *,
    issuer: str,
    keys: dict[str, Ed25519PublicKey],
    pinned: bool = False,
    name: str = "tree head",
) -> str | None:
    """``None`` if ``head`` carries a valid signature by a known audit key, else what is wrong.

    ``pinned``: ``keys`` are the auditor's own, not the export's (only changes the message).
    """
    if not isinstance(head, dict):
        return f"{name} {head!r} is not a JSON object"
    where = f"{name} of size {head.get('tree_size')} (timestamp {head.get('timestamp')})"
    if not (
        _is_size(head.get("tree_size"))
        and _is_size(head.get("timestamp"))
        and _is_hash(head.get("root_hash"))
        and isinstance(head.get("signature"), str)
    ):
        return (
            f"{where} is malformed: it needs an integer tree_size and timestamp, a hex root_hash, a signature"
        )
    kid = head.get("kid", "")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        return f"{where} {_unknown_key(kid, pinned)}"
    try:
        message = tree_head_message(
            issuer=issuer,
            tree_size=head["tree_size"],
            root_hash=bytes.fromhex(head["root_hash"]),
            timestamp=head["timestamp"],
            kid=kid,
        )
        key.verify(b64url_decode(head["signature"]), message)
    except (InvalidSignature, TypeError, ValueError):
        return f"{where} has an invalid signature: it was forged or altered"
    return None


def verify_prune_statement(
    detail: object,
    *,
    issuer: str,
    keys: dict[str, Ed25519PublicKey],
    heads_by_size: dict[int, list[dict[str, Any]]],
    pinned: bool = False,
) -> str | None:
    """``None`` if the ``detail`` of a ``ledger.pruned`` record is a prune statement signed by a known
    audit key whose tree size and root are those of a signed tree head, else what is wrong.

    A database attacker can get any record sealed, a ``ledger.pruned`` one included; only ``audit prune``,
    holding the audit key, can sign the statement.
    """
    members = ("tree_size", "root_hash", "timestamp", "kid", "signature", "export_manifest_sha256")
    if not isinstance(detail, dict) or any(member not in detail for member in members):
        return "it carries no signed prune statement: it was not written by `audit prune`"
    kid = detail["kid"]
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        return f"its prune statement {_unknown_key(kid, pinned)}"
    size, root = detail["tree_size"], detail["root_hash"]
    try:
        if not (_is_size(size) and _is_hash(root) and isinstance(detail["signature"], str)):
            raise ValueError("malformed")
        message = prune_statement_message(
            issuer=issuer,
            tree_size=size,
            root_hash=bytes.fromhex(root),
            timestamp=detail["timestamp"],
            kid=kid,
            export_manifest_sha256=detail["export_manifest_sha256"],
        )
        key.verify(b64url_decode(detail["signature"]), message)
    except (InvalidSignature, TypeError, ValueError):
        return "its prune statement has an invalid signature: it was forged or altered"
    heads = heads_by_size.get(size)
    if not heads:
        return f"its prune statement names tree size {size}, which no signed tree head in the export has"
    if any(head["root_hash"] != root for head in heads):
        return f"its prune statement's root is not the root of the signed tree head of size {size}"
    return None


# --- whole-ledger verification -------------------------------------------------------------------
KEYS_NOT_PINNED = (
    "audit keys were not pinned: the signatures were checked against the export's own audit-keys.json,"
    " which shows only that the export agrees with itself, not who signed it; pass --keys with the audit"
    " JWK Set you obtained from the issuer independently (/.well-known/audit-keys.json)"
)
NO_TRUSTED_HEAD = (
    "no trusted head: an export cut short together with its last tree heads looks complete; pass"
    " --trusted-head with a signed head you saved at an earlier audit"
)


@dataclass
class Report:
    records: int = 0
    tree_heads: int = 0
    keys: int = 0
    tree_size: int = 0
    root_hash: str = ""
    first_index: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    first_bad_record: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def bad_record(self, index: int, message: str) -> None:
        if self.first_bad_record is None or index < self.first_bad_record:
            self.first_bad_record = index
        self.errors.append(message)

    def summary(self) -> str:
        if self.ok:
            start = (
                f" from record {self.first_index} (the records below were pruned)" if self.first_index else ""
            )
            return (
                f"OK: {self.records} records{start}, {self.tree_heads} signed tree heads,"
                f" {self.keys} audit keys; tree size {self.tree_size}, root {self.root_hash}"
            )
        first = "" if self.first_bad_record is None else f" (first bad record: {self.first_bad_record})"
        return f"FAILED{first}: " + "; ".join(self.errors)


def _check_records(records: Sequence[dict[str, Any]], first_index: int, report: Report) -> list[bytes]:
    """Leaf hashes recomputed from each record; names the first record that disagrees with its seal."""
    computed: list[bytes] = []
    sealed: list[bytes] = []
    for position, entry in enumerate(records):
        expected = first_index + position
        index = entry.get("index") if isinstance(entry, dict) else None
        if index != expected or isinstance(index, bool):
            if isinstance(index, int) and index > expected:
                report.bad_record(expected, f"record {expected} is missing (the next record is {index})")
            else:
                report.bad_record(expected, f"record {expected} is out of order (found index {index!r})")
            break
        try:
            computed.append(leaf_hash(canonical_json(entry["record"])))
            sealed.append(bytes.fromhex(entry["leaf_hash"]))
        except (KeyError, TypeError, ValueError) as exc:
            report.bad_record(index, f"record {index} is malformed: {exc}")
            break
    for i in range(len(sealed)):
        if computed[i] == sealed[i]:
            continue
        index = first_index + i
        if i + 1 < len(sealed) and computed[i] == sealed[i + 1] and computed[i + 1] == sealed[i]:
            report.bad_record(index, f"records {index} and {index + 1} are swapped")
        else:
            report.bad_record(
                index, f"record {index} was altered: its content does not hash to its sealed leaf"
            )
        break
    return computed


def _signed_statement(head: dict[str, Any]) -> tuple[object, ...]:
    return tuple(head.get(member) for member in ("tree_size", "root_hash", "timestamp", "kid", "signature"))


def _check_heads(
    tree_heads: Sequence[dict[str, Any]],
    *,
    issuer: str,
    keys: dict[str, Ed25519PublicKey],
    pinned: bool,
    report: Report,
) -> list[dict[str, Any]]:
    """The validly signed heads; each must extend the one before it (RFC 9162 §2.1.4.2) and not be older.

    A head that is an exact copy of an earlier one (the same signed statement) is skipped with a warning:
    it states nothing new, but the sealer never writes one, so it was copied in outside UAA."""
    good: list[dict[str, Any]] = []
    seen: set[tuple[object, ...]] = set()
    for head in tree_heads:
        problem = verify_tree_head(head, issuer=issuer, keys=keys, pinned=pinned)
        if problem:
            report.errors.append(problem)
            continue
        if _signed_statement(head) in seen:
            report.warnings.append(
                f"tree head of size {head['tree_size']} (timestamp {head['timestamp']}) appears twice: the"
                " copy was skipped; it states nothing new, but the sealer never writes one, so it was copied"
                " in outside UAA"
            )
            continue
        seen.add(_signed_statement(head))
        if good:
            previous = good[-1]
            if head["timestamp"] < previous["timestamp"]:
                report.errors.append(
                    f"tree head of size {head['tree_size']} (timestamp {head['timestamp']}) is older than the"
                    f" tree head before it (size {previous['tree_size']}, timestamp {previous['timestamp']}):"
                    " tree head times never decrease"
                )
            proof = head.get("consistency", [])
            try:
                nodes = [bytes.fromhex(node) for node in proof] if isinstance(proof, list) else None
            except (TypeError, ValueError):
                nodes = None
            consistent = (
                head["tree_size"] >= previous["tree_size"]
                and nodes is not None
                and verify_consistency(
                    first=previous["tree_size"],
                    second=head["tree_size"],
                    first_root=bytes.fromhex(previous["root_hash"]),
                    second_root=bytes.fromhex(head["root_hash"]),
                    proof=nodes,
                )
            )
            if not consistent:
                report.errors.append(
                    f"tree heads of sizes {previous['tree_size']} and {head['tree_size']} are not consistent:"
                    " the later one does not extend the earlier one"
                )
        good.append(head)
    return good


def _check_times(
    records: Sequence[dict[str, Any]],
    good_heads: Sequence[dict[str, Any]],
    *,
    first_index: int,
    exported_at: object,
    report: Report,
) -> None:
    """RFC 9162 §4.10: a head is signed after the records it covers were appended, and before anyone could
    export it; both within ``CLOCK_TOLERANCE_MS``. Only the first offence of each kind is named."""
    if exported_at is not None:
        limit = time_ms(exported_at)
        if limit is None:
            report.errors.append(f"manifest.exported_at ({exported_at!r}) is not an RFC 3339 UTC time")
        else:
            for head in good_heads:
                if head["timestamp"] > limit + CLOCK_TOLERANCE_MS:
                    report.errors.append(
                        f"tree head of size {head['tree_size']} (timestamp {head['timestamp']}) is dated"
                        f" after the export was made ({exported_at}): it was signed by a sealer whose clock"
                        " ran ahead, or extended a head from the future"
                    )
                    break
    latest_at: tuple[int, int] | None = None  # (at, index) of the latest record so far
    position = 0
    for head in good_heads:
        size = head["tree_size"]
        while position < len(records) and first_index + position < size:
            entry = records[position]
            record = entry.get("record") if isinstance(entry, dict) else None
            at = time_ms(record.get("at")) if isinstance(record, dict) else None
            if at is None:
                report.bad_record(
                    first_index + position,
                    f"record {first_index + position} has no valid `at` (an RFC 3339 UTC time)",
                )
                return
            if latest_at is None or at > latest_at[0]:
                latest_at = (at, first_index + position)
            position += 1
        if latest_at is not None and head["timestamp"] + CLOCK_TOLERANCE_MS < latest_at[0]:
            report.errors.append(
                f"tree head of size {size} (timestamp {head['timestamp']}) is older than record"
                f" {latest_at[1]} it covers (at {records[latest_at[1] - first_index]['record']['at']}): a"
                " head is signed after its records are appended, so the head's time or the record's is wrong"
            )
            return


def _check_prunes(
    records: Sequence[dict[str, Any]],
    *,
    first_index: int,
    issuer: str,
    keys: dict[str, Ed25519PublicKey],
    pinned: bool,
    heads_by_size: dict[int, list[dict[str, Any]]],
    report: Report,
) -> None:
    """Every ``ledger.pruned`` record carries a valid prune statement, and an export that starts above 0
    holds the one for its ``first_index``: nothing else shows the missing records were pruned, not cut."""
    covering: tuple[int, dict[str, Any]] | None = None
    for entry in records:
        record = entry.get("record") if isinstance(entry, dict) else None
        if not isinstance(record, dict) or record.get("event") != PRUNED_EVENT:
            continue
        index, detail = entry.get("index"), record.get("detail")
        if not isinstance(index, int):
            continue  # _check_records names it
        claimed = detail.get("tree_size") if isinstance(detail, dict) else None
        problem = verify_prune_statement(
            detail, issuer=issuer, keys=keys, heads_by_size=heads_by_size, pinned=pinned
        )
        if problem is None and isinstance(claimed, int) and claimed > index:
            problem = "it claims to prune records after its own index"
        if problem:
            report.bad_record(index, f"ledger.pruned record {index} (tree size {claimed}): {problem}")
        elif claimed == first_index:
            covering = (index, record)
    if first_index == 0:
        return
    warning = f"the export starts at record {first_index}, not 0: records [0, {first_index}) are not in it"
    if covering is None:
        report.warnings.append(warning)
        report.errors.append(
            f"the export starts at record {first_index} but holds no ledger.pruned record for tree size"
            f" {first_index} signed by an audit key: records [0, {first_index}) were removed, not pruned"
        )
        return
    index, record = covering
    detail = record["detail"]
    report.warnings.append(
        f"{warning}; they were pruned at {record.get('at')} (ledger.pruned record {index},"
        f" signed by audit key {detail['kid']}) and only the archived export whose manifest.json has SHA-256"
        f" {detail['export_manifest_sha256']} shows what they were: verify that export too"
    )


def _check_trusted_head(
    trusted: object,
    *,
    issuer: str,
    keys: dict[str, Ed25519PublicKey],
    pinned: bool,
    tree_heads: Sequence[dict[str, Any]],
    good_heads: Sequence[dict[str, Any]],
    roots: dict[int, bytes],
    report: Report,
    name: str = "the trusted head",
) -> None:
    """RFC 9162 §2.1.4, §8: the export holds, and its later heads extend, the head the auditor saved.

    ``roots`` are roots the records reproduce, by size (for a trusted size no exported head has). ``name``
    says whose head it is in the messages (the server's own check passes its sealer's witness)."""
    problem = verify_tree_head(trusted, issuer=issuer, keys=keys, pinned=pinned, name=name)
    if problem:
        report.errors.append(problem)
    if not isinstance(trusted, dict) or not (
        _is_size(trusted.get("tree_size")) and _is_hash(trusted.get("root_hash"))
    ):
        return
    if trusted.get("issuer", issuer) != issuer:
        report.errors.append(f"{name} is of issuer {trusted.get('issuer')!r}, the export of {issuer!r}")
        return
    size, root = trusted["tree_size"], trusted["root_hash"]
    mismatch = f"the export is not consistent with {name} of size {size}"
    latest = good_heads[-1]["tree_size"] if good_heads else 0
    if not good_heads and tree_heads:
        report.errors.append(f"{mismatch}: none of the export's tree heads carries a valid signature")
    elif latest < size:
        report.errors.append(
            f"the export ends at tree size {latest}, before {name} of size {size}:"
            " records and tree heads were cut from the end"
        )
    else:
        same = [head["root_hash"] for head in good_heads if head["tree_size"] == size]
        if not same and size in roots:
            same = [roots[size].hex()]
        if not same:
            report.errors.append(
                f"{mismatch}: the export has no tree head of that size"
                " (every head is kept, so it was removed)"
            )
        elif any(found != root for found in same):
            report.errors.append(
                f"{mismatch}: the export's tree of that size has root {same[0]}, {name} {root};"
                " the history was rewritten"
            )


def verify_ledger(
    *,
    records: Sequence[dict[str, Any]],
    tree_heads: Sequence[dict[str, Any]],
    jwks: dict[str, Any],
    issuer: str,
    first_index: int = 0,
    frontier: Sequence[str] = (),
    tree_size: int | None = None,
    pinned_keys: dict[str, Any] | None = None,
    trusted_head: dict[str, Any] | None = None,
    exported_at: object = None,
    witnesses: Sequence[tuple[str, dict[str, Any]]] = (),
) -> Report:
    """Check every leaf, every tree head signature, consistency between consecutive heads, and that
    the records reproduce every signed root; that ``tree_size`` (the manifest's) is the latest head's and
    ``first_index`` + the records add up to it; that an export starting above 0 holds the signed prune
    statement for ``first_index`` and that the frontier reproduces the signed head of that size; that head
    times never decrease, are not after ``exported_at`` (the manifest's) and not before a record they
    cover (``CLOCK_TOLERANCE_MS``). With ``pinned_keys`` only those keys are trusted (else the export's
    ``jwks``, with a warning); with ``trusted_head`` the export must hold and extend it, and so for each
    ``(name, head)`` of ``witnesses``. The report names the first bad record it can."""
    report = Report(records=len(records), tree_heads=len(tree_heads))
    if not _is_size(first_index) or not (tree_size is None or _is_size(tree_size)):
        report.errors.append(
            f"manifest.first_index ({first_index!r}) and manifest.tree_size ({tree_size!r}) must be"
            " non-negative integers"
        )
        return report
    report.first_index = first_index
    pinned = pinned_keys is not None
    try:
        keys = load_keys(pinned_keys if pinned_keys is not None else jwks)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        report.errors.append(f"{'pinned' if pinned else 'exported'} audit keys unusable: {exc}")
        return report
    report.keys = len(keys)
    if not pinned:
        report.warnings.append(KEYS_NOT_PINNED)
    if trusted_head is None:
        report.warnings.append(NO_TRUSTED_HEAD)

    good_heads = _check_heads(tree_heads, issuer=issuer, keys=keys, pinned=pinned, report=report)
    heads_by_size: dict[int, list[dict[str, Any]]] = {}
    for head in good_heads:
        heads_by_size.setdefault(head["tree_size"], []).append(head)
    try:
        if not isinstance(frontier, list | tuple):
            raise TypeError("not a list")
        start = Frontier(first_index, [bytes.fromhex(node) for node in frontier])
    except (TypeError, ValueError) as exc:
        report.errors.append(f"manifest frontier unusable: {exc}")
        return report
    computed = _check_records(records, first_index, report)
    _check_times(records, good_heads, first_index=first_index, exported_at=exported_at, report=report)
    _check_prunes(
        records,
        first_index=first_index,
        issuer=issuer,
        keys=keys,
        pinned=pinned,
        heads_by_size=heads_by_size,
        report=report,
    )

    end = first_index + len(records)
    latest = good_heads[-1] if good_heads else None
    if latest is None:
        report.errors.append("the export holds no valid signed tree head")
    else:
        report.tree_size, report.root_hash = latest["tree_size"], latest["root_hash"]
        if tree_size is not None and tree_size != latest["tree_size"]:
            report.errors.append(
                f"manifest.tree_size is {tree_size} but the latest signed tree head has size"
                f" {latest['tree_size']}: tree heads were removed from the end, or the manifest was altered"
            )
        if latest["tree_size"] > end:
            report.bad_record(
                end, f"records from {end} on are missing: the tree heads cover {latest['tree_size']}"
            )
        elif latest["tree_size"] < end:
            size = latest["tree_size"]
            report.bad_record(size, f"records from {size} on are not covered by any signed tree head")
    if tree_size is not None and end != tree_size:
        report.errors.append(
            f"first_index {first_index} + {len(records)} records make {end},"
            f" not manifest.tree_size {tree_size}"
        )

    anchors = [*([("the trusted head", trusted_head)] if trusted_head is not None else []), *witnesses]
    trusted_sizes = {
        head["tree_size"] for _, head in anchors if isinstance(head, dict) and _is_size(head.get("tree_size"))
    }
    roots: dict[int, bytes] = {}
    if first_index > 0 and first_index not in heads_by_size:
        report.errors.append(
            f"no signed tree head has size {first_index}: the export's first_index is not a sealed tree size,"
            " so its frontier cannot be checked"
        )
    elif not _compare(start, heads_by_size.get(first_index, []), report):
        report.errors.append("the manifest frontier does not match the tree head at the pruning point")
    else:
        if start.size in trusted_sizes:
            roots[start.size] = start.root()
        matched = first_index
        for leaf in computed:
            start.append(leaf)
            if start.size in trusted_sizes:
                roots[start.size] = start.root()
            if start.size not in heads_by_size:
                continue
            if not _compare(start, heads_by_size[start.size], report):
                if report.first_bad_record is None:
                    report.bad_record(
                        matched,
                        f"a record in [{matched}, {start.size}) was altered, removed or moved along with its"
                        f" sealed leaf hash (the last tree head the records reproduce has size {matched})",
                    )
                break
            matched = start.size

    for name, anchor in anchors:
        _check_trusted_head(
            anchor,
            issuer=issuer,
            keys=keys,
            pinned=pinned,
            tree_heads=tree_heads,
            good_heads=good_heads,
            roots=roots,
            report=report,
            name=name,
        )
    return report


def _compare(frontier: Frontier, heads: list[dict[str, Any]], report: Report) -> bool:
    root = frontier.root().hex()
    for head in heads:
        if head["root_hash"] != root:
            report.errors.append(
                f"the records do not reproduce the root of the signed tree head of size {head['tree_size']}"
            )
            return False
    return True


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            line = line.rstrip(b"\n")
            if line:
                yield line


def load_export(directory: Path) -> dict[str, Any]:
    manifest = parse_json((directory / "manifest.json").read_bytes())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} export")
    for member in ("issuer", "tree_size"):
        if member not in manifest:
            raise ValueError(f"manifest.json has no {member}")
    if not isinstance(manifest["issuer"], str):
        raise ValueError("manifest.issuer is not a string")
    return {
        "manifest": manifest,
        "records": [parse_json(line) for line in _lines(directory / "records.jsonl")],
        "tree_heads": [parse_json(line) for line in _lines(directory / "tree-heads.jsonl")],
        "jwks": parse_json((directory / "audit-keys.json").read_bytes()),
    }


def load_trusted_head(path: Path | str) -> dict[str, Any]:
    """A signed tree head saved earlier: one head as in tree-heads.jsonl (``manage.py audit head`` adds
    ``issuer``), or a document that holds one as ``tree_head`` (``manage.py audit prove``)."""
    document = parse_json(Path(path).read_bytes())
    if isinstance(document, dict) and isinstance(document.get("tree_head"), dict):
        head = dict(document["tree_head"])
        if "issuer" in document:
            head.setdefault("issuer", document["issuer"])
        return head
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a signed tree head")
    return document


def verify_export(
    directory: Path | str, *, keys: dict[str, Any] | None = None, trusted_head: dict[str, Any] | None = None
) -> Report:
    """Verify an export directory written by ``manage.py audit export``; ``keys`` is the auditor's pinned
    audit JWK Set, ``trusted_head`` a signed head they saved earlier (both see ``verify_ledger``)."""
    try:
        export = load_export(Path(directory))
    except (OSError, ValueError) as exc:
        return Report(errors=[f"export unreadable: {exc}"])
    manifest = export["manifest"]
    return verify_ledger(
        records=export["records"],
        tree_heads=export["tree_heads"],
        jwks=export["jwks"],
        issuer=manifest["issuer"],
        first_index=manifest.get("first_index", 0),
        frontier=manifest.get("frontier", []),
        tree_size=manifest["tree_size"],
        pinned_keys=keys,
        trusted_head=trusted_head,
        exported_at=manifest.get("exported_at"),
    )


def verify_proof(proof: dict[str, Any], jwks: dict[str, Any]) -> str | None:
    """Check one ``manage.py audit prove`` document: ``None`` if the record is in the signed tree."""
    head = proof["tree_head"]
    problem = verify_tree_head(head, issuer=proof["issuer"], keys=load_keys(jwks))
    if problem:
        return problem
    leaf = leaf_hash(canonical_json(proof["record"]))
    if not verify_inclusion(
        index=proof["index"],
        size=head["tree_size"],
        leaf=leaf,
        proof=[bytes.fromhex(node) for node in proof["inclusion"]],
        root=bytes.fromhex(head["root_hash"]),
    ):
        return f"record {proof['index']} is not included in the tree head of size {head['tree_size']}"
    return None


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a UAA audit ledger export offline.")
    parser.add_argument("export", nargs="?", help="directory written by `manage.py audit export`")
    parser.add_argument("--proof", help="an inclusion proof written by `manage.py audit prove`")
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help="the audit JWK Set you obtained independently (pinned): every signature must be by one of"
        " these keys, not merely by a key the export lists; required with --proof",
    )
    parser.add_argument(
        "--trusted-head",
        metavar="FILE",
        help="a signed tree head you saved at an earlier audit (`manage.py audit head`): the export must"
        " hold it and extend it",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.proof:
        if not args.keys:
            parser.error("--proof needs --keys")
        if args.trusted_head:
            parser.error("--trusted-head applies to an export, not to --proof")
        problem = verify_proof(
            parse_json(Path(args.proof).read_bytes()), parse_json(Path(args.keys).read_bytes())
        )
        print(
            "OK: the record is included in the signed tree head" if problem is None else f"FAILED: {problem}"
        )
        return 0 if problem is None else 1
    if not args.export:
        parser.error("give an export directory or --proof")
    try:
        keys = parse_json(Path(args.keys).read_bytes()) if args.keys else None
        trusted = load_trusted_head(args.trusted_head) if args.trusted_head else None
    except (OSError, ValueError) as exc:
        print(f"FAILED: --keys or --trusted-head unreadable: {exc}")
        return 1
    report = verify_export(args.export, keys=keys, trusted_head=trusted)
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
