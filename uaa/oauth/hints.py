"""OIDC Core §3.1.2.1 ``id_token_hint``: which End-User an authorization request is about.

The hint must be "an ID Token previously issued by the Authorization Server": a JWT of the ID token's
``typ``, signed by a key UAA publishes, by that key's own algorithm (tokens/signing.py ``verify_jwt``, RFC
8725 §3.1), whose ``iss`` is UAA's and which names a ``sub``. Anything else is ``invalid_request``
(``InvalidHint``): a forged or foreign token, one of UAA's access tokens, alg none. Its expiry is not
checked: the hint is about "the End-User's current or past authenticated session", and the RP holds an ID
token long after its ``exp``; nor is its ``aud`` (the OP "need not be listed as an audience", and a hint
only narrows the request: the code is always the signed-in user's). A key that is no longer published
(expired or revoked, docs/key-rotation.md) no longer verifies its hints.

What the hint decides is ``uaa.oauth.interaction.decide``'s: "If the End-User identified by the ID Token is
logged in or is logged in by the request, then the Authorization Server returns a positive response;
otherwise, it SHOULD return an error, such as login_required" — UAA answers ``login_required`` when the
signed-in user is not the hinted one, with or without ``prompt=none``.

``login_hint`` is the sign-in page's (accounts/views.py: it fills in the e-mail field).
"""

from __future__ import annotations

from django.conf import settings

from tokens.formats.id_token import TYP as ID_TOKEN_TYP
from tokens.signing import verify_jwt

HINT_REFUSED = "id_token_hint must be an ID token issued by this server."


class InvalidHint(ValueError):
    """The ``id_token_hint`` is not an ID token UAA issued."""

    def __init__(self) -> None:
        super().__init__(HINT_REFUSED)


def hinted_subject(value: object) -> str | None:
    """The ``sub`` of the ID token ``value`` (``None`` when the request has no hint); ``InvalidHint`` when
    it is not one UAA issued."""
    if value is None or value == "":
        return None
    claims = verify_jwt(value, typ=ID_TOKEN_TYP) if isinstance(value, str) else None
    if claims is None or claims.get("iss") != settings.UAA_ISSUER:
        raise InvalidHint()
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidHint()
    return subject
