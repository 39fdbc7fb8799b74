"""The only code that changes signing-key states: scheduled rotation and emergency revocation.

Guarantee to resource servers that cache the JWKS for at most ``UAA_JWKS_MAX_AGE`` seconds:

* a key is published (state ``next``) at least ``UAA_KEY_PREPUBLISH_SECONDS`` (≥ the cache lifetime)
  before it signs anything, so a verifier never meets a token whose ``kid`` it cannot find;
* a retired key stays published until every token it signed has expired, plus one cache lifetime
  and a margin, so tokens issued just before a rotation keep verifying;
* a revoked key leaves the JWKS at once, and tokens it signed fail introspection and userinfo at once.

Every change for one algorithm happens under a row lock on its ``KeySeries``: several workers or
beat processes may run rotation at the same moment and exactly one of them does the work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from tokens.keys import create_signing_key, forget_private_key, locked_active_kid
from tokens.models import KeySeries, SigningKey
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

    @property
    def changed(self) -> bool:
        return bool(self.published or self.activated or self.retired or self.expired)


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


def _publish_next(algorithm: str, now: datetime, policy: KeyPolicy, *, actor: str = "") -> SigningKey:
    key = create_signing_key(algorithm=algorithm, now=now, state=SigningKey.State.NEXT)
    key.activate_after = now + policy.prepublish
    key.save(update_fields=["activate_after"])
    _emit("published", key, now, actor=actor)
    return key


def _rotate_algorithm(
    algorithm: str, *, now: datetime, policy: KeyPolicy, report: RotationReport, actor: str = ""
) -> None:
    series = _lock(algorithm)
    keys = SigningKey.objects.for_algorithm(algorithm)
    active = keys.active().first()
    incoming = keys.next_in_line().first()

    if active is None:  # a database without a usable key heals itself
        active = _activate_replacement(algorithm, incoming, now, reason="no active key", actor=actor)
        report.activated.append(active.kid)
        incoming = None

    due = (active.activated_at or now) + policy.period
    requested = series.rotation_requested_at is not None
    if incoming is None and (requested or now >= due - policy.prepublish):
        incoming = _publish_next(algorithm, now, policy, actor=actor)
        report.published.append(incoming.kid)

    ready = incoming is not None and incoming.activate_after is not None and now >= incoming.activate_after
    if incoming is not None and ready and (requested or now >= due):
        active.retire(now=now)
        report.retired.append(active.kid)
        _emit("retired", active, now, actor=actor)
        incoming.activate(now=now)
        report.activated.append(incoming.kid)
        _emit("activated", incoming, now, reason="requested" if requested else "scheduled", actor=actor)
        if requested:
            series.rotation_requested_at = None
            series.save(update_fields=["rotation_requested_at"])

    for retired in keys.filter(state=SigningKey.State.RETIRED, retired_at__lte=now - policy.retention):
        retired.expire(now=now)
        report.expired.append(retired.kid)
        _emit("expired", retired, now, actor=actor)


def _activate_replacement(
    algorithm: str, incoming: SigningKey | None, now: datetime, *, reason: str, actor: str = ""
) -> SigningKey:
    key = incoming or create_signing_key(algorithm=algorithm, now=now, state=SigningKey.State.NEXT)
    key.activate(now=now)
    _emit("activated", key, now, reason=reason, actor=actor)
    return key


def ensure_active_key(*, algorithm: str, now: datetime) -> SigningKey:
    """The active key for ``algorithm``, creating (or promoting the next key to) one if there is none."""
    key = SigningKey.objects.active().for_algorithm(algorithm).first()
    if key is not None:
        return key
    with transaction.atomic():
        _lock(algorithm)
        key = SigningKey.objects.active().for_algorithm(algorithm).first()
        if key is None:
            incoming = SigningKey.objects.for_algorithm(algorithm).next_in_line().first()
            key = _activate_replacement(algorithm, incoming, now, reason="no active key")
    return key


def lock_active_kid(*, algorithm: str, now: datetime) -> str:
    """The active kid for ``algorithm`` under the series lock, for a token about to be signed.

    tokens.keys.active_signing_key asks here when its shared-lock read found no active key: none exists
    yet, or a revocation replaced it while the read waited. Holding the series lock until the caller's
    transaction ends, no revocation can be underway; the key is also share-locked like any signing read.
    """
    with transaction.atomic():
        _lock(algorithm)
        kid = locked_active_kid(algorithm)
        if kid is None:
            incoming = SigningKey.objects.for_algorithm(algorithm).next_in_line().first()
            kid = _activate_replacement(algorithm, incoming, now, reason="no active key").kid
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
    """Rotate now: publish a next key at once; it signs as soon as its pre-publication window has passed.

    ``actor`` is the ``sub`` of whoever asked (an admin); the key records of this call name them.
    """
    series = _lock(algorithm)
    series.rotation_requested_at = now
    series.save(update_fields=["rotation_requested_at"])
    report = RotationReport()
    _rotate_algorithm(algorithm, now=now, policy=KeyPolicy.from_settings(), report=report, actor=actor)
    return report


@transaction.atomic
def revoke_signing_key(*, kid: str, now: datetime, reason: str = "", actor: str = "") -> SigningKey:
    """Emergency revocation: out of the JWKS at once; if it was signing, a fresh key signs at once.

    Tokens it signed stop verifying at once (tokens.formats.verify_jwt only trusts published keys).
    The row lock (FOR UPDATE) waits for every token transaction signing with the key right now (they
    hold it FOR SHARE, tokens.keys.locked_active_kid): those tokens commit, and their ledger records,
    before the revocation; no token signed by the key is issued after it. ``actor`` is the ``sub`` of
    the admin who revoked it, named by the revocation's records.
    """
    algorithm = SigningKey.objects.values_list("algorithm", flat=True).get(kid=kid)
    _lock(algorithm)
    key = SigningKey.objects.select_for_update().get(kid=kid)
    if key.state == SigningKey.State.REVOKED:
        return key
    was_active = key.state == SigningKey.State.ACTIVE
    key.revoke(now=now)
    _emit("revoked", key, now, reason=reason, actor=actor)
    if was_active:
        incoming = SigningKey.objects.for_algorithm(algorithm).next_in_line().first()
        _activate_replacement(algorithm, incoming, now, reason=f"revocation of {kid}", actor=actor)
    return key


def revoke_published_keys(*, now: datetime, reason: str = "") -> list[SigningKey]:
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
