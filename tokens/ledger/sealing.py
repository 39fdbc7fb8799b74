"""Sealing: give unsealed records leaf indexes, extend the tree, and sign its head with the audit key.

``seal_tree_head`` runs on Celery beat every few seconds (or ``manage.py audit seal``). Sealing is
serialized by a row lock on the audit key. It signs only what it can trust: the latest head must verify
and not be from the future, the database's tree must extend the last head this deployment signed (its
witness, tokens/witness.py, outside the database), from whose frontier the new tree is computed, and each
record must be canonical (else ``SealRefused``, logged once).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from tokens import witness
from tokens.ledger.audit_keys import audit_jwks, locked_active_audit_key, sign
from tokens.ledger.records import record_problem, timestamp_ms
from tokens.ledger.tree import latest_tree_head
from tokens.models import LedgerRecord, TreeHead
from tokens.signals import signing_key_changed
from tokens.verifier import (
    CLOCK_TOLERANCE_MS,
    Frontier,
    MerkleTree,
    b64url,
    leaf_hash,
    load_keys,
    tree_head_message,
    verify_tree_head,
)

logger = logging.getLogger(__name__)

SEAL_BATCH = 5000


# The sealer holds the audit key, so whatever it signs verifies. A database writer (who lacks UAA_KEK) must
# therefore not be able to choose what it signs: it extends only a head it verified, whose tree extends the
# last head this deployment signed as recorded outside the database (tokens/witness.py), and it seals only
# records in the ledger's canonical form (docs/audit-ledger.md, "What the sealer checks").


class SealRefused(Exception):
    """The sealer will not sign: the latest head, the witness or an unsealed record cannot be trusted.

    ``event`` is the error-level log event, ``fields`` its data (sizes, ids: never a record's content)."""

    def __init__(self, message: str, *, event: str, **fields: object) -> None:
        super().__init__(message)
        self.event = event
        self.fields = fields


_last_refusal: list[str] = []  # the refusal this process logged last: each is logged once, not every beat


def _log_refusal(refusal: SealRefused) -> None:
    if _last_refusal == [str(refusal)]:
        return
    _last_refusal[:] = [str(refusal)]
    logger.error(refusal.event, extra={**refusal.fields, "problem": str(refusal)})


@dataclass(frozen=True)
class _Base:
    """What the next head extends: the tree of ``size`` leaves whose frontier the sealer trusts."""

    size: int
    frontier: list[bytes]
    timestamp: int  # the latest time already signed: the next head is not older
    started: bool = False  # no witness yet: this tree was taken from the database on its signature
    head: TreeHead | None = None  # the database's latest head, as checked


def _frontier_of(head: TreeHead) -> list[bytes] | None:
    """The head's stored frontier if it folds to its signed root (no signature covers the column)."""
    try:
        frontier = Frontier(head.tree_size, [bytes.fromhex(node) for node in head.frontier])
    except (TypeError, ValueError):
        return None
    return frontier.hashes if frontier.root().hex() == head.root_hash else None


def _trusted_base(*, now: datetime | None) -> _Base:
    """The tree the next head extends, or ``SealRefused``.

    The latest head in the database must carry a valid signature by a proven audit key and not be dated
    in the future. With a witness of size m, the database's tree must extend the witness's: its leaves
    ``[m, n)`` (normally none) appended to the witness's frontier give the latest head's root. The new head
    is then computed from that frontier, never from the database's own, so history below m cannot be
    injected. Without a witness (the first seal of this deployment, or a sealer that never had the file),
    the latest head is accepted on its signature, and the log says so. With ``now`` ``None`` the times
    are not checked against a clock (what is published and exported: a head dated ahead of this
    process's clock is still one the sealer signed).
    """
    path = witness.witness_path()
    latest = latest_tree_head()
    if latest is not None:
        problem = verify_tree_head(
            latest.as_dict(),
            issuer=settings.UAA_ISSUER,
            keys=load_keys(audit_jwks()),
            name="the latest tree head in the database",
        )
        if problem:
            raise SealRefused(
                f"{problem}; the sealer extends only heads it can verify: remove the row, or restore the"
                " table from a backup",
                event="tokens.ledger_head_untrusted",
                tree_size=latest.tree_size,
            )
        if now is not None and latest.timestamp > timestamp_ms(now) + CLOCK_TOLERANCE_MS:
            raise SealRefused(
                f"the latest tree head (size {latest.tree_size}) is dated {latest.timestamp} ms, in the"
                f" future of this sealer's clock ({timestamp_ms(now)} ms): later heads would inherit it",
                event="tokens.ledger_head_untrusted",
                tree_size=latest.tree_size,
            )
    try:
        known = witness.load()
    except witness.WitnessUnreadable as exc:
        raise SealRefused(
            f"the sealer's witness {path} is unusable: {exc}; sealing stops until it is restored",
            event="tokens.ledger_witness_unreadable",
            witness=str(path),
        ) from exc
    if known is None:
        if latest is None:
            return _Base(size=0, frontier=[], timestamp=0, started=True)
        frontier = _frontier_of(latest)
        if frontier is None:
            raise SealRefused(
                f"the stored frontier of the tree head of size {latest.tree_size} does not fold to its signed"
                " root: the row was altered",
                event="tokens.ledger_head_untrusted",
                tree_size=latest.tree_size,
            )
        return _Base(
            size=latest.tree_size, frontier=frontier, timestamp=latest.timestamp, started=True, head=latest
        )

    size = latest.tree_size if latest else 0
    signed = known["tree_size"]

    def mismatch(why: str) -> SealRefused:
        return SealRefused(
            f"the database's ledger does not extend the last tree head this sealer signed (size {signed},"
            f" root {known['root_hash'][:16]}…, in its witness {path}): {why}. Nothing is sealed until an"
            ' operator has looked (docs/audit-ledger.md, "When sealing stops")',
            event="tokens.ledger_witness_mismatch",
            witness_size=signed,
            database_size=size,
        )

    if now is not None and known["timestamp"] > timestamp_ms(now) + CLOCK_TOLERANCE_MS:
        raise SealRefused(
            f"the sealer's witness (size {signed}) is dated {known['timestamp']} ms, in the future of this"
            f" sealer's clock ({timestamp_ms(now)} ms)",
            event="tokens.ledger_head_untrusted",
            tree_size=signed,
        )
    if latest is None or size < signed:
        raise mismatch(
            f"its latest signed tree head has size {size}: tree heads and records were removed, or the"
            " database was restored from an older backup"
        )
    tree = Frontier(signed, [bytes.fromhex(node) for node in known["frontier"]])
    rows = (
        LedgerRecord.objects.filter(leaf_index__gte=signed, leaf_index__lt=size)
        .order_by("leaf_index")
        .values_list("leaf_index", "body")
        .iterator(chunk_size=SEAL_BATCH)
    )
    for index, body in rows:
        if index != tree.size:
            raise mismatch(f"record {tree.size} is missing")
        tree.append(leaf_hash(body.encode("utf-8")))
    if tree.size != size:
        raise mismatch(f"records [{tree.size}, {size}) are missing")
    if tree.root().hex() != latest.root_hash:
        raise mismatch(
            f"its records [{signed}, {size}) do not extend that tree to the root of its head of size {size}"
            if size > signed
            else f"its tree head of size {size} has another root: the history was rewritten"
        )
    return _Base(
        size=size, frontier=tree.hashes, timestamp=max(latest.timestamp, known["timestamp"]), head=latest
    )


def _unwritable(exc: OSError) -> SealRefused:
    path = witness.witness_path()
    return SealRefused(
        f"the sealer's witness {path} cannot be written ({exc.strerror}): without it the sealer cannot tell"
        " a history the database rewrote from its own, so it does not seal",
        event="tokens.ledger_witness_unwritable",
        witness=str(path),
    )


def _start_witness(base: _Base) -> None:
    """No witness yet: make sure one can be written before signing anything, and say what it starts from."""
    path = witness.witness_path()
    try:
        witness.check_writable()
    except OSError as exc:
        raise _unwritable(exc) from exc
    logger.warning(
        "tokens.ledger_witness_started",
        extra={"tree_size": base.size, "witness": str(path)},
    )


def unsealable(pk: int, problem: str) -> SealRefused:
    return SealRefused(
        f"unsealed record id {pk} {problem}: it was not written by UAA, and sealing stops at it until it is"
        ' removed (docs/audit-ledger.md, "When sealing stops")',
        event="tokens.ledger_record_invalid",
        record_id=pk,
    )


def next_batch(*, now: datetime | None) -> tuple[list[tuple[int, str]], SealRefused | None]:
    """The next unsealed records (id, body) in id order, up to SEAL_BATCH, stopping before the first that
    UAA did not write: that one's refusal comes second (None when every record of the batch is sound)."""
    pending: list[tuple[int, str]] = []
    for pk, event, client_id, actor, body in (
        LedgerRecord.objects.unsealed()
        .order_by("id")
        .values_list("id", "event", "client_id", "actor", "body")[:SEAL_BATCH]
    ):
        problem = record_problem(body=body, event=event, client_id=client_id, actor=actor, now=now)
        if problem:
            return pending, unsealable(pk, problem)
        pending.append((pk, body))
    return pending, None


def _seal_batch(*, now: datetime, force: bool) -> TreeHead | None:
    with transaction.atomic(durable=True):  # committed on exit, before the witness records the head
        key = locked_active_audit_key(now=now)  # serializes sealers; creates the first key (and its record)
        base = _trusted_base(now=now)
        if base.started:
            _start_witness(base)
        pending, refusal = next_batch(now=now)
        if not pending and (refusal is not None or not force):
            if refusal is not None:
                raise refusal
            return None
        leaves = [leaf_hash(body.encode("utf-8")) for _, body in pending]
        tree = MerkleTree(leaves, offset=base.size, frontier=base.frontier)
        with connection.cursor() as cursor:  # one plain statement per row: bulk_update's CASE is slower
            cursor.executemany(
                _seal_sql(),
                [
                    (base.size + position, leaves[position].hex(), pk)
                    for position, (pk, _) in enumerate(pending)
                ],
            )
            if cursor.rowcount != len(pending):  # a record was deleted under the sealer: sign nothing
                raise SealRefused(
                    f"{len(pending) - cursor.rowcount} of the records being sealed were deleted meanwhile",
                    event="tokens.ledger_record_invalid",
                    record_id=None,
                )
        root = tree.root()
        # Never older than what was signed before; a forced seal of the same tree gets a later time, so no
        # two heads are the same statement.
        timestamp = max(timestamp_ms(now), base.timestamp + (1 if tree.size == base.size else 0))
        message = tree_head_message(
            issuer=settings.UAA_ISSUER, tree_size=tree.size, root_hash=root, timestamp=timestamp, kid=key.kid
        )
        head = TreeHead.objects.create(
            tree_size=tree.size,
            root_hash=root.hex(),
            timestamp=timestamp,
            audit_key=key,
            signature=b64url(sign(key, message)),
            frontier=[node.hex() for node in tree.frontier()],
            consistency=[node.hex() for node in tree.consistency_proof(base.size, tree.size)],
        )
    try:
        witness.advance(head.as_dict(), frontier=list(head.frontier))
    except OSError as exc:  # the head is committed; the witness lags until it can be written
        raise _unwritable(exc) from exc
    _last_refusal.clear()
    logger.info(
        "tokens.ledger_sealed",
        extra={"tree_size": head.tree_size, "sealed": len(pending), "root_hash": head.root_hash[:16]},
    )
    if refusal is not None:
        raise refusal
    return head


@cache
def _seal_sql() -> str:
    quote = connection.ops.quote_name
    return (
        f"UPDATE {quote(LedgerRecord._meta.db_table)} SET {quote('leaf_index')} = %s,"  # noqa: S608 - our table  # nosec B608
        f" {quote('leaf_hash')} = %s WHERE {quote('id')} = %s AND {quote('leaf_index')} IS NULL"
    )


# Sent (``now=``) as a sealing run starts, so that records other apps hold back as counted summaries
# (uaa/oauth/audit.py: failed client authentication) are appended in time to be sealed by it. A failing
# receiver is logged and does not stop the sealing.
before_sealing = Signal()


def seal_tree_head(*, now: datetime, force: bool = False, max_batches: int = 20) -> TreeHead | None:
    """Seal the unsealed records, ``SEAL_BATCH`` at a time with one signed head per batch, for at most
    ``max_batches`` batches (the next run carries on); the last new head, or ``None``.

    With nothing to seal no head is signed, unless ``force`` (a fresh timestamp on the same tree).
    ``SealRefused`` (logged once at error level) if the latest head, the witness or an unsealed record
    cannot be trusted; records before a bad one are sealed first. Must not run inside a transaction: the
    witness records a head only once it is committed.
    """
    for receiver, error in before_sealing.send_robust(sender=LedgerRecord, now=now):
        if isinstance(error, Exception):
            name = getattr(receiver, "__name__", "")
            logger.error("tokens.before_sealing_failed", exc_info=error, extra={"receiver": name})
    try:
        head = _seal_batch(now=now, force=force)
        latest = head
        for _ in range(max_batches - 1):
            if head is None or not LedgerRecord.objects.unsealed().exists():
                break
            head = _seal_batch(now=now, force=False)
            latest = head or latest
    except SealRefused as refusal:
        _log_refusal(refusal)
        raise
    return latest


def _seal_committed_key_change() -> None:
    """Seal now, in this process, the key change that just committed (``seal_when_key_changes``)."""
    try:
        seal_tree_head(now=timezone.now())
    except SealRefused:
        pass  # logged once by the sealer; beat tries again
    except Exception:  # the key change is committed whatever happens here; beat seals it within 10 s
        logger.exception("tokens.ledger_key_change_unsealed")


def seal_when_key_changes(sender: object, **kwargs: object) -> None:
    """``tokens.signals.signing_key_changed`` (sent inside the change's transaction): once it commits, its
    ``key.*`` record is sealed at once rather than at the next beat, so that the window in which a record
    of a revocation is unsealed (and so evidence of nothing yet) lasts one seal, not up to 10 s."""
    transaction.on_commit(_seal_committed_key_change)


signing_key_changed.connect(seal_when_key_changes, dispatch_uid="ledger.seal_key_change")


def head_problem() -> SealRefused | None:
    """Why the database's latest head cannot be trusted, or ``None``: the sealer's checks of the head and
    the witness (a signature by a proven audit key, extending the witness: not shorter, and the same root
    at the witness's size), read-only, without the sealer's clock checks. What the export and the
    published head must pass (docs/audit-ledger.md, "When sealing stops")."""
    try:
        _trusted_base(now=None)
    except SealRefused as refusal:
        return refusal
    return None


def sealing_problem(*, now: datetime) -> str | None:
    """Why the next seal would be refused, or ``None``: the same checks, read-only (the admin's page)."""
    try:
        _trusted_base(now=now)
    except SealRefused as refusal:
        return str(refusal)
    _, unsealable_record = next_batch(now=now)
    return None if unsealable_record is None else str(unsealable_record)


UNPUBLISHED_LOG_INTERVAL = 60.0  # seconds: a head refused to every poll is logged once a minute, not per poll
_last_unpublished: dict[str, float] = {}  # the refusal this process logged last, and when (monotonic)


def _log_unpublished(refusal: SealRefused) -> None:
    moment = time.monotonic()
    last = _last_unpublished.get(str(refusal))
    if last is not None and moment - last < UNPUBLISHED_LOG_INTERVAL:
        return
    _last_unpublished.clear()
    _last_unpublished[str(refusal)] = moment
    logger.error(
        "tokens.ledger_head_unpublished",
        extra={**refusal.fields, "refusal": refusal.event, "problem": str(refusal)},
    )


def published_tree_head() -> dict[str, Any] | None:
    """The latest signed tree head with ``issuer``, as ``/.well-known/audit-head.json`` and ``audit head``
    give it, or ``None`` before the first seal. ``SealRefused`` (logged at error level, once per
    ``UNPUBLISHED_LOG_INTERVAL``) unless the sealer would extend it (``head_problem``): a head that does
    not verify, or that is behind or beside the witness (a database cut back or rewritten), is never
    published, nor is the witness's head instead: monitors see the outage rather than a stale head."""
    try:
        head = _trusted_base(now=None).head  # the head checked, not one read after
    except SealRefused as refusal:
        _log_unpublished(refusal)
        raise
    if head is None:
        return None
    return {**head.as_dict(), "issuer": settings.UAA_ISSUER}
