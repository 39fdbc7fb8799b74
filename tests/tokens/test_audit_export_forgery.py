"""Forged exports: records removed, truncated or rewritten under the genuine keys and heads must not verify.

The attacker holds an export (or makes one with database access, but without ``UAA_KEK``, so without the
audit key) and wants an auditor to accept a ledger with history removed, truncated or rewritten. Each
forgery below must fail with a message naming the problem (RFC 9162 §2.1: a tree head commits to every
leaf below its size; §2.1.4: a later head must be shown consistent with an earlier one; §8: an auditor
checks the log against heads they hold themselves).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from tokens import ledger
from tokens.ledger.audit_keys import audit_jwks
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import (
    MerkleTree,
    b64url,
    canonical_json,
    jwk_thumbprint,
    leaf_hash,
    main,
    tree_head_message,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def sealed_ledger(db) -> list[TreeHead]:
    """Twelve records under three signed heads (sizes 5, 9, 13: the audit key's creation is record 4)."""
    heads = []
    for round_, count in enumerate((4, 4, 4)):
        for i in range(count):
            ledger.append_record(
                event=LedgerRecord.Event.TOKEN_ISSUED,
                client_id=f"client-{round_}-{i}",
                jti=f"jti-{round_}-{i}",
            )
        head = ledger.seal_tree_head(now=T0 + timedelta(seconds=round_))
        assert head is not None
        heads.append(head)
    assert [head.tree_size for head in heads] == [5, 9, 13]
    return heads


# --- what the attacker and the auditor hold ------------------------------------------------------------
def export(tmp_path: Path, name: str = "export") -> Path:
    directory = tmp_path / name
    ledger.write_export(ledger.collect_export(now=T0), directory)
    return directory


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def write_lines(path: Path, entries: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(canonical_json(entry) + b"\n" for entry in entries))


def edit_manifest(directory: Path, **changes: Any) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(changes)
    (directory / "manifest.json").write_bytes(canonical_json(manifest) + b"\n")


def frontier_at(directory: Path, size: int) -> list[str]:
    """What the attacker computes from the real records: the Merkle frontier of ``[0, size)``."""
    leaves = [bytes.fromhex(entry["leaf_hash"]) for entry in read_lines(directory / "records.jsonl")]
    return [node.hex() for node in MerkleTree(leaves).frontier(size)]


def drop_prefix(directory: Path, k: int) -> None:
    """Records ``[0, k)`` removed, ``first_index`` and ``frontier`` made to match the real records."""
    frontier = frontier_at(directory, k)
    records = read_lines(directory / "records.jsonl")
    write_lines(directory / "records.jsonl", [entry for entry in records if entry["index"] >= k])
    edit_manifest(directory, first_index=k, frontier=frontier)


def pinned_keys(tmp_path: Path) -> Path:
    """The audit JWK Set the auditor fetched from /.well-known/audit-keys.json when it was published."""
    path = tmp_path / "pinned-audit-keys.json"
    path.write_bytes(canonical_json(audit_jwks()))
    return path


def saved_head(tmp_path: Path, head: TreeHead) -> Path:
    """A signed tree head the auditor kept from an earlier audit (`manage.py audit head`)."""
    path = tmp_path / f"head-{head.tree_size}.json"
    path.write_bytes(canonical_json({**head.as_dict(), "issuer": settings.UAA_ISSUER}))
    return path


def verify(capsys: pytest.CaptureFixture[str], directory: Path, *options: str | Path) -> tuple[int, str]:
    """``python verifier.py DIRECTORY [options]``: the exit status and everything it printed."""
    status = main([str(directory), *map(str, options)])
    printed = capsys.readouterr()
    return status, printed.out + printed.err


class Forger:
    """An attacker's own audit key, signing heads over a history of their choosing."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        public = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
        }
        self.kid = jwk_thumbprint(public)
        self.jwk = {**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def sign_head(self, tree: MerkleTree, size: int, previous: int | None, timestamp: int) -> dict[str, Any]:
        message = tree_head_message(
            issuer=settings.UAA_ISSUER,
            tree_size=size,
            root_hash=tree.root(size),
            timestamp=timestamp,
            kid=self.kid,
        )
        proof = tree.consistency_proof(previous, size) if previous is not None else []
        return {
            "tree_size": size,
            "root_hash": tree.root(size).hex(),
            "timestamp": timestamp,
            "kid": self.kid,
            "signature": b64url(self.key.sign(message)),
            "consistency": [node.hex() for node in proof],
        }

    def write_history(
        self,
        directory: Path,
        records: list[dict[str, Any]],
        sizes: list[int],
        extra_keys: Sequence[dict[str, Any]] = (),
    ) -> None:
        """A complete, self-consistent export of ``records`` with heads at ``sizes``, signed by this key."""
        leaves = [leaf_hash(canonical_json(record)) for record in records]
        tree = MerkleTree(leaves)
        heads, previous = [], None
        for position, size in enumerate(sizes):
            heads.append(self.sign_head(tree, size, previous, int(T0.timestamp() * 1000) + position * 1000))
            previous = size
        write_lines(
            directory / "records.jsonl",
            [
                {"index": i, "leaf_hash": leaves[i].hex(), "record": record}
                for i, record in enumerate(records)
            ],
        )
        write_lines(directory / "tree-heads.jsonl", heads)
        (directory / "audit-keys.json").write_bytes(canonical_json({"keys": [*extra_keys, self.jwk]}))
        edit_manifest(directory, first_index=0, frontier=[], tree_size=sizes[-1])


def drop_append_only_trigger() -> None:
    suffix = " ON tokens_ledgerrecord" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER tokens_ledgerrecord_append_only" + suffix)


# --- controls: what a genuine export looks like ---------------------------------------------------------
def test_a_complete_export_checked_against_pinned_keys_and_a_saved_head_verifies_without_warnings(
    sealed_ledger, tmp_path, capsys
):
    directory = export(tmp_path)
    status, printed = verify(
        capsys,
        directory,
        "--keys",
        pinned_keys(tmp_path),
        "--trusted-head",
        saved_head(tmp_path, sealed_ledger[1]),
    )
    assert status == 0, printed
    assert "OK: 13 records, 3 signed tree heads, 1 audit keys; tree size 13" in printed
    assert "WARNING" not in printed


def test_an_export_checked_against_its_own_keys_verifies_with_a_loud_warning(sealed_ledger, tmp_path, capsys):
    """Keys taken from the export itself prove only that the export agrees with itself."""
    status, printed = verify(capsys, export(tmp_path))
    assert status == 0, printed
    assert "WARNING: audit keys were not pinned" in printed


# --- (a) prefix dropped ----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [5, 7, 9])
def test_an_export_with_its_first_records_dropped_and_the_frontier_recomputed_fails(
    sealed_ledger, tmp_path, capsys, k
):
    """RFC 9162 §2.1: the frontier of [0, k) is computable by anyone holding the records; it proves nothing
    about why they are missing. Only a sealed, signed `ledger.pruned` record for size k does."""
    directory = export(tmp_path)
    drop_prefix(directory, k)
    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 1, printed
    assert f"the export starts at record {k} but holds no ledger.pruned record for tree size {k}" in printed
    if k == 7:
        assert "no signed tree head has size 7" in printed


# --- (b) everything dropped ------------------------------------------------------------------------------
def test_an_export_with_every_record_dropped_fails(sealed_ledger, tmp_path, capsys):
    directory = export(tmp_path)
    drop_prefix(directory, 13)
    assert (directory / "records.jsonl").read_text() == ""
    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 1, printed
    assert "the export starts at record 13 but holds no ledger.pruned record for tree size 13" in printed


def test_an_emptied_export_fails_against_a_saved_head(sealed_ledger, tmp_path, capsys):
    """Records, heads and manifest emptied together: only a head the auditor kept shows what is gone."""
    directory = export(tmp_path)
    write_lines(directory / "records.jsonl", [])
    write_lines(directory / "tree-heads.jsonl", [])
    edit_manifest(directory, tree_size=0)
    status, printed = verify(capsys, directory, "--trusted-head", saved_head(tmp_path, sealed_ledger[1]))
    assert status == 1, printed
    assert "before the trusted head of size 9" in printed


# --- (c), (d) tail cut -----------------------------------------------------------------------------------
def test_an_export_cut_short_with_the_manifest_unchanged_fails(sealed_ledger, tmp_path, capsys):
    """The last records and the heads covering them removed; manifest.tree_size still says 13."""
    directory = export(tmp_path)
    write_lines(directory / "records.jsonl", read_lines(directory / "records.jsonl")[:9])
    write_lines(directory / "tree-heads.jsonl", read_lines(directory / "tree-heads.jsonl")[:2])
    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 1, printed
    assert "manifest.tree_size is 13 but the latest signed tree head has size 9" in printed


def test_an_export_cut_short_with_the_manifest_lowered_and_the_latest_head_kept_fails(
    sealed_ledger, tmp_path, capsys
):
    directory = export(tmp_path)
    write_lines(directory / "records.jsonl", read_lines(directory / "records.jsonl")[:9])
    edit_manifest(directory, tree_size=9)
    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 1, printed
    assert "manifest.tree_size is 9 but the latest signed tree head has size 13" in printed
    assert "records from 9 on are missing: the tree heads cover 13" in printed


def test_an_export_cut_short_cleanly_fails_against_a_saved_head(sealed_ledger, tmp_path, capsys):
    """Records, heads and manifest all cut to 9: self-consistent, and caught only by the head of size 13
    the auditor saved at the previous audit."""
    directory = export(tmp_path)
    write_lines(directory / "records.jsonl", read_lines(directory / "records.jsonl")[:9])
    write_lines(directory / "tree-heads.jsonl", read_lines(directory / "tree-heads.jsonl")[:2])
    edit_manifest(directory, tree_size=9)
    status, printed = verify(
        capsys,
        directory,
        "--keys",
        pinned_keys(tmp_path),
        "--trusted-head",
        saved_head(tmp_path, sealed_ledger[2]),
    )
    assert status == 1, printed
    assert "the export ends at tree size 9, before the trusted head of size 13" in printed


# --- (e) the attacker's own audit key ------------------------------------------------------------------
def test_a_history_re_signed_by_an_attackers_key_fails_against_pinned_keys(sealed_ledger, tmp_path, capsys):
    """The attacker removes a grant, re-signs every head with their own key and ships that key in
    audit-keys.json. Self-consistent; only the auditor's pinned JWK Set shows the heads are not ours."""
    directory = export(tmp_path)
    records = [entry["record"] for entry in read_lines(directory / "records.jsonl")]
    forger = Forger()
    forger.write_history(directory, records[:6] + records[7:], sizes=[5, 8, 12])

    status, printed = verify(
        capsys, directory
    )  # unpinned: agrees with itself, and says how little that means
    assert status == 0 and "WARNING: audit keys were not pinned" in printed

    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 1, printed
    assert f"is signed by an unknown key '{forger.kid}' that is not among the pinned audit keys" in printed


# --- (f) a rewritten history against a saved head ------------------------------------------------------
@pytest.mark.parametrize("keep_genuine_key", [False, True])
def test_a_rewritten_history_fails_against_a_saved_head(sealed_ledger, tmp_path, capsys, keep_genuine_key):
    """Every record replaced, new key, new heads, all self-consistent. The auditor kept the head of size 9
    from an earlier audit: RFC 9162 §2.1.4, the export must extend it, and it does not."""
    directory = export(tmp_path)
    records = [
        {**entry["record"], "client_id": f"someone-else-{entry['index']}"}
        for entry in read_lines(directory / "records.jsonl")
    ]
    forger = Forger()
    forger.write_history(
        directory, records, sizes=[5, 9, 13], extra_keys=audit_jwks()["keys"] if keep_genuine_key else []
    )
    status, printed = verify(capsys, directory, "--trusted-head", saved_head(tmp_path, sealed_ledger[1]))
    assert status == 1, printed
    assert "the export is not consistent with the trusted head of size 9" in printed
    if not keep_genuine_key:
        assert "the trusted head of size 9" in printed and "is signed by an unknown key" in printed

    status, printed = verify(
        capsys,
        directory,
        "--keys",
        pinned_keys(tmp_path),
        "--trusted-head",
        saved_head(tmp_path, sealed_ledger[1]),
    )
    assert status == 1, printed
    assert "the export is not consistent with the trusted head of size 9" in printed
    assert "not among the pinned audit keys" in printed


# --- (g) a fake prune ------------------------------------------------------------------------------------
def forge_prune_in_the_database(k: int, statement: dict[str, Any]) -> None:
    """A database attacker (no UAA_KEK): INSERTs a `ledger.pruned` record, lets the sealer seal it, deletes
    records [0, k) and marks the head of size k pruned, as `audit prune` would have."""
    head = TreeHead.objects.get(tree_size=k)
    ledger.append_record(  # the same INSERT an attacker with SQL access makes
        event=LedgerRecord.Event.LEDGER_PRUNED,
        at=T0 + timedelta(seconds=5),
        detail={
            "tree_size": k,
            "root_hash": head.root_hash,
            "records_deleted": k,
            "export_manifest_sha256": "ab" * 32,
            **statement,
        },
    )
    ledger.seal_tree_head(now=T0 + timedelta(seconds=5))
    drop_append_only_trigger()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tokens_ledgerrecord WHERE leaf_index < %s", [k])
    TreeHead.objects.filter(pk=head.pk).update(pruned_at=T0 + timedelta(seconds=5))


def prune_message(k: int, root_hash: str, timestamp: int, kid: str) -> bytes:
    return canonical_json(
        {
            "type": "uaa-audit-prune/1",
            "issuer": settings.UAA_ISSUER,
            "tree_size": k,
            "root_hash": root_hash,
            "timestamp": timestamp,
            "kid": kid,
            "export_manifest_sha256": "ab" * 32,
        }
    )


@pytest.mark.parametrize("forgery", ["unsigned", "attackers_key", "tree_head_signature"])
def test_a_prune_forged_in_the_database_fails(sealed_ledger, tmp_path, capsys, forgery):
    """The `ledger.pruned` record is sealed like any record, so a database attacker can get one sealed;
    what they cannot make is the audit key's signature over the prune statement."""
    head = sealed_ledger[0]
    timestamp = int((T0 + timedelta(seconds=5)).timestamp() * 1000)
    statement: dict[str, Any] = {}
    if forgery == "attackers_key":
        forger = Forger()
        signature = forger.key.sign(prune_message(5, head.root_hash, timestamp, forger.kid))
        statement = {"timestamp": timestamp, "kid": forger.kid, "signature": b64url(signature)}
    elif forgery == "tree_head_signature":  # a genuine signature by the audit key, over a tree head
        statement = {"timestamp": head.timestamp, "kid": head.audit_key_id, "signature": head.signature}
    forge_prune_in_the_database(5, statement)

    directory = export(tmp_path)
    assert json.loads((directory / "manifest.json").read_text())["first_index"] == 5
    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 1, printed
    assert "ledger.pruned record 13 (tree size 5)" in printed
    expected = {
        "unsigned": "carries no signed prune statement",
        "attackers_key": "prune statement is signed by an unknown key",
        "tree_head_signature": "prune statement has an invalid signature",
    }[forgery]
    assert expected in printed
    assert "the export starts at record 5 but holds no ledger.pruned record for tree size 5" in printed

    with pytest.raises(CommandError, match=r"no signed prune statement|unknown key|invalid signature"):
        call_command("audit", "verify", "--no-seal", stdout=io.StringIO(), stderr=io.StringIO())


def test_a_genuine_prune_does_not_cover_a_later_starting_point(sealed_ledger, tmp_path, capsys):
    """A real prune at 5, then an export that claims to start at 9: the signed statement is for size 5,
    and records [5, 9) were removed without one."""
    ledger.prune_ledger(tree_size=5, export=export(tmp_path, "archive"), now=T0 + timedelta(seconds=5))
    ledger.seal_tree_head(now=T0 + timedelta(seconds=6))
    directory = export(tmp_path)
    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 0, printed
    assert "WARNING: the export starts at record 5, not 0" in printed

    records = read_lines(directory / "records.jsonl")
    leaves = [bytes.fromhex(entry["leaf_hash"]) for entry in records]
    manifest = json.loads((directory / "manifest.json").read_text())
    tree = MerkleTree(leaves, offset=5, frontier=[bytes.fromhex(node) for node in manifest["frontier"]])
    write_lines(directory / "records.jsonl", [entry for entry in records if entry["index"] >= 9])
    edit_manifest(directory, first_index=9, frontier=[node.hex() for node in tree.frontier(9)])
    status, printed = verify(capsys, directory, "--keys", pinned_keys(tmp_path))
    assert status == 1, printed
    assert "the export starts at record 9 but holds no ledger.pruned record for tree size 9" in printed


def test_manage_py_audit_verify_checks_an_export_against_pinned_keys_and_a_saved_head(
    sealed_ledger, tmp_path
):
    directory = export(tmp_path)
    drop_prefix(directory, 9)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"holds no ledger\.pruned record for tree size 9"):
        call_command(
            "audit",
            "verify",
            "--export",
            str(directory),
            "--keys",
            str(pinned_keys(tmp_path)),
            "--trusted-head",
            str(saved_head(tmp_path, sealed_ledger[2])),
            stdout=out,
            stderr=err,
        )
    assert "WARNING: the export starts at record 9, not 0" in err.getvalue()


