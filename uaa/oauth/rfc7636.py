"""RFC 7636 Proof Key for Code Exchange: the grammar of ``code_verifier`` and of an S256 ``code_challenge``.

UAA accepts only ``S256`` (RFC 9700 §2.1.1), so a challenge is BASE64URL-ENCODE(SHA256(ASCII(verifier)))
without padding (§4.2, §3): exactly 43 characters of the base64url alphabet that decode to 32 octets.
Anything else can never match a verifier, so it is refused at the authorization endpoint (§4.4.1), where
the client developer sees the error, instead of yielding a code no token request can redeem.
"""

from __future__ import annotations

import base64
import binascii
import re

CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # §4.1: code-verifier = 43*128unreserved
S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")  # §4.2 with §3: unpadded base64url of 32 octets
SHA256_OCTETS = 32


def is_well_formed_verifier(verifier: str) -> bool:
    return CODE_VERIFIER.fullmatch(verifier) is not None


def is_well_formed_s256_challenge(challenge: str) -> bool:
    """43 base64url characters in the canonical encoding of a SHA-256 digest (the last one carries 4 bits)."""
    if S256_CHALLENGE.fullmatch(challenge) is None:
        return False
    try:
        octets = base64.urlsafe_b64decode(challenge + "=")
    except (binascii.Error, ValueError):
        return False
    return (
        len(octets) == SHA256_OCTETS and base64.urlsafe_b64encode(octets).decode("ascii") == challenge + "="
    )
