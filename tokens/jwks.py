"""RFC 7517 JSON Web Key Set of the published keys (next, active, retired) that this process has proven."""

from __future__ import annotations

from collections.abc import Iterable

from tokens.keys import PUBLIC_MEMBERS, proven_key, retain_private_keys
from tokens.models import SigningKey

__all__ = ["PUBLIC_MEMBERS", "build_jwks", "public_jwk"]


def public_jwk(key: SigningKey) -> dict[str, object] | None:
    """RFC 7517 §4 public members of ``key``, derived from its proven private half; ``None`` if the
    row fails the proof (tokens/keys.py): a key UAA cannot show is its own is never published."""
    proven = proven_key(key)
    return dict(proven.public) if proven is not None else None


def build_jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, object]]]:
    """The JWK Set of ``keys`` (the publishable rows). Private halves of keys these rows show are no
    longer active leave this process's memory here too."""
    rows = list(keys)
    retain_private_keys(key.kid for key in rows if key.state == SigningKey.State.ACTIVE)
    published = (public_jwk(key) for key in rows)
    return {"keys": [member for member in published if member is not None]}
