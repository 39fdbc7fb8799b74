"""Offline verifier of an exported UAA audit ledger: RFC 9162 Merkle tree, RFC 8785 canonical JSON.

Standalone by design: this module imports the Python standard library and ``cryptography`` only,
never Django or anything else from UAA, so an auditor can copy this one file and run, years later::

    python verifier.py EXPORT_DIR              # the whole export: exit status 0 only if it all verifies
    python verifier.py --proof PROOF.json --keys audit-keys.json   # one inclusion proof

The server builds its tree heads and proofs with the same functions (tokens/ledger.py), so what is
specified here is what is deployed. The export format (docs/audit-ledger.md):

``manifest.json``
    ``{"format": "uaa-audit-ledger/1", "issuer", "first_index", "frontier", "tree_size", "exported_at"}``;
    ``frontier`` holds the Merkle hashes of the pruned records ``[0, first_index)`` (empty if none).
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
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "uaa-audit-ledger/1"
TREE_HEAD_TYPE = "uaa-audit-tree-head/1"
MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles, exact up to here
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


def verify_tree_head(head: dict[str, Any], *, issuer: str, keys: dict[str, Ed25519PublicKey]) -> str | None:
    """``None`` if ``head`` carries a valid signature by a known audit key, else what is wrong."""
    where = f"tree head of size {head.get('tree_size')} (timestamp {head.get('timestamp')})"
    key = keys.get(head.get("kid", ""))
    if key is None:
        return f"{where} is signed by an unknown key {head.get('kid')!r}"
    try:
        message = tree_head_message(
            issuer=issuer,
            tree_size=head["tree_size"],
            root_hash=bytes.fromhex(head["root_hash"]),
            timestamp=head["timestamp"],
            kid=head["kid"],
        )
        key.verify(b64url_decode(head["signature"]), message)
    except (InvalidSignature, KeyError, TypeError, ValueError):
        return f"{where} has an invalid signature: it was forged or altered"
    return None


# --- whole-ledger verification -------------------------------------------------------------------
@dataclass
class Report:
    records: int = 0
    tree_heads: int = 0
    keys: int = 0
    tree_size: int = 0
    root_hash: str = ""
    errors: list[str] = field(default_factory=list)
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
            return (
                f"OK: {self.records} records, {self.tree_heads} signed tree heads, {self.keys} audit keys; "
                f"tree size {self.tree_size}, root {self.root_hash}"
            )
        first = "" if self.first_bad_record is None else f" (first bad record: {self.first_bad_record})"
        return f"FAILED{first}: " + "; ".join(self.errors)


def _check_records(records: Sequence[dict[str, Any]], first_index: int, report: Report) -> list[bytes]:
    """Leaf hashes recomputed from each record; names the first record that disagrees with its seal."""
    computed: list[bytes] = []
    sealed: list[bytes] = []
    for position, entry in enumerate(records):
        expected = first_index + position
        index = entry.get("index")
        if index != expected:
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


def verify_ledger(
    *,
    records: Sequence[dict[str, Any]],
    tree_heads: Sequence[dict[str, Any]],
    jwks: dict[str, Any],
    issuer: str,
    first_index: int = 0,
    frontier: Sequence[str] = (),
) -> Report:
    """Check every leaf, every tree head signature, consistency between consecutive heads, and that
    the records reproduce every signed root. The report names the first bad record it can."""
    report = Report(records=len(records), tree_heads=len(tree_heads))
    try:
        keys = load_keys(jwks)
    except (KeyError, TypeError, ValueError) as exc:
        report.errors.append(f"audit keys unusable: {exc}")
        return report
    report.keys = len(keys)

    previous: dict[str, Any] | None = None
    for head in tree_heads:
        problem = verify_tree_head(head, issuer=issuer, keys=keys)
        if problem:
            report.errors.append(problem)
        elif previous is not None:
            ordered = (
                head["tree_size"] >= previous["tree_size"] and head["timestamp"] >= previous["timestamp"]
            )
            consistent = ordered and verify_consistency(
                first=previous["tree_size"],
                second=head["tree_size"],
                first_root=bytes.fromhex(previous["root_hash"]),
                second_root=bytes.fromhex(head["root_hash"]),
                proof=[bytes.fromhex(node) for node in head.get("consistency", [])],
            )
            if not consistent:
                report.errors.append(
                    f"tree heads of sizes {previous['tree_size']} and {head['tree_size']} are not consistent:"
                    " the later one does not extend the earlier one"
                )
        if not problem:
            previous = head

    try:
        start = Frontier(first_index, [bytes.fromhex(node) for node in frontier])
    except ValueError as exc:
        report.errors.append(f"manifest frontier unusable: {exc}")
        return report
    computed = _check_records(records, first_index, report)
    good_heads = [head for head in tree_heads if verify_tree_head(head, issuer=issuer, keys=keys) is None]
    if not good_heads:
        if not report.errors:
            report.errors.append("the export holds no valid signed tree head")
        return report

    latest = good_heads[-1]
    report.tree_size, report.root_hash = latest["tree_size"], latest["root_hash"]
    end = first_index + len(records)
    if latest["tree_size"] > end:
        report.bad_record(
            end, f"records from {end} on are missing: the tree heads cover {latest['tree_size']}"
        )
    elif latest["tree_size"] < end:
        size = latest["tree_size"]
        report.bad_record(size, f"records from {size} on are not covered by any signed tree head")

    heads_by_size: dict[int, list[dict[str, Any]]] = {}
    for head in good_heads:
        heads_by_size.setdefault(head["tree_size"], []).append(head)
    matched = first_index
    if not _compare(start, heads_by_size.get(first_index, []), report):
        report.errors.append("the manifest frontier does not match the tree head at the pruning point")
        return report
    for leaf in computed:
        start.append(leaf)
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
    if manifest.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} export")
    return {
        "manifest": manifest,
        "records": [parse_json(line) for line in _lines(directory / "records.jsonl")],
        "tree_heads": [parse_json(line) for line in _lines(directory / "tree-heads.jsonl")],
        "jwks": parse_json((directory / "audit-keys.json").read_bytes()),
    }


def verify_export(directory: Path | str) -> Report:
    """Verify an export directory written by ``manage.py audit export``."""
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
    parser.add_argument("--keys", help="audit-keys.json to check --proof against")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.proof:
        if not args.keys:
            parser.error("--proof needs --keys")
        problem = verify_proof(
            parse_json(Path(args.proof).read_bytes()), parse_json(Path(args.keys).read_bytes())
        )
        print(
            "OK: the record is included in the signed tree head" if problem is None else f"FAILED: {problem}"
        )
        return 0 if problem is None else 1
    if not args.export:
        parser.error("give an export directory or --proof")
    report = verify_export(args.export)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
