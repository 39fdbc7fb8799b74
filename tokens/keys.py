"""Key generation, envelope encryption under ``UAA_KEK``, and proof that a stored key is ours.

Each private key is serialized (PKCS#8 DER), encrypted with AES-256-GCM under a fresh 256-bit data
key, and the data key is encrypted with AES-256-GCM under the key-encryption key (KEK). Both
encryptions take the same associated data (:func:`associated_data`), which binds the two blobs to the
row that holds them: its purpose (a token signing key or an audit key: which table), ``kid``,
algorithm, and the RFC 7638 thumbprint of its stored ``public_jwk``. Blobs moved to another row, or a
row whose kid, algorithm or public key was changed, no longer decrypt.

A key is published (JWKS, audit JWKS) or trusted (token verification, signing) only once this process
has *proven* it (:func:`proven_key`): its private half unwrapped under a configured KEK, the public
key derived from that private half is the stored ``public_jwk``, its thumbprint is the ``kid`` and its
type fits the algorithm. A row someone wrote into the database without the KEK fails that proof: it
is left out, and logged once at error level with its kid. Each row is proven once per process.

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

import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol, cast

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone
from jwcrypto import jwk
from jwcrypto.common import JWException

from tokens.models import AuditKey, KeyPurpose, SigningKey, contradiction_sql

__all__ = ["KeyPurpose"]  # re-exported: the purposes the associated data binds

logger = logging.getLogger(__name__)

NONCE_BYTES = 12


class KeyDecryptionError(ImproperlyConfigured):
    """A stored private key cannot be unwrapped with any configured KEK: a wrong ``UAA_KEK``, or a row
    that UAA did not write as it is (moved blobs, a changed kid, algorithm or public key)."""


class UntrustedKey(KeyDecryptionError):
    """A stored key unwrapped, but is not what its row says (another type, public key or kid)."""


@dataclass(frozen=True)
class KeyEncryptionKey:
    kek_id: str
    key: bytes


def _decode_kek(text: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ImproperlyConfigured("UAA_KEK must be base64url-encoded 32-byte keys.") from exc
    if len(raw) != 32:
        raise ImproperlyConfigured("UAA_KEK must be base64url-encoded 32-byte keys.")
    return raw


def new_kek() -> str:
    """A fresh key-encryption key, base64url encoded (what ``UAA_KEK`` holds)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def ensure_kek_file(path: Path) -> None:
    """Create the local development KEK file if it does not exist yet (DEBUG only)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_kek() + "\n")


@cache
def _keks_from(value: str, file: str) -> tuple[KeyEncryptionKey, ...]:
    text = value
    if not text and file:
        path = Path(file)
        if settings.DEBUG:
            ensure_kek_file(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ImproperlyConfigured(f"UAA_KEK_FILE {file} cannot be read.") from exc
    keys = [_decode_kek(part) for part in text.replace("\n", ",").split(",") if part.strip()]
    if not keys:
        raise ImproperlyConfigured("UAA_KEK is empty.")
    return tuple(KeyEncryptionKey(kek_id=hashlib.sha256(k).hexdigest()[:16], key=k) for k in keys)


def configured_keks() -> tuple[KeyEncryptionKey, ...]:
    """The configured KEKs, current first. Older ones are accepted for unwrapping during a KEK rotation."""
    return _keks_from(settings.UAA_KEK, settings.UAA_KEK_FILE)


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


class WrappedKey(Protocol):
    """What the envelope helpers need of a stored key: ``SigningKey`` and the ledger's ``AuditKey``.

    ``purpose`` is a class attribute of the model (the table decides it, not a column).
    """

    @property
    def purpose(self) -> str: ...
    @property
    def kid(self) -> str: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def public_jwk(self) -> Any: ...
    @property
    def kek_id(self) -> str: ...
    @property
    def wrapped_private_key(self) -> bytes | memoryview: ...
    @property
    def wrapped_data_key(self) -> bytes | memoryview: ...


# RFC 7517 §4 / RFC 7518 §6: the members a public JWK may carry. Anything else (d, p, q, dp, dq, qi,
# oth, k) is private and can never be published, whatever is stored.
PUBLIC_MEMBERS = frozenset({"kty", "kid", "alg", "use", "key_ops", "n", "e", "crv", "x", "y"})
# RFC 7638 §3.2: the members the thumbprint covers.
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
AAD_CONTEXT = b"uaa key-wrap v2\n"


def jwk_thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256) of a stored public JWK; ``ValueError`` if it is not a usable key."""
    try:
        members = {name: public_jwk[name] for name in THUMBPRINT_MEMBERS[public_jwk["kty"]]}
        return str(jwk.JWK(**members).thumbprint())
    except (KeyError, TypeError, ValueError, JWException) as exc:
        raise ValueError("not an RSA, EC or OKP public key") from exc


