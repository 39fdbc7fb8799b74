"""RFC 7636 Proof Key for Code Exchange: every PKCE rule UAA adds to django-oauth-toolkit's.

UAA accepts only ``S256`` (RFC 9700 §2.1.1). A challenge is BASE64URL-ENCODE(SHA256(ASCII(verifier)))
without padding (§4.2, §3): exactly 43 characters of the base64url alphabet that decode to 32 octets.
Anything else can never match a verifier, so it is refused at the authorization endpoint (§4.4.1:
``check_authorization_request``), where the client developer sees the error, instead of yielding a code no
token request can redeem. At the token endpoint a ``code_verifier`` outside the §4.1 grammar is
``invalid_request`` (``check_token_request``); the comparison with the stored challenge (§4.6) is
oauthlib's, ``invalid_grant`` when they differ; a verifier for a code issued without a challenge is
``invalid_grant`` (``check_code_exchange``, RFC 9700 §4.8.2).

Who must send PKCE (``pkce_required``): every client, unless its ``require_pkce`` is off. RFC 9700 §2.1.1
lets a confidential OpenID Connect client use ``nonce`` instead: with ``require_pkce`` off, a confidential
client may leave PKCE out of a request whose scope has ``openid`` and that carries a ``nonce``, and only
of such a request. A public client always sends it (the model refuses ``require_pkce`` off for one). A
request that sends PKCE is checked the same way whoever sends it, and its code then needs the verifier.
Discovery publishes ``METHODS_SUPPORTED`` (RFC 8414 §2 ``code_challenge_methods_supported``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from oauthlib.oauth2.rfc6749 import errors as oauthlib_errors

CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # §4.1: code-verifier = 43*128unreserved
S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")  # §4.2 with §3: unpadded base64url of 32 octets
SHA256_OCTETS = 32
METHODS_SUPPORTED = ("S256",)

METHOD_REQUIRED = "PKCE is required: send code_challenge with code_challenge_method=S256."
VERIFIER_WITHOUT_CHALLENGE = "The code was issued without PKCE: send no code_verifier."
CHALLENGE_MALFORMED = (
    "code_challenge must be the unpadded base64url SHA-256 of the code_verifier (43 characters, RFC 7636)."
)
VERIFIER_MALFORMED = "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)."


def pkce_required(*, client: Any, scopes: Sequence[str], nonce: object) -> bool:
    """Whether an authorization request of ``client`` for ``scopes`` must send PKCE: always, unless the
    client is a confidential one with ``require_pkce`` off and the request is an OpenID Connect one
    (``openid`` among its scopes) with a ``nonce`` (RFC 9700 §2.1.1)."""
    if code_exchange_requires_pkce(client):
        return True
    return "openid" not in scopes or not (isinstance(nonce, str) and nonce)


def code_exchange_requires_pkce(client: Any) -> bool:
    """Whether every code of ``client`` must have been issued with a challenge: unless it is a
    confidential client with ``require_pkce`` off. A code issued with one needs its verifier regardless."""
    return bool(
        client is None
        or getattr(client, "client_type", None) != "confidential"
        or getattr(client, "require_pkce", True)
    )


def check_authorization_request(
    *,
    method: object,
    challenge: object,
    client: Any = None,
    scopes: Sequence[str] = (),
    nonce: object = None,
    request: Any = None,
) -> None:
    """§4.3 with RFC 9700 §2.1.1: PKCE sent (either parameter) is ``code_challenge_method=S256`` with a
    well-formed ``code_challenge`` (§4.2), whoever sends it; PKCE left out only where ``pkce_required``
    allows it (no ``client``: required). Else ``invalid_request`` (§4.4.1), for oauthlib's ``request``
    when given."""
    if method is None and challenge is None:
        if pkce_required(client=client, scopes=scopes, nonce=nonce):
            raise oauthlib_errors.InvalidRequestError(description=METHOD_REQUIRED, request=request)
        return
    if method not in METHODS_SUPPORTED:
        raise oauthlib_errors.InvalidRequestError(description=METHOD_REQUIRED, request=request)
    if not is_well_formed_s256_challenge(challenge if isinstance(challenge, str) else ""):
        raise oauthlib_errors.InvalidRequestError(description=CHALLENGE_MALFORMED, request=request)


def check_code_exchange(request: Any, *, challenge: str | None) -> None:
    """RFC 9700 §4.8.2 (PKCE downgrade): a token request with a ``code_verifier`` for a code whose
    authorization request had no ``code_challenge`` is rejected (``invalid_grant``): the verifier proves
    nothing, and accepting it would hide the code's having been issued without PKCE."""
    if challenge is None and request.code_verifier is not None:
        raise oauthlib_errors.InvalidGrantError(description=VERIFIER_WITHOUT_CHALLENGE, request=request)


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
