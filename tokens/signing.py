"""Signing and verification of JWTs with the stored keys: what tokens/formats/ (RFC 9068 access tokens, OIDC
Core §2 ID tokens) and the token checks sign and verify with.

A token is signed by the active key of its algorithm, read under a shared lock held until the caller's
transaction ends (:func:`active_signing_key`). Verification follows RFC 8725 §3.1 and §3.11: the algorithm
is the one the key was made for (the stored key's, never the token header's choice), the key is one
published and proven right now (tokens.keys.trusted_public_key), and the token's ``typ`` must be the one
the caller expects, so that one kind of JWT is never accepted in place of another. A header that names a
``crit`` extension (RFC 7515 §4.1.11: UAA understands none) or ``b64`` (RFC 7797) is refused, and so is
anything but the compact serialization (RFC 7519 §7.2) spelt the one way its bytes encode (no padding; no
stray bits, which PyJWT refuses: a token's checksum is its name in the database), and JSON with NaN or
Infinity.

ECDSA signatures are malleable ((r, s) and (r, n - s) both verify, and ``cryptography`` signs either):
UAA accepts both, as every JOSE library does; the copy is a different string, so it names no stored
record (introspection, userinfo and revocation find tokens by their checksum) and grants nothing the
original did not.

The JWS itself is PyJWT's (its JWS layer only: the claims are tokens/formats/'s, and expiry is the token
record's), with the ``cryptography`` key objects tokens.keys loads once per process; docs/performance.md
("The JOSE libraries") says why PyJWT and not jwcrypto, which UAA keeps for JWK import, export and
thumbprints.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.utils import timezone
from jwt.api_jws import PyJWS
from jwt.exceptions import PyJWTError

from tokens.keys import (
    LoadedKey,
    ProvenKey,
    cached_signing_key,
    locked_active_kid,
    private_signing_key,
    trusted_public_key,
)
from tokens.models import SigningKey
from tokens.rotation import lock_active_kid

# PyJWT's JWS layer, knowing only the algorithms UAA's keys are made for: "none" and HS* are not even
# registered with it. Which one verifies a token is still the stored key's: verify_jwt allows that one alone.
_jws = PyJWS(algorithms=list(SigningKey.Algorithm.values))


class SigningKeyChanged(Exception):
    """A key signed with optimistically (:func:`optimistic`) is no longer the active one: the token it signed
    must not be issued. The caller starts again without the optimism (tokens.keys.locked_active_kid)."""


# The kids signed with optimistically in the current context, to be confirmed by the write that stores
# the token (:func:`unconfirmed_kids`); None outside :func:`optimistic`.
_unconfirmed: ContextVar[list[str] | None] = ContextVar("uaa_unconfirmed_signing_kids", default=None)


@contextmanager
def optimistic() -> Iterator[list[str]]:
    """Sign with the active key this process has cached, without reading it under a lock first.

    For a caller whose token is stored by one statement that confirms, under the shared lock, that every
    kid in the list it gets is still active and uncontradicted, and stores nothing if one is not (the
    token endpoint's client-credentials path: uaa/oauth/access_tokens.py ``store_statement``); it then
    raises :class:`SigningKeyChanged` and starts again without this. The guarantee stays the locked read's:
    no token is stored signed by a key whose revocation committed first, and a revocation waits for a
    token being stored with the key; the lock is held for that one statement only, not for the request.
    """
    kids: list[str] = []
    reset = _unconfirmed.set(kids)
    try:
        yield kids
    finally:
        _unconfirmed.reset(reset)


def unconfirmed_kids() -> list[str] | None:
    """The kids signed with under :func:`optimistic` so far, or ``None`` outside it."""
    return _unconfirmed.get()


def active_signing_key(algorithm: str) -> LoadedKey:
    """The active private key for ``algorithm``, for a token signed in the caller's transaction.

    Which key is active is read from the database on every call, under a shared lock (see
    tokens.keys.locked_active_kid), so a rotation or a revocation takes effect on every process at once and
    never in the middle of a token; only the unwrapped, proven private half of the active key is cached.
    Under :func:`optimistic` the cached key is used and noted for the storing statement to confirm; with
    none cached, :class:`SigningKeyChanged` sends the request the locked way, which caches it.
    """
    pending = _unconfirmed.get()
    if pending is not None:
        cached = cached_signing_key(algorithm)
        if cached is None:  # nothing cached (a first token, or the key moved on): the locked read loads
            raise SigningKeyChanged(algorithm)  # it, never a key a revocation may be destroying meanwhile
        pending.append(cached.kid)
        return cached
    kid = locked_active_kid(algorithm)
    if kid is None:  # no active key, or it was revoked while we waited: ask under the series lock
        kid = lock_active_kid(algorithm=algorithm, now=timezone.now())
    return private_signing_key(kid=kid, algorithm=algorithm)


def sign_jwt(*, claims: dict[str, Any], algorithm: str, typ: str) -> str:
    """Sign ``claims`` with the active key for ``algorithm``; the header carries ``kid`` and ``typ``.

    Call it inside the transaction that stores the token: the key is read under a shared lock held
    until that transaction ends (:func:`active_signing_key`).
    """
    key = active_signing_key(algorithm)
    payload = json.dumps(claims, default=str).encode()
    return _jws.encode(payload, key.private, algorithm=algorithm, headers={"kid": key.kid, "typ": typ})


def _media_type(value: object) -> str | None:
    """RFC 7515 §4.1.9: "application/" may be omitted, and media types compare case-insensitively."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value.removeprefix("application/")


def _storable(text: str) -> bool:
    """Text a key lookup can send to the database: no NUL, and no lone surrogate (a JSON "\\ud800"
    escape decodes to one, which no driver encodes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


# RFC 7515 §2 and §7.1: three base64url segments without padding ("=") or any other character. PyJWT
# (2.15) strips padding, then refuses a segment that is not the one encoding of its bytes (stray low bits).
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _refuse_constant(name: str) -> None:
    """RFC 8259 §6: NaN and Infinity are not JSON numbers (Python's json reads them unless told not to)."""
    raise ValueError(f"not JSON: {name}")


def _header(token: object) -> dict[str, Any] | None:
    """The protected header of a compact JWS (RFC 7515 §7.1); ``None`` for anything else (RFC 7519 §7.2: a
    JSON serialization, a JWE, an extra or a missing segment), for a header that is not a JSON object,
    and for one naming an extension: ``crit`` (RFC 7515 §4.1.11; UAA understands no extension, so it
    must refuse every one) or ``b64`` (RFC 7797, an unencoded payload; UAA never makes one)."""
    if not isinstance(token, str) or _COMPACT.fullmatch(token) is None:
        return None
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)), parse_constant=_refuse_constant
        )
    except (ValueError, TypeError, binascii.Error, RecursionError):  # RecursionError: JSON nested too deep
        return None
    if not isinstance(header, dict) or "crit" in header or "b64" in header:
        return None
    return header


