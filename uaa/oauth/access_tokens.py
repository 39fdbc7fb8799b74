"""django-oauth-toolkit's ``ACCESS_TOKEN_GENERATOR``: the RFC 9068 access token of each grant.

The format is tokens/formats/rfc9068.py's; what only the grant knows (the sign-in it comes from, for
``auth_time``, ``amr`` and ``acr``) comes from its ``GrantContext`` (uaa/oauth/grant_context.py).
"""

from __future__ import annotations

import time

from oauthlib.common import Request as OAuthlibRequest

from tokens.formats import rfc9068
from uaa.oauth.grant_context import grant_context


def generate_access_token(request: OAuthlibRequest, refresh_token: bool = False) -> str:
    """oauthlib's token generator: a signed RFC 9068 access token for ``request``. Its ``exp`` is noted on
    the grant context, so that the validator stores the record to expire then (``_create_access_token``)."""
    context = grant_context(request)
    claims = rfc9068.access_token_claims(
        request, now=int(time.time()), auth_time=context.auth_time, amr=context.amr, acr=context.acr
    )
    context.access_token_exp = claims["exp"]
    return rfc9068.sign_access_token(claims=claims)