def associated_data(*, purpose: str, kid: str, algorithm: str, public_jwk: Mapping[str, Any]) -> bytes:
    """The AES-GCM associated data of both encryptions of a key: what the blobs belong to.

    A frozen copy lives in migration tokens/0007 (which moved keys wrapped before it to this form).
    """
    bound = {"alg": algorithm, "jkt": jwk_thumbprint(public_jwk), "kid": kid, "purpose": purpose}
    return AAD_CONTEXT + json.dumps(bound, sort_keys=True, separators=(",", ":")).encode()


def _aad(key: WrappedKey) -> bytes:
    try:
        return associated_data(
            purpose=key.purpose, kid=key.kid, algorithm=key.algorithm, public_jwk=key.public_jwk
        )
    except ValueError as exc:
        raise UntrustedKey(f"Key {key.kid}: the stored public_jwk is not a public key.") from exc


def wrap_private_key(*, der: bytes, aad: bytes, kek: KeyEncryptionKey) -> tuple[bytes, bytes]:
    """Encrypt ``der`` under a fresh data key and wrap that data key under ``kek``, both bound to ``aad``."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    wrapped_private = nonce + AESGCM(data_key).encrypt(nonce, der, aad)
    kek_nonce = os.urandom(NONCE_BYTES)
    wrapped_data_key = kek_nonce + AESGCM(kek.key).encrypt(kek_nonce, data_key, aad)
    return wrapped_private, wrapped_data_key


def _cannot_unwrap(key: WrappedKey) -> KeyDecryptionError:
    return KeyDecryptionError(
        f"No configured UAA_KEK can decrypt {key.purpose} key {key.kid} (wrapped under KEK {key.kek_id}). "
        "Check UAA_KEK / UAA_KEK_FILE; if they are right, the row was altered or not written by UAA "
        "(docs/key-rotation.md). UAA will not sign with a new, unpublished key instead."
    )


def _unwrap_data_key(key: WrappedKey, aad: bytes) -> bytes:
    """The key's data key, trying the KEK it names first, then every configured KEK."""
    keks = sorted(configured_keks(), key=lambda k: k.kek_id != key.kek_id)
    wrapped = bytes(key.wrapped_data_key)
    for kek in keks:
        try:
            return AESGCM(kek.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except (InvalidTag, ValueError):
            continue
    raise _cannot_unwrap(key)


def unwrap_private_key(key: WrappedKey) -> bytes:
    """Recover the PKCS#8 DER private key (only under the associated data of the row as it stands)."""
    aad = _aad(key)
    blob = bytes(key.wrapped_private_key)
    try:
        return AESGCM(_unwrap_data_key(key, aad)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise _cannot_unwrap(key) from exc


def rewrap_data_key(key: WrappedKey, kek: KeyEncryptionKey) -> bytes:
    """``key``'s data key, unwrapped with whichever configured KEK wrapped it, wrapped under ``kek``."""
    aad = _aad(key)
    data_key = _unwrap_data_key(key, aad)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek.key).encrypt(nonce, data_key, aad)


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


@dataclass(frozen=True)
class ProvenKey:
    """A stored key this process has proven (see the module docstring): what may be published."""

    purpose: str
    kid: str
    algorithm: str
    public: dict[str, Any]  # RFC 7517 public members only, derived from the private half
    jwk: jwk.JWK  # the public key, for verification


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
        purpose=key.purpose, kid=key.kid, algorithm=key.algorithm, public=derived, jwk=jwk.JWK(**derived)
    )
    return proven, private


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    algorithm: str
    jwk: jwk.JWK


_cache_lock = threading.Lock()
_proven: dict[tuple[str, str, str, str], ProvenKey | None] = {}  # row identity → proof (None: failed)
_signing: dict[str, LoadedKey] = {}  # algorithm → the private half of its active key, nothing else
_tampered: set[str] = set()  # kids already logged as tokens.key_state_tampered by this process


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


def proven_key(key: WrappedKey) -> ProvenKey | None:
    """``key`` as proven by this process, or ``None`` if it fails the proof (logged once, then cached)."""
    identity = _identity(key)
    if identity in _proven:
        return _proven[identity]
    try:
        proven, _ = _prove(key)
    except KeyDecryptionError as exc:
        _remember(key, None, exc)
        return None
    _remember(key, proven)
    return proven


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
    with _cache_lock:
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


def ensure_active_key(*, algorithm: str) -> SigningKey:
    """The active key for ``algorithm``; a database without one heals itself (tokens.rotation)."""
    from tokens.rotation import ensure_active_key as heal

    return heal(algorithm=algorithm, now=timezone.now())


@cache
def _active_kid_sql(vendor: str) -> str:
    table = connection.ops.quote_name(SigningKey._meta.db_table)
    sql = (
        f"SELECT k.kid FROM {table} k WHERE k.state = %s AND k.algorithm = %s"  # noqa: S608 - our own table
        f" AND NOT {contradiction_sql('k')}"  # a tampered row is never locked, nor used
    )
    # PostgreSQL: a shared lock on the key row until the token's transaction ends. A revocation (which
    # locks the row FOR UPDATE) waits for every token being signed with the key, and a token started
    # while a revocation is underway waits for it, then finds the key no longer active. SQLite runs
    # each write transaction alone (BEGIN IMMEDIATE), so the same holds there without a lock.
    return sql + " FOR SHARE" if vendor == "postgresql" else sql