def test_a_genuine_prune_verifies_against_pinned_keys_and_heads_saved_before_and_after_it(
    sealed_ledger, tmp_path, capsys
):
    """RFC 9162 §2.1.4: heads below the pruning point stay in every export, so a head saved before the
    prune still anchors the export after it; the frontier reproduces the signed head at first_index."""
    ledger.prune_ledger(tree_size=9, export=export(tmp_path, "archive"), now=T0 + timedelta(seconds=5))
    directory = export(tmp_path)
    for head in (sealed_ledger[0], sealed_ledger[1], sealed_ledger[2]):
        status, printed = verify(
            capsys, directory, "--keys", pinned_keys(tmp_path), "--trusted-head", saved_head(tmp_path, head)
        )
        assert status == 0, printed
        assert "OK: 5 records from record 9 (the records below were pruned)" in printed
        assert "WARNING: the export starts at record 9, not 0" in printed
        assert "only the archived export whose manifest.json has SHA-256" in printed
        assert "not pinned" not in printed
    status, printed = verify(capsys, tmp_path / "archive", "--keys", pinned_keys(tmp_path))
    assert status == 0, printed  # the archive, holding [0, 13), verifies on its own


def test_audit_head_prints_a_head_the_verifier_takes_as_trusted(sealed_ledger, tmp_path, capsys):
    out = io.StringIO()
    call_command("audit", "head", stdout=out)
    saved = tmp_path / "saved-head.json"
    saved.write_text(out.getvalue())
    assert json.loads(out.getvalue())["tree_size"] == 13
    status, printed = verify(
        capsys, export(tmp_path), "--keys", pinned_keys(tmp_path), "--trusted-head", saved
    )
    assert status == 0 and "WARNING" not in printed, printed

    proof = tmp_path / "proof.json"  # the head inside an `audit prove` document serves as well
    out = io.StringIO()
    call_command("audit", "prove", "3", stdout=out)
    proof.write_text(out.getvalue())
    status, printed = verify(capsys, export(tmp_path, "again"), "--trusted-head", proof)
    assert status == 0, printed


