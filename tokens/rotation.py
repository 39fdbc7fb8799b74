"""The only code that changes signing-key states: scheduled rotation and emergency revocation.

Guarantee to resource servers that cache the JWKS for at most ``UAA_JWKS_MAX_AGE`` seconds:

* a key is published (state ``next``) at least ``UAA_KEY_PREPUBLISH_SECONDS`` (≥ the cache lifetime)
  before it signs anything, so a verifier never meets a token whose ``kid`` it cannot find;
* a retired key stays published until every token it signed has expired, plus one cache lifetime
  and a margin, so tokens issued just before a rotation keep verifying;
* a revoked key leaves the JWKS at once, and tokens it signed fail introspection and userinfo at once;
* a standby is always waiting: the ``next`` key is published again the moment one is promoted (by a
  rotation or a revocation) or revoked, so an emergency revocation promotes a key that every cached
  JWKS already holds, unless that standby is younger than one cache lifetime or was revoked too
  (:func:`cache_gap` says how long the window is then).

Every change for one algorithm happens under a row lock on its ``KeySeries``: several workers or
beat processes may run rotation at the same moment and exactly one of them does the work.

The lifecycle only moves forward. A revoked or expired key's private half is destroyed
(``SigningKey.revoke`` / ``expire``). A row that a database write moved back (its timestamps or its
``key.*`` ledger records say it moved on) is never published, trusted or used (tokens.keys), and every
run under the series lock puts it back where that evidence says it is (:func:`_restore_tampered`), so
it cannot hold the ``active`` or ``next`` slot of its algorithm either.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tokens.keys import (
    forget_private_key,
    generate_signing_key,
    locked_active_kid,
    note_tampered,
    prove_afresh,
)
from tokens.models import KeySeries, LedgerRecord, SigningKey
from tokens.signals import signing_key_changed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyPolicy:
    period: timedelta
    prepublish: timedelta
    retention: timedelta

    @classmethod
    def from_settings(cls) -> KeyPolicy:
        longest_token = max(settings.UAA_ACCESS_TOKEN_LIFETIME, settings.UAA_ID_TOKEN_LIFETIME)
        return cls(
            period=timedelta(seconds=settings.UAA_KEY_ROTATION_PERIOD),
            prepublish=timedelta(seconds=settings.UAA_KEY_PREPUBLISH_SECONDS),
            retention=timedelta(
                seconds=longest_token + settings.UAA_JWKS_MAX_AGE + settings.UAA_KEY_RETENTION_MARGIN
            ),
        )


@dataclass
class RotationReport:
    published: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # tampered rows put back (_restore_tampered)

    @property
    def changed(self) -> bool:
        return bool(self.published or self.activated or self.retired or self.expired or self.restored)


def algorithms_in_use() -> list[str]:
    """Every algorithm UAA offers keeps a key series of its own: RS256 (OIDC Core §15.1), ES256, EdDSA.

    Keeping all of them published means a client switching to ES256 or EdDSA never makes UAA sign
    with a key that resource servers have not had the chance to cache.
    """
    return list(SigningKey.Algorithm.values)


def _lock(algorithm: str) -> KeySeries:
    """Take the per-algorithm rotation lock (a row lock; SQLite serializes writers anyway)."""
    KeySeries.objects.bulk_create([KeySeries(algorithm=algorithm)], ignore_conflicts=True)
    return KeySeries.objects.select_for_update().get(algorithm=algorithm)


def _emit(event: str, key: SigningKey, now: datetime, **extra: object) -> None:
    logger.info(f"tokens.signing_key_{event}", extra={"kid": key.kid, "alg": key.algorithm, **extra})
    if event in {"retired", "expired", "revoked"}:
        forget_private_key(key.kid)  # this process's copy; other processes drop theirs at next use
    signing_key_changed.send(sender=SigningKey, event=event, key=key, at=now, **extra)


RESTORED = "the row's state was contradicted by its timestamps or the ledger (a database write): restored"


def _restore_tampered(algorithm: str, now: datetime, *, actor: str = "") -> list[str]:
    """Put back every row of ``algorithm`` in a published state that its own timestamps or its ledger
    records say has moved on: revoked or expired (the private half destroyed again), or retired for a
    ``next`` or ``active`` row. Call under the series lock. Each restoration is recorded like the
    transition itself (with :data:`RESTORED` as reason) and logged as tampered, once per process.
    """
    restored: list[str] = []
    for key in SigningKey.objects.for_algorithm(algorithm).contradicted().select_for_update():
        note_tampered(key.kid)
        events = set(LedgerRecord.objects.about_key(key.kid).values_list("event", flat=True))
        if key.revoked_at is not None or LedgerRecord.Event.KEY_REVOKED in events:
            key.revoke(now=key.revoked_at or now)
            event = "revoked"
        elif key.expired_at is not None or LedgerRecord.Event.KEY_EXPIRED in events:
            key.expire(now=key.expired_at or now)
            event = "expired"
        else:  # a next or active row with a retirement on record
            key.retire(now=key.retired_at or now)
            event = "retired"
        _emit(event, key, now, reason=RESTORED, actor=actor)
        restored.append(key.kid)
    return restored


def _store_new_key(
    algorithm: str, now: datetime, spare: SigningKey | None, *, activate_after: datetime | None = None
) -> SigningKey:
    """A new ``next`` key, published from ``now``: ``spare`` (generated before the locks) or a fresh one."""
    key = spare if spare is not None else generate_signing_key(algorithm=algorithm, now=now)
    key.state, key.created_at, key.activate_after = SigningKey.State.NEXT, now, activate_after
    key.save(force_insert=True)
    return key


def _publish_next(
    algorithm: str, now: datetime, policy: KeyPolicy, *, actor: str = "", spare: SigningKey | None = None
) -> SigningKey:
    """Publish the standby: it signs once published for the pre-publication window (a rotation), or at
    once if the active key is revoked first."""
    key = _store_new_key(algorithm, now, spare, activate_after=now + policy.prepublish)
    _emit("published", key, now, actor=actor)
    return key


def _standby(algorithm: str, now: datetime, *, actor: str = "") -> SigningKey | None:
    """The ``next`` key of ``algorithm`` if this process can prove it (tokens/keys.py), under the series lock.

    A standby that fails the proof (a row a database-only attacker planted, or blobs they swapped) must
    never be made to sign: promoted, it would leave the series with an active key nobody can sign with.
    It is proven afresh from its blobs as they are now (tokens.keys.prove_afresh), never by what this
    process remembers: blobs changed after an earlier proof would pass that, and blobs put back would
    still fail it. One that fails is revoked (its ``key.revoked`` record says why), which frees the one
    ``next`` place for a fresh standby; it has signed nothing, so nothing that verified stops verifying.
    A process that lacks the KEK a genuine standby is wrapped under fails it too: roll a new KEK out to
    every process before it wraps keys (docs/key-rotation.md).
    """
    standby = SigningKey.objects.for_algorithm(algorithm).next_in_line().first()
    if standby is None or prove_afresh(standby) is not None:  # its blobs now, not a remembered proof
        return standby
    standby.revoke(now=now)
    _emit("revoked", standby, now, reason="the standby failed the proof", actor=actor)
    return None


def _rotate_algorithm(
    algorithm: str, *, now: datetime, policy: KeyPolicy, report: RotationReport, actor: str = ""
) -> None:
    series = _lock(algorithm)
    report.restored.extend(_restore_tampered(algorithm, now, actor=actor))
    keys = SigningKey.objects.for_algorithm(algorithm)
    active = keys.active().first()
    standby = _standby(algorithm, now, actor=actor)

    if active is None:  # a database without a usable key heals itself
        active = _activate_replacement(algorithm, standby, now, reason="no active key", actor=actor)
        report.activated.append(active.kid)
        standby = None

    due = (active.activated_at or now) + policy.period
    requested = series.rotation_requested_at is not None
    if standby is not None and now >= _earliest_activation(standby, policy) and (requested or now >= due):
        active.retire(now=now)
        report.retired.append(active.kid)
        _emit("retired", active, now, actor=actor)
        standby.activate(now=now)
        report.activated.append(standby.kid)
        _emit("activated", standby, now, reason="requested" if requested else "scheduled", actor=actor)
        standby = None
        if requested:
            series.rotation_requested_at = None
            series.save(update_fields=["rotation_requested_at"])

    if standby is None:  # the standby is published again at once: a revocation may need it any time
        report.published.append(_publish_next(algorithm, now, policy, actor=actor).kid)

    for retired in keys.filter(state=SigningKey.State.RETIRED, retired_at__lte=now - policy.retention):
        retired.expire(now=now)
        report.expired.append(retired.kid)
        _emit("expired", retired, now, actor=actor)


def _earliest_activation(key: SigningKey, policy: KeyPolicy) -> datetime:
    return key.activate_after or key.created_at + policy.prepublish


def _activate_replacement(
    algorithm: str,
    incoming: SigningKey | None,
    now: datetime,
    *,
    reason: str,
    actor: str = "",
    spare: SigningKey | None = None,
) -> SigningKey:
    key = incoming or _store_new_key(algorithm, now, spare)
    key.activate(now=now)
    gap = cache_gap(key=key, now=now)
    _emit("activated", key, now, reason=reason, actor=actor, jwks_cache_gap_seconds=gap.seconds)
    return key


@dataclass(frozen=True)
class CacheGap:
    """What relying parties that cache the JWKS (RFC 9111 §4.2: a fresh copy is reused without asking)
    make of a key that starts signing at ``now``: a copy fetched before the key was published stays fresh
    for ``seconds`` more, and they reject its tokens until then unless they refetch on an unknown kid."""

    algorithm: str
    kid: str
    published_seconds: int
    seconds: int
    max_age: int

    @property
    def message(self) -> str:
        if not self.seconds:
            return f"active {self.algorithm} key: {self.kid} (pre-published: in every cached JWKS)"
        return (
            f"active {self.algorithm} key: {self.kid} (published {self.published_seconds} s ago): relying "
            f"parties that cached the JWKS before then may reject its tokens for up to {self.seconds} s "
            f"(UAA_JWKS_MAX_AGE={self.max_age}) unless they refetch it on an unknown kid"
        )


def cache_gap(*, key: SigningKey, now: datetime) -> CacheGap:
    """How long JWKS copies cached before ``key`` was published may still be fresh at ``now``: none once
    it has been published for ``UAA_JWKS_MAX_AGE``, the whole max-age for a key published at ``now``."""
    max_age = settings.UAA_JWKS_MAX_AGE
    published = max(0.0, (now - key.created_at).total_seconds())
    return CacheGap(
        algorithm=key.algorithm,
        kid=key.kid,
        published_seconds=math.floor(published),
        seconds=max(0, math.ceil(max_age - published)),
        max_age=max_age,
    )


def active_key_cache_gap(*, algorithm: str, now: datetime) -> CacheGap:
    """:func:`cache_gap` of the key signing for ``algorithm`` now (after a revocation: its replacement)."""
    return cache_gap(key=SigningKey.objects.active().for_algorithm(algorithm).get(), now=now)


def ensure_active_key(*, algorithm: str, now: datetime) -> SigningKey:
    """The active key for ``algorithm``, creating (or promoting the next key to) one if there is none
    (or only a tampered one, which is put back first)."""
    key = SigningKey.objects.publishable().active().for_algorithm(algorithm).first()
    if key is not None:
        return key
    with transaction.atomic():
        _lock(algorithm)
        _restore_tampered(algorithm, now)
        key = SigningKey.objects.active().for_algorithm(algorithm).first()
        if key is None:
            key = _repair(algorithm, now)
    return key


def _repair(algorithm: str, now: datetime) -> SigningKey:
    """A series without an active key (under its lock): the standby signs if it proves (else it is
    revoked and a fresh key signs), and a new standby is published in its place, as after a rotation or a
    revocation: the next revocation may need one at any time. A series that had no standby (a database
    without keys, a key made on demand) gets none here: the scheduled rotation publishes it."""
    keys = SigningKey.objects.for_algorithm(algorithm)
    had_standby = keys.next_in_line().exists()
    key = _activate_replacement(algorithm, _standby(algorithm, now), now, reason="no active key")
    if had_standby and not keys.next_in_line().exists():
        _publish_next(algorithm, now, KeyPolicy.from_settings())
    return key


def lock_active_kid(*, algorithm: str, now: datetime) -> str:
    """The active kid for ``algorithm`` under the series lock, for a token about to be signed.

    tokens.signing.active_signing_key asks here when its shared-lock read found no active key: none exists
    yet, a revocation replaced it while the read waited, or its row is tampered (put back here first).
    Holding the series lock until the caller's transaction ends, no revocation can be underway; the key
    is also share-locked like any signing read.
    """
    with transaction.atomic():
        _lock(algorithm)
        _restore_tampered(algorithm, now)
        kid = locked_active_kid(algorithm)
        if kid is None:
            kid = _repair(algorithm, now).kid
    return kid


def rotate_signing_keys(*, now: datetime, policy: KeyPolicy | None = None) -> RotationReport:
    """Advance every algorithm's keys along the lifecycle. Idempotent; safe to run concurrently."""
    policy = policy or KeyPolicy.from_settings()
    report = RotationReport()
    for algorithm in algorithms_in_use():
        with transaction.atomic():
            _rotate_algorithm(algorithm, now=now, policy=policy, report=report)
    return report