def _key_for(header: dict[str, Any], *, typ: str) -> ProvenKey | None:
    """The published, proven key the header names, if its ``alg`` is that key's and ``typ`` is ``typ``."""
    kid = header.get("kid")
    if not isinstance(kid, str) or not _storable(kid) or _media_type(header.get("typ")) != _media_type(typ):
        return None
    key = trusted_public_key(kid)
    if key is None or header.get("alg") != key.algorithm:
        return None
    return key


def verification_key(token: str, *, typ: str) -> Any:
    """The JWK that verifies ``token``, if its header names a published key by that key's own
    algorithm and carries ``typ``; ``None`` otherwise (django-oauth-toolkit's ID token hint lookup, which
    verifies with jwcrypto: the JWK is one)."""
    header = _header(token)
    key = _key_for(header, typ=typ) if header is not None else None
    return key.jwk if key is not None else None


def verify_jwt(token: str, *, typ: str) -> dict[str, Any] | None:
    """Claims of ``token`` if it is a JWT of type ``typ`` with a valid signature by a published key,
    made with that key's algorithm; ``None`` otherwise, never an exception.

    ``typ`` is tokens.formats.rfc9068.TYP for access tokens (RFC 9068 §4), tokens.formats.id_token.TYP for
    ID tokens.
    Expiry is not checked here: callers hold the token record and check it there.
    """
    header = _header(token)
    key = _key_for(header, typ=typ) if header is not None else None
    if key is None:
        return None
    try:
        # PyJWT reads the header again and checks the signature with the stored key's algorithm alone.
        decoded = _jws.decode_complete(token, key.public_key, algorithms=[key.algorithm])
        # RFC 8259 §8.1: UTF-8, strictly; and JSON's numbers only.
        claims = json.loads(decoded["payload"].decode("utf-8"), parse_constant=_refuse_constant)
    except (PyJWTError, ValueError, TypeError, KeyError, RecursionError):
        return None
    if decoded["header"] != header:  # what was checked above is what was verified
        return None
    return claims if isinstance(claims, dict) else None
