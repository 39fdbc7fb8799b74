"""Re-wrap stored private keys under associated data that binds them to their row (issue 8, item 4).

Keys wrapped before this migration used only the ``kid`` as AES-GCM associated data. From now on both
encryptions bind purpose (signing or audit), kid, algorithm and the RFC 7638 thumbprint of the stored
public key (tokens.keys.associated_data), and the running server accepts nothing else: there is no
"old format" switch a database attacker could flip. This migration is the one place the old form is
read, once per database, with the KEK from the environment (``UAA_KEK`` / ``UAA_KEK_FILE``, as the
server reads it). Before re-wrapping a key it checks what the server will check from now on: the
private half unwraps under a configured KEK, its type fits the algorithm, its public half is the stored
``public_jwk`` and its thumbprint is the ``kid``; and no kid is both a signing and an audit key (blobs
copied across tables). A published signing key or an audit key that fails stops the migration, naming
the kid; nothing is changed then (docs/key-rotation.md says what to do). Expired and revoked signing
keys never sign or verify again: they are re-wrapped when they can be and otherwise left as they are.

The crypto below is a frozen copy, so later changes to tokens.keys cannot change what this did.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import migrations
from jwcrypto import jwk
from jwcrypto.common import JWException

NONCE = 12
CONTEXT = b"uaa key-wrap v2\n"
PUBLIC_MEMBERS = frozenset({"kty", "kid", "alg", "use", "key_ops", "n", "e", "crv", "x", "y"})
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
INERT = {"expired", "revoked"}


def _thumbprint(public_jwk: Any) -> str:
    try:
        members = {name: public_jwk[name] for name in THUMBPRINT_MEMBERS[public_jwk["kty"]]}
        return str(jwk.JWK(**members).thumbprint())
    except (KeyError, TypeError, ValueError, JWException) as exc:
        raise ValueError("not a public key") from exc


def new_aad(purpose: str, kid: str, algorithm: str, public_jwk: Any) -> bytes:
    bound = {"alg": algorithm, "jkt": _thumbprint(public_jwk), "kid": kid, "purpose": purpose}
    return CONTEXT + json.dumps(bound, sort_keys=True, separators=(",", ":")).encode()


def old_aad(kid: str) -> bytes:
    return kid.encode()


def _open(row: Any, keks: Any, aad: bytes) -> tuple[Any, bytes, bytes] | None:
    """(kek, data key, DER private key) if ``row``'s blobs open under ``aad`` with a configured KEK."""
    wrapped_data_key = bytes(row.wrapped_data_key)
    blob = bytes(row.wrapped_private_key)
    for kek in sorted(keks, key=lambda k: k.kek_id != row.kek_id):
        try:
            data_key = AESGCM(kek.key).decrypt(wrapped_data_key[:NONCE], wrapped_data_key[NONCE:], aad)
            der = AESGCM(data_key).decrypt(blob[:NONCE], blob[NONCE:], aad)
        except (InvalidTag, ValueError):
            continue
        return kek, data_key, der
    return None


def _fits(private: Any, algorithm: str) -> bool:
    if algorithm == "RS256":
        return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
    if algorithm == "ES256":
        return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    return algorithm == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey)


def _describes(der: bytes, *, kid: str, algorithm: str, public_jwk: Any) -> bool:
    """The private key is the one the row describes: type, thumbprint = kid, public_jwk."""
    try:
        private = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    if not _fits(private, algorithm):
        return False
    public = jwk.JWK.from_pyca(private.public_key())  # type: ignore[union-attr]
    derived = {**public.export_public(as_dict=True), "kid": kid, "alg": algorithm, "use": "sig"}
    stored = public_jwk if isinstance(public_jwk, dict) else {}
    published = {name: value for name, value in stored.items() if name in PUBLIC_MEMBERS}
    return public.thumbprint() == kid and published == derived


def _seal(row: Any, kek: Any, data_key: bytes, der: bytes, aad: bytes) -> None:
    nonce, kek_nonce = os.urandom(NONCE), os.urandom(NONCE)
    row.wrapped_private_key = nonce + AESGCM(data_key).encrypt(nonce, der, aad)
    row.wrapped_data_key = kek_nonce + AESGCM(kek.key).encrypt(kek_nonce, data_key, aad)
    row.kek_id = kek.kek_id
    row.save(update_fields=["wrapped_private_key", "wrapped_data_key", "kek_id"])


def _rows(apps: Any) -> list[tuple[str, Any, str, bool]]:
    """(purpose, row, algorithm, live) for every stored key; live keys must convert or stop us."""
    signing = apps.get_model("tokens", "SigningKey")
    audit = apps.get_model("tokens", "AuditKey")
    rows = [("signing", key, key.algorithm, key.state not in INERT) for key in signing.objects.order_by("pk")]
    rows += [("audit", key, "EdDSA", True) for key in audit.objects.order_by("pk")]
    return rows


def _keks() -> Any:
    from tokens.keys import configured_keks  # reads UAA_KEK / UAA_KEK_FILE exactly as the server does

    return configured_keks()


def bind(apps: Any, schema_editor: Any) -> None:
    rows = _rows(apps)
    if not rows:
        return  # a new database: nothing wrapped yet, no KEK needed
    keks = _keks()
    kids = {purpose: {row.kid for p, row, _, _ in rows if p == purpose} for purpose in ("signing", "audit")}
    problems, plan = [], []
    for purpose, row, algorithm, live in rows:
        other = "audit" if purpose == "signing" else "signing"
        try:
            aad = new_aad(purpose, row.kid, algorithm, row.public_jwk)
        except ValueError:
            aad = None
        if aad is not None and _open(row, keks, aad) is not None:
            continue  # already in the new form
        if aad is None:
            problem = "its public_jwk is not a public key"
        elif row.kid in kids[other]:
            problem = f"its kid is also an {other} key's (wrapped blobs copied across tables)"
        elif (opened := _open(row, keks, old_aad(row.kid))) is None:
            problem = "no configured UAA_KEK unwraps it"
        elif not _describes(opened[2], kid=row.kid, algorithm=algorithm, public_jwk=row.public_jwk):
            problem = "its private half is not the key its row describes (kid, algorithm, public_jwk)"
        else:
            plan.append((row, opened, aad))
            continue
        if live:
            state = getattr(row, "state", "audit")
            problems.append(f"  {purpose} key {row.kid} ({state}): {problem}")
    if problems:
        raise RuntimeError(
            "tokens.0007 re-wraps the stored private keys under the new associated data and refuses:\n"
            + "\n".join(problems)
            + "\nNothing was changed. If UAA_KEK (or UAA_KEK_FILE) is not the KEK these keys were wrapped "
            "under, set it and run migrate again. Otherwise the row was not written by UAA: someone with "
            'database access wrote or altered it. See docs/key-rotation.md ("Upgrading to bound key '
            'wrapping") before changing anything.'
        )
    for row, opened, aad in plan:  # nothing is written unless every live key can be converted
        _seal(row, *opened, aad)


def unbind(apps: Any, schema_editor: Any) -> None:
    """Back to the kid-only associated data, for a rollback to the release before this migration."""
    rows = _rows(apps)
    if not rows:
        return
    keks = _keks()
    for purpose, row, algorithm, _ in rows:
        try:
            opened = _open(row, keks, new_aad(purpose, row.kid, algorithm, row.public_jwk))
        except ValueError:
            opened = None
        if opened is not None:
            _seal(row, *opened, old_aad(row.kid))


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0006_ledger_mfa_events"),
    ]

    operations = [
        migrations.RunPython(bind, unbind, elidable=False),
    ]
