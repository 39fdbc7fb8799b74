"""Signing-key generation, and proof that a stored key (a signing or an audit key) is ours.

Private halves are stored wrapped under ``UAA_KEK`` (tokens/envelope.py). A key is published (JWKS,
audit JWKS) or trusted (token verification, signing) only once this process has *proven* it
(:func:`proven_key`): its private half unwrapped under a configured KEK, the public key derived from that
private half is the stored ``public_jwk``, its thumbprint is the ``kid`` and its type fits the algorithm.
A row someone wrote into the database without the KEK fails that proof: it is left out, and logged once
at error level with its kid. Each row is proven once per process.

A proof says the public key is ours, not that the key may still be used: that is the row's state, read
on every use, and checked against what a database write cannot take back (``SigningKey.objects
.publishable()``): the row's own ``retired_at`` / ``expired_at`` / ``revoked_at`` and the audit
ledger's ``key.*`` records. A revoked or expired key's private half is destroyed as well, so a row
flipped back to ``retired`` or ``active`` fails the proof in any process that had not proven it yet;
and in one that had, the ledger still says no. Such a row is left out, logged once per process at
error level (``tokens.key_state_tampered``, with its kid), and tokens.rotation puts it back.

``kid`` is the RFC 7638 thumbprint of the public key.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.db import connection
from jwcrypto import jwk

from tokens.envelope import (
    KeyDecryptionError,
    UntrustedKey,
    WrappedKey,
    associated_data,
    configured_keks,
    rewrap_keys,
    unwrap_private_key,
    wrap_private_key,
)
from tokens.models import SigningKey, contradiction_sql
from tokens.rows import RowShape, database

logger = logging.getLogger(__name__)


def _generate_private_key(
    algorithm: str,
) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    if algorithm == SigningKey.Algorithm.RS256:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == SigningKey.Algorithm.ES256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == SigningKey.Algorithm.EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {algorithm}")


# RFC 7517 §4 / RFC 7518 §6: the members a public JWK may carry. Anything else (d, p, q, dp, dq, qi,
# oth, k) is private and can never be published, whatever is stored.
PUBLIC_MEMBERS = frozenset({"kty", "kid", "alg", "use", "key_ops", "n", "e", "crv", "x", "y"})


def create_signing_key(*, algorithm: str, now: datetime, state: str = SigningKey.State.NEXT) -> SigningKey:
    """Generate a key pair, wrap the private half under the current KEK and store it."""
    key = generate_signing_key(algorithm=algorithm, now=now, state=state)
    key.save(force_insert=True)
    return key


def generate_signing_key(*, algorithm: str, now: datetime, state: str = SigningKey.State.NEXT) -> SigningKey:
    """A new key pair, its private half wrapped under the current KEK, not stored yet: what tokens.rotation
    generates before it takes its locks (key generation is the slow part of a revocation)."""
    private_key = _generate_private_key(algorithm)
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = jwk.JWK.from_pyca(private_key.public_key())
    kid = public.thumbprint()
    public_jwk = {**public.export_public(as_dict=True), "kid": kid, "alg": algorithm, "use": "sig"}
    kek = configured_keks()[0]
    aad = associated_data(purpose=SigningKey.purpose, kid=kid, algorithm=algorithm, public_jwk=public_jwk)
    wrapped_private, wrapped_data_key = wrap_private_key(der=der, aad=aad, kek=kek)
    return SigningKey(
        kid=kid,
        algorithm=algorithm,
        state=state,
        public_jwk=public_jwk,
        wrapped_private_key=wrapped_private,
        wrapped_data_key=wrapped_data_key,
        kek_id=kek.kek_id,
        created_at=now,
        activated_at=now if state == SigningKey.State.ACTIVE else None,
    )


# --- proof: a stored key is trusted only once its private half shows it is ours --------------------

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class ProvenKey:
    """A stored key this process has proven (see the module docstring): what may be published."""

    purpose: str
    kid: str
    algorithm: str
    public: dict[str, Any]  # RFC 7517 public members only, derived from the private half
    public_key: PublicKey  # the same key as a ``cryptography`` object: what tokens.signing verifies with
    jwk: jwk.JWK  # the same key again, for django-oauth-toolkit's ID token hook (a jwcrypto JWK)


def _fits(private: object, algorithm: str) -> bool:
    """RFC 7518 §3.3, §3.4 / RFC 8037 §3.1: RS256 on RSA ≥ 2048 bits, ES256 on P-256, EdDSA on Ed25519."""
    if algorithm == SigningKey.Algorithm.RS256:
        return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
    if algorithm == SigningKey.Algorithm.ES256:
        return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    if algorithm == SigningKey.Algorithm.EDDSA:
        return isinstance(private, ed25519.Ed25519PrivateKey)
    return False


def _prove(key: WrappedKey) -> tuple[ProvenKey, PrivateKey]:
    """Unwrap ``key`` and check it is what its row says; raises ``KeyDecryptionError`` otherwise."""
    der = unwrap_private_key(key)
    try:
        private = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UntrustedKey(f"Key {key.kid}: the unwrapped private key cannot be loaded.") from exc
    if not _fits(private, key.algorithm):
        raise UntrustedKey(f"Key {key.kid}: the private key does not fit algorithm {key.algorithm}.")
    private = cast(PrivateKey, private)
    public = jwk.JWK.from_pyca(private.public_key())
    if public.thumbprint() != key.kid:
        raise UntrustedKey(f"Key {key.kid}: the kid is not the thumbprint of the key.")
    derived = {**public.export_public(as_dict=True), "kid": key.kid, "alg": key.algorithm, "use": "sig"}
    stored = key.public_jwk if isinstance(key.public_jwk, dict) else {}
    if {name: value for name, value in stored.items() if name in PUBLIC_MEMBERS} != derived:
        raise UntrustedKey(f"Key {key.kid}: the stored public_jwk is not the key's public half.")
    proven = ProvenKey(
        purpose=key.purpose,
        kid=key.kid,
        algorithm=key.algorithm,
        public=derived,
        public_key=private.public_key(),
        jwk=jwk.JWK(**derived),
    )
    return proven, private


@dataclass(frozen=True)
class LoadedKey:
    """The proven private half of an active signing key, as the ``cryptography`` object tokens.signing
    signs with: unwrapped and loaded once per process, never per token."""

    kid: str
    algorithm: str
    private: PrivateKey


_cache_lock = threading.Lock()
_proven: dict[tuple[str, str, str, str], ProvenKey | None] = {}  # row identity → proof (None: failed)
_signing: dict[str, LoadedKey] = {}  # algorithm → the private half of its active key, nothing else
_tampered: set[str] = set()  # kids already logged as tokens.key_state_tampered by this process
_epoch = 0  # moved by clear_key_cache: what was built from the proofs before it is out of date


def proof_epoch() -> int:
    """Which proofs this process holds: it changes whenever they are all forgotten (``clear_key_cache``);
    between changes a row's proof, once made, stays what it is (tokens/jwks.py keys its copy by it)."""
    return _epoch