@transaction.atomic
def request_rotation(*, algorithm: str, now: datetime, actor: str = "") -> RotationReport:
    """Rotate now: the standby signs at once if it has been published for the pre-publication window,
    else as soon as it has (the next scheduled run after that); a new standby is published then.

    ``actor`` is the ``sub`` of whoever asked (an admin); the key records of this call name them.
    """
    series = _lock(algorithm)
    series.rotation_requested_at = now
    series.save(update_fields=["rotation_requested_at"])
    report = RotationReport()
    _rotate_algorithm(algorithm, now=now, policy=KeyPolicy.from_settings(), report=report, actor=actor)
    return report


def revoke_signing_key(
    *, kid: str, now: datetime | None = None, reason: str = "", actor: str = ""
) -> SigningKey:
    """Emergency revocation: out of the JWKS at once; if it was signing, the standby signs at once.

    The standby (the ``next`` key) has normally been published for far longer than ``UAA_JWKS_MAX_AGE``,
    so relying parties that cache the JWKS verify the replacement's tokens without a gap; a key is
    generated on the spot only if there is no standby (then, and for a standby younger than max-age,
    :func:`active_key_cache_gap` gives the window). Revoking the active or the standby key publishes a
    new standby at once; its key pair is generated before any lock is taken, so tokens being signed wait
    for the revocation only, not for key generation.

    Tokens it signed stop verifying at once (tokens.signing.verify_jwt only trusts published keys).
    The row lock (FOR UPDATE) waits for every token transaction signing with the key right now (they
    hold it FOR SHARE, tokens.keys.locked_active_kid): those tokens commit, and their ledger records,
    before the revocation; no token signed by the key is issued after it. ``actor`` is the ``sub`` of
    the admin who revoked it, named by the revocation's records.

    Without ``now`` (the command, the API: the real clock), the revocation's time is read once the key
    row is locked, after every token transaction that held it has committed: the recorded ``revoked_at``
    and the ``key.revoked`` record's time come after the last token the key signed, as the ledger's
    order does. ``now`` is for simulated clocks (tests, drills).
    """
    algorithm, state = SigningKey.objects.values_list("algorithm", "state").get(kid=kid)
    needs_key = state in {SigningKey.State.ACTIVE, SigningKey.State.NEXT}  # a new standby, at least
    spare = generate_signing_key(algorithm=algorithm, now=now or timezone.now()) if needs_key else None
    with transaction.atomic():
        _lock(algorithm)
        # The row lock waits for every token transaction signing with the key; the time is read after it.
        SigningKey.objects.select_for_update().filter(kid=kid).values_list("pk", flat=True).first()
        now = now or timezone.now()
        _restore_tampered(algorithm, now, actor=actor)
        key = SigningKey.objects.select_for_update().get(kid=kid)
        if key.state == SigningKey.State.REVOKED:
            return key
        was_active = key.state == SigningKey.State.ACTIVE
        key.revoke(now=now)
        _emit("revoked", key, now, reason=reason, actor=actor)
        keys = SigningKey.objects.for_algorithm(algorithm)
        if was_active:
            standby = _standby(algorithm, now, actor=actor)
            fresh, spare = (spare, None) if standby is None else (None, spare)
            why = f"revocation of {kid}"
            _activate_replacement(algorithm, standby, now, reason=why, actor=actor, spare=fresh)
        if not keys.next_in_line().exists():
            _publish_next(algorithm, now, KeyPolicy.from_settings(), actor=actor, spare=spare)
    return key


def revoke_published_keys(*, now: datetime | None = None, reason: str = "") -> list[SigningKey]:
    """Revoke every published key (next, retired, then active) of every algorithm; a fresh key, wrapped
    under the current KEK, signs for each. What a KEK compromise calls for (docs/key-rotation.md): whoever
    holds the KEK and a copy of the database holds every private key it wrapped.
    """
    order = {SigningKey.State.NEXT: 0, SigningKey.State.RETIRED: 1, SigningKey.State.ACTIVE: 2}
    revoked: list[SigningKey] = []
    for algorithm in algorithms_in_use():
        with transaction.atomic():
            _lock(algorithm)
            published = SigningKey.objects.for_algorithm(algorithm).publishable()
            for key in sorted(published, key=lambda k: order[SigningKey.State(k.state)]):
                revoked.append(revoke_signing_key(kid=key.kid, now=now, reason=reason))
    return revoked
