"""Key generation and envelope encryption under ``UAA_KEK``; ``kid`` is the RFC 7638 thumbprint.

Each private key is serialized (PKCS#8 DER), encrypted with AES-256-GCM under a fresh 256-bit data
key, and the data key is encrypted with AES-256-GCM under the key-encryption key (KEK). Both use the
``kid`` as associated data, so a wrapped blob cannot be moved to another key row.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction
from django.utils import timezone
from jwcrypto import jwk

from tokens.models import SigningKey

logger = logging.getLogger(__name__)

NONCE_BYTES = 12


class KeyDecryptionError(ImproperlyConfigured):
    """A stored private key cannot be unwrapped with any configured KEK: a wrong ``UAA_KEK``."""


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
    """What the envelope helpers need of a stored key: ``SigningKey`` and the ledger's ``AuditKey``."""

    kid: str
    kek_id: str
    wrapped_private_key: bytes | memoryview
    wrapped_data_key: bytes | memoryview


def wrap_private_key(*, der: bytes, kid: str, kek: KeyEncryptionKey) -> tuple[bytes, bytes]:
    """Encrypt ``der`` under a fresh data key and wrap that data key under ``kek``."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    wrapped_private = nonce + AESGCM(data_key).encrypt(nonce, der, kid.encode())
    kek_nonce = os.urandom(NONCE_BYTES)
    wrapped_data_key = kek_nonce + AESGCM(kek.key).encrypt(kek_nonce, data_key, kid.encode())
    return wrapped_private, wrapped_data_key


def _unwrap_data_key(key: WrappedKey) -> bytes:
    """The key's data key, trying the KEK it names first, then every configured KEK."""
    keks = sorted(configured_keks(), key=lambda k: k.kek_id != key.kek_id)
    wrapped = bytes(key.wrapped_data_key)
    for kek in keks:
        try:
            return AESGCM(kek.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key.kid.encode())
        except InvalidTag:
            continue
    raise KeyDecryptionError(
        f"No configured UAA_KEK can decrypt key {key.kid} (wrapped under KEK {key.kek_id}). "
        "Check UAA_KEK / UAA_KEK_FILE: UAA will not sign with a new, unpublished key instead."
    )


def unwrap_private_key(key: WrappedKey) -> bytes:
    """Recover the PKCS#8 DER private key."""
    blob = bytes(key.wrapped_private_key)
    return AESGCM(_unwrap_data_key(key)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], key.kid.encode())


def rewrap_data_key(key: WrappedKey, kek: KeyEncryptionKey) -> bytes:
    """``key``'s data key, unwrapped with whichever configured KEK wrapped it, wrapped under ``kek``."""
    data_key = _unwrap_data_key(key)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek.key).encrypt(nonce, data_key, key.kid.encode())


def create_signing_key(*, algorithm: str, now: datetime, state: str = SigningKey.State.NEXT) -> SigningKey:
    """Generate a key pair, wrap the private half under the current KEK and store it."""
    private_key = _generate_private_key(algorithm)
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = jwk.JWK.from_pyca(private_key.public_key())
    kid = public.thumbprint()
    kek = configured_keks()[0]
    wrapped_private, wrapped_data_key = wrap_private_key(der=der, kid=kid, kek=kek)
    public_jwk = {**public.export_public(as_dict=True), "kid": kid, "alg": algorithm, "use": "sig"}
    return SigningKey.objects.create(
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


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    algorithm: str
    jwk: jwk.JWK


def load_private_jwk(key: SigningKey) -> LoadedKey:
    private = serialization.load_der_private_key(unwrap_private_key(key), password=None)
    loaded = jwk.JWK.from_pyca(private)
    return LoadedKey(kid=key.kid, algorithm=key.algorithm, jwk=loaded)


_cache_lock = threading.Lock()
_unwrapped: dict[str, LoadedKey] = {}


def clear_key_cache() -> None:
    with _cache_lock:
        _unwrapped.clear()


def ensure_active_key(*, algorithm: str) -> SigningKey:
    """The active key for ``algorithm``; a database without one heals itself (tokens.rotation)."""
    from tokens.rotation import ensure_active_key as heal

    return heal(algorithm=algorithm, now=timezone.now())


def _active_kid(algorithm: str) -> str | None:
    """``SigningKey.objects.active().for_algorithm(algorithm)``'s kid, as one plain indexed query.

    This runs for every token issued; the ORM's query compilation costs more than the query itself.
    """
    table = connection.ops.quote_name(SigningKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT kid FROM {table} WHERE state = %s AND algorithm = %s",  # noqa: S608 - our own table
            [SigningKey.State.ACTIVE, algorithm],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def active_signing_key(algorithm: str) -> LoadedKey:
    """The active private key for ``algorithm``.

    Which key is active is read from the database on every call (one indexed query), so a rotation or
    a revocation takes effect on every process at once; only the unwrapped key material is cached.
    """
    kid = _active_kid(algorithm)
    if kid is None:
        kid = ensure_active_key(algorithm=algorithm).kid
    loaded = _unwrapped.get(kid)
    if loaded is None:
        loaded = load_private_jwk(SigningKey.objects.get(kid=kid))
        with _cache_lock:
            _unwrapped[kid] = loaded
    return loaded


def published_public_key(kid: str) -> jwk.JWK | None:
    """The public key for ``kid`` if it is published right now (next, active or retired), else ``None``."""
    row = SigningKey.objects.publishable().filter(kid=kid).values_list("public_jwk", flat=True).first()
    return jwk.JWK(**row) if row else None


def clear_public_key_cache() -> None:
    """Nothing to clear: published keys are read from the database on every verification."""


def verify_stored_keys() -> int:
    """Unwrap every published key with the configured KEKs; raise ``KeyDecryptionError`` on a failure.

    Run at start-up (``manage.py bootstrap``), so a wrong ``UAA_KEK`` stops the deploy loudly instead of
    surfacing later as failed token requests.
    """
    count = 0
    for key in SigningKey.objects.publishable():
        unwrap_private_key(key)
        count += 1
    return count


def rewrap_keys(model: type[models.Model]) -> int:
    """Re-wrap every stored private key of ``model`` (signing or audit keys) under the current KEK.

    Older KEKs must still be configured. Each key's data key is re-encrypted in its own small
    transaction; the private key itself is untouched, so signing and verification continue throughout.
    """
    current = configured_keks()[0]
    count = 0
    for key_id in model._default_manager.exclude(kek_id=current.kek_id).values_list("pk", flat=True):
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
