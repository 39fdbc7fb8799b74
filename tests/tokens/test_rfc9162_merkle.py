"""RFC 9162 §2.1 Merkle trees and RFC 8785 canonical JSON, as tokens/verifier.py implements them.

Checked against the Certificate Transparency reference vectors and against a literal transcription of
the RFC's recursive definitions, for every tree size and index up to 40.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokens.verifier import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    NotCanonical,
    PrunedRange,
    canonical_json,
    leaf_hash,
    node_hash,
    parse_json,
    verify_consistency,
    verify_inclusion,
)

ROOT = Path(__file__).resolve().parents[2]

CT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [  # (index, tree size, PATH)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [  # (first, second, PROOF)
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


# The RFC's definitions, transcribed literally over lists of leaf hashes: the reference for the tests.
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    return [*path(m, d[:k]), mth(d[k:])] if m < k else [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


LEAVES = [leaf_hash(f"leaf-{i}".encode()) for i in range(40)]
WRONG = hashlib.sha256(b"wrong").digest()


def test_roots_match_the_certificate_transparency_vectors():
    """RFC 9162 §2.1.1: MTH({}) = SHA-256(), leaves hash as 0x00||d, nodes as 0x01||l||r."""
    hashes = [leaf_hash(leaf) for leaf in CT_LEAVES]
    assert MerkleTree([]).root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    for n, expected in enumerate(CT_ROOTS, start=1):
        assert MerkleTree(hashes[:n]).root().hex() == expected


def test_inclusion_proofs_match_the_certificate_transparency_vectors():
    """RFC 9162 §2.1.3.1 PATH(m, D[n]) and §2.1.3.2 verification."""
    hashes = [leaf_hash(leaf) for leaf in CT_LEAVES]
    for index, size, expected in CT_INCLUSION:
        proof = MerkleTree(hashes).inclusion_proof(index, size)
        assert [node.hex() for node in proof] == expected
        root = bytes.fromhex(CT_ROOTS[size - 1])
        assert verify_inclusion(index=index, size=size, leaf=hashes[index], proof=proof, root=root)


def test_consistency_proofs_match_the_certificate_transparency_vectors():
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) and §2.1.4.2 verification."""
    hashes = [leaf_hash(leaf) for leaf in CT_LEAVES]
    for first, second, expected in CT_CONSISTENCY:
        proof = MerkleTree(hashes).consistency_proof(first, second)
        assert [node.hex() for node in proof] == expected
        assert verify_consistency(
            first=first,
            second=second,
            first_root=bytes.fromhex(CT_ROOTS[first - 1]),
            second_root=bytes.fromhex(CT_ROOTS[second - 1]),
            proof=proof,
        )


def test_every_root_and_proof_agrees_with_the_rfc_definitions_up_to_40_leaves():
    """RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1, transcribed literally, against the iterative implementation."""
    tree = MerkleTree(LEAVES)
    frontier = Frontier()
    for n in range(1, len(LEAVES) + 1):
        frontier.append(LEAVES[n - 1])
        root = mth(LEAVES[:n])
        assert tree.root(n) == frontier.root() == root
        for m in range(n):
            proof = tree.inclusion_proof(m, n)
            assert proof == path(m, LEAVES[:n])
            assert verify_inclusion(index=m, size=n, leaf=LEAVES[m], proof=proof, root=root)
        for m in range(1, n):
            proof = tree.consistency_proof(m, n)
            assert proof == subproof(m, LEAVES[:n], True)
            assert verify_consistency(
                first=m, second=n, first_root=mth(LEAVES[:m]), second_root=root, proof=proof
            )


