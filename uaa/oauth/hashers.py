"""A fast, salted hasher for high-entropy client secrets (never for passwords).

Client secrets are 128 random characters, so a slow password hash adds nothing but latency to every
token request. The digest is SHA-256 over salt and secret, compared in constant time.

The hasher is registered in ``PASSWORD_HASHERS`` only so that django-oauth-toolkit can hash a new secret
(``make_password(secret, hasher="uaa_sha256")``) and recognise a stored one as hashed (``identify_hasher``).
Django's password API — the user path: ``User.check_password``, ``authenticate()``, the sign-in page — never
verifies with it (``verify`` is always false), and it refuses to be the default hasher, so ``set_password``
cannot store a password with it. Client authentication verifies through ``verify_client_secret`` alone
(``UAAOAuth2Validator._check_secret``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from django.contrib.auth.hashers import BasePasswordHasher, get_hashers, mask_hash
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import get_random_string

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

ALGORITHM = "uaa_sha256"


def _digest(secret: str, salt: str) -> str:
    return f"{ALGORITHM}${salt}${hashlib.sha256(f'{salt}${secret}'.encode()).hexdigest()}"


def is_client_secret_hash(encoded: str) -> bool:
    return encoded.startswith(f"{ALGORITHM}$") and encoded.count("$") == 2


# What a client_id no client has is verified against (``UAAOAuth2Validator.authenticate_client``): a hash of
# a random secret by this hasher with a salt as long as a real one's, so that an unknown client_id costs the
# hash and the comparison a wrong secret costs (issue 12: the time does not tell a caller which it was).
UNKNOWN_CLIENT_SECRET = _digest(get_random_string(128), get_random_string(22))


def verify_client_secret(*, provided: str, stored: str) -> bool:
    """RFC 6749 §2.3.1: whether ``provided`` is the client secret whose fast hash is ``stored``."""
    if not is_client_secret_hash(stored):
        return False
    _, salt, _ = stored.split("$", 2)
    return hmac.compare_digest(_digest(provided, salt).encode(), stored.encode())


class ClientSecretHasher(BasePasswordHasher):
    algorithm = ALGORITHM

    def salt(self) -> str:
        return get_random_string(22)

    def encode(self, password: str, salt: str) -> str:
        if get_hashers()[0].algorithm == self.algorithm:
            raise ImproperlyConfigured(
                "uaa.oauth.hashers.ClientSecretHasher is for client secrets only; it must not be the first "
                "(default) entry of PASSWORD_HASHERS, which hashes user passwords."
            )
        return _digest(password, salt)

    def decode(self, encoded: str) -> dict[str, Any]:
        algorithm, salt, digest = encoded.split("$", 2)
        return {"algorithm": algorithm, "salt": salt, "hash": digest}

    def verify(self, password: str, encoded: str) -> bool:
        """Never true: Django's password API is the user path. Client secrets: ``verify_client_secret``."""
        return False

    def safe_summary(self, encoded: str) -> dict[StrOrPromise, Any]:
        decoded = self.decode(encoded)
        return {
            "algorithm": decoded["algorithm"],
            "salt": mask_hash(decoded["salt"]),
            "hash": mask_hash(decoded["hash"]),
        }

    def must_update(self, encoded: str) -> bool:
        return False

    def harden_runtime(self, password: str, encoded: str) -> None:
        return None