@pytest.mark.parametrize(
    "changes",
    [
        {"first_index": "5"},
        {"first_index": -1},
        {"first_index": True},
        {"tree_size": 13.0},
        {"frontier": "00"},
        {"frontier": [1, 2]},
        {"issuer": 7},
    ],
)
def test_a_malformed_manifest_fails_with_a_message_not_a_traceback(sealed_ledger, tmp_path, capsys, changes):
    directory = export(tmp_path)
    edit_manifest(directory, **{key: value for key, value in changes.items() if not isinstance(value, float)})
    if "tree_size" in changes:
        text = (directory / "manifest.json").read_text().replace('"tree_size":13', '"tree_size":13.0')
        (directory / "manifest.json").write_text(text)
    status, printed = verify(capsys, directory)
    assert status == 1
    assert "FAILED" in printed and "Traceback" not in printed


def test_a_manifest_without_tree_size_fails(sealed_ledger, tmp_path, capsys):
    directory = export(tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["tree_size"]
    (directory / "manifest.json").write_bytes(canonical_json(manifest))
    status, printed = verify(capsys, directory)
    assert status == 1 and "manifest.json has no tree_size" in printed


def test_unreadable_pinned_keys_or_saved_head_fail(sealed_ledger, tmp_path, capsys):
    directory = export(tmp_path)
    (tmp_path / "bad.json").write_text("[1, 2")
    for option in ("--keys", "--trusted-head"):
        status, printed = verify(capsys, directory, option, tmp_path / "bad.json")
        assert status == 1 and "FAILED: --keys or --trusted-head unreadable" in printed
    (tmp_path / "list.json").write_text("[1, 2]")
    status, printed = verify(capsys, directory, "--keys", tmp_path / "list.json")
    assert status == 1 and "pinned audit keys unusable" in printed
    status, printed = verify(capsys, directory, "--trusted-head", tmp_path / "list.json")
    assert status == 1 and "not a signed tree head" in printed