def _identity(key: WrappedKey) -> tuple[str, str, str, str]:
    """What a proof is about: the row's purpose, kid, algorithm and stored public key (not its blobs,
    which a KEK rotation re-wraps; a proof says the public key is ours, and that stays true)."""
    stored = json.dumps(key.public_jwk, sort_keys=True, separators=(",", ":"), default=str)
    return (key.purpose, key.kid, key.algorithm, stored)


def _remember(key: WrappedKey, proven: ProvenKey | None, exc: Exception | None = None) -> None:
    with _cache_lock:
        first = _identity(key) not in _proven
        _proven[_identity(key)] = proven
    if proven is None and first:
        logger.error(
            "tokens.key_untrusted",
            extra={"kid": key.kid, "purpose": key.purpose, "alg": key.algorithm, "reason": str(exc)[:300]},
        )


def prove_afresh(key: WrappedKey) -> ProvenKey | None:
    """``key`` proven now, from its blobs as they are, whatever this process remembers of it: for a
    decision that cannot be taken back (a standby made to sign, or revoked for failing; tokens/rotation.py).
    The remembered proof is what the row's identity decides (not its blobs, which a KEK rotation re-wraps),
    so blobs changed since would pass it, and blobs put back would still fail it. The result replaces it."""
    try:
        proven, _ = _prove(key)
    except KeyDecryptionError as exc:
        _remember(key, None, exc)
        return None
    _remember(key, proven)
    return proven