def test_a_tampered_proof_or_root_never_verifies():
    """RFC 9162 §2.1.3.2 and §2.1.4.2: any changed node, index, size or root fails verification."""
    tree = MerkleTree(LEAVES[:13])
    root = tree.root()
    for m in range(13):
        proof = tree.inclusion_proof(m, 13)
        for position in range(len(proof)):
            bad = list(proof)
            bad[position] = bytes([bad[position][0] ^ 1]) + bad[position][1:]
            assert not verify_inclusion(index=m, size=13, leaf=LEAVES[m], proof=bad, root=root)
        assert not verify_inclusion(index=(m + 1) % 13, size=13, leaf=LEAVES[m], proof=proof, root=root)
        assert not verify_inclusion(index=m, size=26, leaf=LEAVES[m], proof=proof, root=root)
        assert not verify_inclusion(index=m, size=13, leaf=LEAVES[m], proof=[*proof, root], root=root)
    for m in range(1, 13):
        old = tree.root(m)
        proof = tree.consistency_proof(m, 13)
        assert not verify_consistency(first=m, second=13, first_root=old, second_root=WRONG, proof=proof)
        assert not verify_consistency(first=m, second=13, first_root=WRONG, second_root=root, proof=proof)
        assert not verify_consistency(first=m, second=13, first_root=old, second_root=root, proof=proof[:-1])
        assert not verify_consistency(first=m, second=13, first_root=old, second_root=root, proof=[])


def test_a_frontier_stands_in_for_pruned_leaves():
    """Roots, inclusion proofs of retained leaves and consistency proofs from the pruning point onwards
    come out the same from the frontier of the pruned prefix as from all the leaves."""
    full = MerkleTree(LEAVES)
    for offset in (5, 8, 13, 21):
        pruned = MerkleTree(LEAVES[offset:], offset=offset, frontier=full.frontier(offset))
        assert pruned.root() == full.root()
        for size in range(offset + 1, len(LEAVES) + 1):
            assert pruned.root(size) == full.root(size)
            assert pruned.consistency_proof(offset, size) == full.consistency_proof(offset, size)
            for index in range(offset, size):
                assert pruned.inclusion_proof(index, size) == full.inclusion_proof(index, size)
        with pytest.raises(PrunedRange):
            pruned.hash(0, 1)  # a pruned leaf itself is gone


def test_canonical_json_is_rfc_8785_for_the_ledger_subset():
    """RFC 8785 §3.2: sorted member names, no whitespace, minimal string escapes, UTF-8, integers as is."""
    value = {"b": [1, True, None], "a": 'é\n\u2028\x7f\x01"\\', "c": {"z": -5, "y": ""}}
    assert (
        canonical_json(value)
        == '{"a":"é\\n\u2028\x7f\\u0001\\"\\\\","b":[1,true,null],"c":{"y":"","z":-5}}'.encode()
    )
    assert parse_json(canonical_json(value)) == value


@pytest.mark.parametrize(
    "value", [1.5, {"n": 2**53}, {"é": 1}, {1: "x"}, {"s": "\ud800"}, b"bytes", {"set": {1}}]
)
def test_values_outside_the_canonical_subset_are_refused(value):
    """RFC 8785 §3.2.2.3 would print floats and large integers lossily: the ledger refuses them instead."""
    with pytest.raises(NotCanonical):
        canonical_json(value)


def test_duplicate_names_and_fractions_are_refused_when_parsing():
    """RFC 8785 §3.1 and RFC 7493 §2.3: the verifier reads I-JSON only."""
    with pytest.raises(NotCanonical):
        parse_json('{"a":1,"a":2}')
    with pytest.raises(NotCanonical):
        parse_json('{"a":1.0}')
    assert json.loads('{"a":1}') == parse_json('{"a":1}')


def test_the_verifier_runs_without_django_or_uaa():
    """The auditor's verifier needs the standard library and `cryptography` alone: with Django and every
    UAA package made unimportable it still loads and verifies."""
    code = f"""
import sys, runpy
BLOCKED = {{"django", "tokens", "uaa", "accounts", "jwcrypto", "oauthlib", "oauth2_provider"}}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked")
sys.meta_path.insert(0, Block())
module = runpy.run_path({str(ROOT / "tokens" / "verifier.py")!r}, run_name="verifier")
assert not [name for name in sys.modules if name.split(".")[0] in BLOCKED]
leaf = module["leaf_hash"](b"")
assert module["MerkleTree"]([leaf]).root().hex().startswith("6e340b9c")
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
