"""Envelope encryption under ``UAA_KEK``, for every stored private key: token signing keys and audit keys.

Each private key is serialized (PKCS#8 DER), encrypted with AES-256-GCM under a fresh 256-bit data
key, and the data key is encrypted with AES-256-GCM under the key-encryption key (KEK). Both
encryptions take the same associated data (:func:`associated_data`), which binds the two blobs to the
row that holds them: its purpose (a token signing key or an audit key: which table), ``kid``,
algorithm, and the RFC 7638 thumbprint of its stored ``public_jwk``. Blobs moved to another row, or a
row whose kid, algorithm or public key was changed, no longer decrypt.

The KEK comes from ``UAA_KEK`` or ``UAA_KEK_FILE``, never from the database; several may be configured
(current first) while a KEK rotation re-wraps the data keys (:func:`rewrap_keys`). Whether an unwrapped
key is what its row says is tokens/keys.py's proof.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from jwcrypto import jwk
from jwcrypto.common import JWException

from tokens.models import AuditKey, SigningKey

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