def proven_key(key: WrappedKey) -> ProvenKey | None:
    """``key`` as proven by this process, or ``None`` if it fails the proof (logged once, then cached)."""
    identity = _identity(key)
    if identity in _proven:
        return _proven[identity]
    return prove_afresh(key)


def load_proven_private_key(key: WrappedKey) -> PrivateKey:
    """The private half of ``key``, proven first; raises ``KeyDecryptionError`` if it fails the proof."""
    try:
        proven, private = _prove(key)
    except KeyDecryptionError as exc:
        _remember(key, None, exc)
        raise
    _remember(key, proven)
    return private


def require_proven(keys: Iterable[WrappedKey]) -> int:
    """Prove every key in ``keys`` (``manage.py bootstrap``); raise ``KeyDecryptionError`` on the first
    failure, so a wrong KEK or a foreign row stops the deploy loudly."""
    count = 0
    for key in keys:
        load_proven_private_key(key)
        count += 1
    return count


def clear_key_cache() -> None:
    """Forget every proof and private key of this process (tests; a KEK change in place)."""
    global _epoch
    with _cache_lock:
        _epoch += 1
        _proven.clear()
        _signing.clear()
        _tampered.clear()


def note_tampered(kid: str) -> None:
    """A row whose state its timestamps or ledger records contradict (a database write): logged once
    per process at error level, the kid and nothing else. Its private half leaves memory at once."""
    with _cache_lock:
        first = kid not in _tampered
        _tampered.add(kid)
        for algorithm in [alg for alg, loaded in _signing.items() if loaded.kid == kid]:
            del _signing[algorithm]
    if first:
        logger.error("tokens.key_state_tampered", extra={"kid": kid})


def cached_private_key_ids() -> set[str]:
    """The kids whose private halves this process holds in memory (only active keys, one per algorithm)."""
    return {loaded.kid for loaded in _signing.values()}


def forget_private_key(kid: str) -> None:
    """Drop ``kid``'s private half from this process (tokens.rotation: it stopped signing)."""
    with _cache_lock:
        for algorithm in [alg for alg, loaded in _signing.items() if loaded.kid == kid]:
            del _signing[algorithm]


def retain_private_keys(active_kids: Iterable[str]) -> None:
    """Drop every cached private half whose key is not among ``active_kids`` any more (the JWKS view
    sees every state; a process that never signs with an algorithm again still lets its key go)."""
    keep = set(active_kids)
    with _cache_lock:
        for algorithm in [alg for alg, loaded in _signing.items() if loaded.kid not in keep]:
            del _signing[algorithm]


@cache
def _active_kid_sql(vendor: str) -> str:
    table = connection.ops.quote_name(SigningKey._meta.db_table)
    sql = (
        f"SELECT k.kid FROM {table} k WHERE k.state = %s AND k.algorithm = %s"  # noqa: S608 - our own table  # nosec B608
        f" AND NOT {contradiction_sql('k')}"  # a tampered row is never locked, nor used
    )
    # PostgreSQL: a shared lock on the key row until the token's transaction ends. A revocation (which
    # locks the row FOR UPDATE) waits for every token being signed with the key, and a token started
    # while a revocation is underway waits for it, then finds the key no longer active. SQLite runs
    # each write transaction alone (BEGIN IMMEDIATE), so the same holds there without a lock.
    return sql + " FOR SHARE" if vendor == "postgresql" else sql


