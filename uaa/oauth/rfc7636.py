"""RFC 7636 Proof Key for Code Exchange: every PKCE rule UAA adds to django-oauth-toolkit's.

UAA accepts only ``S256`` (RFC 9700 §2.1.1), and requires it on every authorization request, so a
challenge is BASE64URL-ENCODE(SHA256(ASCII(verifier))) without padding (§4.2, §3): exactly 43 characters
of the base64url alphabet that decode to 32 octets. Anything else can never match a verifier, so it is
refused at the authorization endpoint (§4.4.1: ``check_authorization_request``), where the client
developer sees the error, instead of yielding a code no token request can redeem. At the token endpoint
a ``code_verifier`` outside the §4.1 grammar is ``invalid_request`` (``check_token_request``); the
comparison with the stored challenge (§4.6) is oauthlib's, ``invalid_grant`` when they differ.
Discovery publishes ``METHODS_SUPPORTED`` (RFC 8414 §2 ``code_challenge_methods_supported``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # §4.1: code-verifier = 43*128unreserved
S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")  # §4.2 with §3: unpadded base64url of 32 octets
SHA256_OCTETS = 32
METHODS_SUPPORTED = ("S256",)

METHOD_REQUIRED = "PKCE is required: send code_challenge with code_challenge_method=S256."
CHALLENGE_MALFORMED = (
    "code_challenge must be the unpadded base64url SHA-256 of the code_verifier (43 characters, RFC 7636)."
)
VERIFIER_MALFORMED = "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)."


def check_authorization_request(*, method: object, challenge: object) -> None:
    """§4.3 with RFC 9700 §2.1.1: ``code_challenge_method=S256`` and a well-formed ``code_challenge`` (§4.2),
    else ``invalid_request`` (§4.4.1)."""
    if method not in METHODS_SUPPORTED:
        raise oauthlib_errors.InvalidRequestError(description=METHOD_REQUIRED)
    if not is_well_formed_s256_challenge(challenge if isinstance(challenge, str) else ""):
        raise oauthlib_errors.InvalidRequestError(description=CHALLENGE_MALFORMED)


def check_token_request(request: Any) -> None:
    """§4.1: a ``code_verifier`` that is present follows the grammar, else ``invalid_request``. (A missing
    one is oauthlib's: PKCE is required for the code, so it is ``invalid_request`` too.)"""
    verifier = request.code_verifier
    if verifier is not None and not is_well_formed_verifier(verifier):
        raise oauthlib_errors.InvalidRequestError(description=VERIFIER_MALFORMED, request=request)


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