def locked_active_kid(algorithm: str) -> str | None:
    """The active kid for ``algorithm``, read under a shared lock held until the caller's transaction
    ends; ``None`` if there is none, or if its row is contradicted (tokens.rotation puts it back). One
    plain indexed query: it runs for every token issued, and the ORM would cost more."""
    with connection.cursor() as cursor:
        cursor.execute(_active_kid_sql(connection.vendor), [SigningKey.State.ACTIVE, algorithm])
        row = cursor.fetchone()
    return row[0] if row else None


def active_signing_key(algorithm: str) -> LoadedKey:
    """The active private key for ``algorithm``, for a token signed in the caller's transaction.

    Which key is active is read from the database on every call, under a shared lock (see
    :func:`locked_active_kid`), so a rotation or a revocation takes effect on every process at once and
    never in the middle of a token; only the unwrapped, proven private half of the active key is cached.
    """
    kid = locked_active_kid(algorithm)
    if kid is None:  # no active key, or it was revoked while we waited: ask under the series lock
        from tokens.rotation import lock_active_kid

        kid = lock_active_kid(algorithm=algorithm, now=timezone.now())
    loaded = _signing.get(algorithm)
    if loaded is not None and loaded.kid == kid:
        return loaded
    private = load_proven_private_key(SigningKey.objects.get(kid=kid))
    loaded = LoadedKey(kid=kid, algorithm=algorithm, jwk=jwk.JWK.from_pyca(private))
    with _cache_lock:
        _signing[algorithm] = loaded  # the previous active key's private half goes
    return loaded


PUBLISHED_STATES = (SigningKey.State.NEXT, SigningKey.State.ACTIVE, SigningKey.State.RETIRED)


@cache
def _trusted_key_sql(vendor: str) -> str:
    """The row of a kid in a published state, and whether it is contradicted: plain SQL, written once
    (the ORM would compile the check again for every verification)."""
    quote = connection.ops.quote_name
    fields = SigningKey._meta.concrete_fields
    columns = ", ".join(f"k.{quote(field.column or field.name)}" for field in fields)
    return (
        f"SELECT {columns}, {contradiction_sql('k')} AS contradicted"  # noqa: S608 - our own table
        f" FROM {quote(SigningKey._meta.db_table)} k WHERE k.kid = %s AND k.state IN (%s, %s, %s)"
    )


def trusted_public_key(kid: str) -> ProvenKey | None:
    """The proven public key for ``kid`` if it is published right now: next, active or retired, and
    neither its timestamps nor the ledger say it moved on (a contradicted row is logged as tampered).

    One query per verification reads the row and checks it; the state is never cached, only the proof
    (a "not revoked" kept in memory is what a process would go on trusting after a revoked row was
    written back exactly as it stood)."""
    rows = SigningKey.objects.raw(_trusted_key_sql(connection.vendor), [kid, *PUBLISHED_STATES])
    row = next(iter(rows), None)
    if row is None:
        return None
    if getattr(row, "contradicted", True):  # the query's own column; missing would mean untrusted
        note_tampered(row.kid)
        return None
    return proven_key(row)


def published_public_key(kid: str) -> jwk.JWK | None:
    """The public key for ``kid`` if it is published and proven right now, else ``None``."""
    proven = trusted_public_key(kid)
    return proven.jwk if proven is not None else None


def clear_public_key_cache() -> None:
    """Nothing to clear: the published state is read from the database on every verification."""


def verify_stored_keys() -> int:
    """Prove every published signing key; raise ``KeyDecryptionError`` on a failure (``bootstrap``)."""
    return require_proven(SigningKey.objects.publishable())


def rewrap_keys(model: type[SigningKey] | type[AuditKey]) -> int:
    """Re-wrap every stored private key of ``model`` (signing or audit keys) under the current KEK.

    Older KEKs must still be configured. Each key's data key is re-encrypted in its own small
    transaction; the private key itself is untouched, so signing and verification continue throughout.
    Only keys in the current format are re-wrapped (under the same associated data); revoked and
    expired signing keys have nothing left to re-wrap.
    """
    current = configured_keks()[0]
    count = 0
    stored = model._default_manager.exclude(kek_id=current.kek_id).exclude(wrapped_data_key=b"")
    for key_id in stored.values_list("pk", flat=True):
        with transaction.atomic():
            key = model._default_manager.select_for_update().get(pk=key_id)
            if key.kek_id == current.kek_id:
                continue
            key.wrapped_data_key = rewrap_data_key(key, current)
            key.kek_id = current.kek_id
            key.save(update_fields=["wrapped_data_key", "kek_id"])
            count += 1
    return count


def rewrap_signing_keys() -> int:
    """Re-wrap every signing key under the current (first) KEK."""
    return rewrap_keys(SigningKey)
