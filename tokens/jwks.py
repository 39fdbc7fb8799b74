"""RFC 7517 JSON Web Key Set of the published keys (next, active, retired)."""

from __future__ import annotations

from collections.abc import Iterable

from tokens.models import SigningKey

# RFC 7517 §4 / RFC 7518 §6: the members a public JWK may carry. Anything else (d, p, q, dp, dq, qi,
# oth, k) is private and can never be published, whatever is stored.
PUBLIC_MEMBERS = frozenset({"kty", "kid", "alg", "use", "key_ops", "n", "e", "crv", "x", "y"})


def public_jwk(key: SigningKey) -> dict[str, object]:
    return {name: value for name, value in key.public_jwk.items() if name in PUBLIC_MEMBERS}


def build_jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, object]]]:
    return {"keys": [public_jwk(key) for key in keys]}