def active_kid(algorithm: str) -> str | None:
    """The active kid for ``algorithm`` without a lock (tokens.signing.optimistic: the statement that
    stores the token confirms it under the lock); ``None`` if there is none or its row is contradicted."""
    with connection.cursor() as cursor:
        cursor.execute(
            _active_kid_sql(connection.vendor).removesuffix(" FOR SHARE"),
            [SigningKey.State.ACTIVE, algorithm],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def cached_signing_key(algorithm: str) -> LoadedKey | None:
    """The private half this process holds for ``algorithm``'s active key (as of the last locked read or
    confirmation), or ``None``; whether it is still active is for the caller to confirm."""
    return _signing.get(algorithm)


def confirmed_kids_sql(count: int) -> str:
    """A subquery that share-locks the rows of ``count`` kids that are active and uncontradicted now (the
    locked read's condition), for a statement storing a token signed with them: it stores the token only
    if all ``count`` rows are there (tokens.signing.optimistic)."""
    table = connection.ops.quote_name(SigningKey._meta.db_table)
    placeholders = ", ".join(["%s"] * count)
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    return (
        f"SELECT k.kid FROM {table} k WHERE k.kid IN ({placeholders}) AND k.state = 'active'"  # noqa: S608 - our own tables  # nosec B608
        f" AND NOT {contradiction_sql('k')}{lock}"
    )


def locked_active_kid(algorithm: str) -> str | None:
    """The active kid for ``algorithm``, read under a shared lock held until the caller's transaction
    ends; ``None`` if there is none, or if its row is contradicted (tokens.rotation puts it back). One
    plain indexed query: it runs for every token issued, and the ORM would cost more."""
    with connection.cursor() as cursor:
        cursor.execute(_active_kid_sql(connection.vendor), [SigningKey.State.ACTIVE, algorithm])
        row = cursor.fetchone()
    return row[0] if row else None


def private_signing_key(*, kid: str, algorithm: str) -> LoadedKey:
    """The proven private half of signing key ``kid``, the active key for ``algorithm`` (tokens.signing
    reads which one that is): cached per process, and only it (the previous active key's half goes)."""
    loaded = _signing.get(algorithm)
    if loaded is not None and loaded.kid == kid:
        return loaded
    private = load_proven_private_key(SigningKey.objects.get(kid=kid))
    loaded = LoadedKey(kid=kid, algorithm=algorithm, private=private)
    with _cache_lock:
        _signing[algorithm] = loaded
    return loaded


PUBLISHED_STATES = (SigningKey.State.NEXT, SigningKey.State.ACTIVE, SigningKey.State.RETIRED)


@cache
def _trusted_key_statement(vendor: str) -> tuple[str, RowShape]:
    """The row of a kid in a published state, and whether it is contradicted: plain SQL, written once
    (the ORM would compile the check again for every verification), read with a plain cursor (a raw
    queryset asks the cursor for its columns and maps them to fields again on every call)."""
    db = database()
    quote = db.ops.quote_name
    shape = RowShape(db, (SigningKey, "k"))
    sql = (
        f"SELECT {shape.select}, {contradiction_sql('k')} AS contradicted"  # noqa: S608 - our own table  # nosec B608
        f" FROM {quote(SigningKey._meta.db_table)} k WHERE k.kid = %s AND k.state IN (%s, %s, %s)"
    )
    return sql, shape


def trusted_public_key(kid: str) -> ProvenKey | None:
    """The proven public key for ``kid`` if it is published right now: next, active or retired, and
    neither its timestamps nor the ledger say it moved on (a contradicted row is logged as tampered).

    One query per verification reads the row and checks it; the state is never cached, only the proof
    (a "not revoked" kept in memory is what a process would go on trusting after a revoked row was
    written back exactly as it stood)."""
    db = database()
    sql, shape = _trusted_key_statement(db.vendor)
    with db.cursor() as cursor:
        cursor.execute(sql, [kid, *PUBLISHED_STATES])
        row = cursor.fetchone()
    if row is None:
        return None
    (key,) = shape.instances(db, row)
    contradicted = row[shape.width]  # the query's own column; NULL would mean untrusted
    if contradicted is None or contradicted:
        note_tampered(key.kid)
        return None
    return proven_key(key)  # type: ignore[no-any-return]


def published_public_key(kid: str) -> jwk.JWK | None:
    """The public key for ``kid`` if it is published and proven right now, else ``None``."""
    proven = trusted_public_key(kid)
    return proven.jwk if proven is not None else None


def clear_public_key_cache() -> None:
    """Nothing to clear: the published state is read from the database on every verification."""


def verify_stored_keys() -> int:
    """Prove every published signing key; raise ``KeyDecryptionError`` on a failure (``bootstrap``)."""
    return require_proven(SigningKey.objects.publishable())


def rewrap_signing_keys() -> int:
    """Re-wrap every signing key under the current (first) KEK."""
    return rewrap_keys(SigningKey)
