"""Audit keys: the Ed25519 keys that sign the ledger's tree heads (RFC 8032, published as RFC 8037 JWKs).

Separate from the token signing keys, wrapped under ``UAA_KEK`` with the same envelope helpers
(tokens/envelope.py, purpose "audit" in the associated data), rotatable. A retired audit key stays
published forever: an auditor verifies old tree heads with it years later. Like signing keys, an audit
key is published or used only once this process has proven it (tokens.keys.proven_key).
"""

from __future__ import annotations

import threading
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.db import transaction

from tokens.envelope import associated_data, configured_keks, rewrap_keys, wrap_private_key
from tokens.keys import load_proven_private_key, proven_key, require_proven
from tokens.ledger.records import append_record
from tokens.models import AuditKey, LedgerRecord
from tokens.verifier import b64url, jwk_thumbprint

_cache_lock = threading.Lock()
_private: dict[str, ed25519.Ed25519PrivateKey] = {}  # the active audit key's private half, nothing else


def create_audit_key(*, now: datetime, actor: str = "") -> AuditKey:
    """A new active audit key; the caller retires the previous one in the same transaction. ``actor`` is
    the ``sub`` of the admin who asked, named by the record."""
    private_key = ed25519.Ed25519PrivateKey.generate()
    raw_public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    public_jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw_public)}
    kid = jwk_thumbprint(public_jwk)
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    kek = configured_keks()[0]
    stored_jwk = {**public_jwk, "kid": kid, "alg": AuditKey.algorithm, "use": "sig"}
    aad = associated_data(
        purpose=AuditKey.purpose, kid=kid, algorithm=AuditKey.algorithm, public_jwk=stored_jwk
    )
    wrapped_private, wrapped_data_key = wrap_private_key(der=der, aad=aad, kek=kek)
    key = AuditKey.objects.create(
        kid=kid,
        public_jwk=stored_jwk,
        wrapped_private_key=wrapped_private,
        wrapped_data_key=wrapped_data_key,
        kek_id=kek.kek_id,
        created_at=now,
    )
    append_record(event=LedgerRecord.Event.AUDIT_KEY_CREATED, at=now, sub=actor, subject=kid)
    return key


def locked_active_audit_key(*, now: datetime) -> AuditKey:
    """The active audit key, row-locked until the transaction ends (the sealing lock); created if none."""
    key = AuditKey.objects.select_for_update().active().first()
    return key or create_audit_key(now=now)


@transaction.atomic
def rotate_audit_key(*, now: datetime, actor: str = "") -> AuditKey:
    """Retire the active audit key and start signing with a new one (the next seal uses it); both records
    name ``actor``, the ``sub`` of the admin who asked (empty from the command line)."""
    old = AuditKey.objects.select_for_update().active().first()
    if old is not None:
        old.state = AuditKey.State.RETIRED
        old.retired_at = now
        old.save(update_fields=["state", "retired_at"])
        with _cache_lock:
            _private.pop(old.kid, None)  # it signs nothing any more
        append_record(event=LedgerRecord.Event.AUDIT_KEY_RETIRED, at=now, sub=actor, subject=old.kid)
    return create_audit_key(now=now, actor=actor)


def sign(key: AuditKey, message: bytes) -> bytes:
    """Ed25519 signature of ``message`` by the proven ``key``; only the active key's private half is
    cached (per process, by ``kid``). Raises ``KeyDecryptionError`` if the key fails its proof."""
    private = _private.get(key.kid)
    if private is None:
        loaded = load_proven_private_key(key)
        if not isinstance(loaded, ed25519.Ed25519PrivateKey):
            raise TypeError(f"audit key {key.kid} is not an Ed25519 key")
        private = loaded
        with _cache_lock:
            _private.clear()
            _private[key.kid] = private
    return private.sign(message)


def audit_jwks() -> dict[str, list[dict[str, object]]]:
    """RFC 7517 JWK Set of every proven audit key, oldest first (none is ever removed), public members
    only (RFC 8037 §2: ``d`` is private), derived from the proven private half."""
    proven = (proven_key(key) for key in AuditKey.objects.order_by("created_at"))
    return {"keys": [dict(key.public) for key in proven if key is not None]}


def rewrap_audit_keys() -> int:
    """Re-wrap every audit key's data key under the current KEK (``manage.py rewrap_signing_keys``)."""
    return rewrap_keys(AuditKey)


def verify_audit_keys() -> int:
    """Prove every audit key (``manage.py bootstrap``); raises ``KeyDecryptionError`` on a wrong KEK or
    a row UAA did not write."""
    return require_proven(AuditKey.objects.all())
