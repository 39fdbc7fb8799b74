"""django-oauth-toolkit's ``ACCESS_TOKEN_GENERATOR``: the RFC 9068 access token of each grant.

The format is tokens/formats/rfc9068.py's; what only the grant knows (the sign-in it comes from, for
``auth_time``, ``amr`` and ``acr``) comes from its ``GrantContext`` (uaa/oauth/grant_context.py).
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from django.db import connection
from django.http import HttpRequest
from oauth2_provider.models import get_access_token_model
from oauthlib.common import Request as OAuthlibRequest

from tokens.formats import rfc9068
from tokens.keys import confirmed_kids_sql
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


# --- the client-credentials token in one statement (issue 12 item 2) -------------------------------------
def signs_optimistically(request: HttpRequest) -> bool:
    """Whether the token endpoint may answer ``request`` by tokens.signing.optimistic and
    :func:`store_statement`: a client-credentials request on PostgreSQL, whose data-modifying WITH stores
    the token, confirms its signing key and appends its record in one statement."""
    return connection.vendor == "postgresql" and request.POST.get("grant_type") == "client_credentials"


@cache
def _store_sql(kids: int) -> str:
    model = get_access_token_model()
    quote = connection.ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(f"%s::{field.db_type(connection)}" for field in fields)
    return (  # our own tables and columns; every value is a parameter
        f"confirmed AS ({confirmed_kids_sql(kids)}),"  # noqa: S608 - our own tables  # nosec B608
        f" event AS (INSERT INTO {quote(model._meta.db_table)} ({columns})"
        f" SELECT {values} WHERE (SELECT count(*) FROM confirmed) = %s RETURNING {quote('id')})"
    )


def store_statement(*, access_token: Any, kids: list[str]) -> tuple[str, list[Any]]:
    """The WITH queries that store ``access_token`` (an unsaved ``AccessToken``) only if every kid that
    signed for the request is still active and uncontradicted, share-locked meanwhile
    (tokens.keys.confirmed_kids_sql), for ``ledger.append_record(with_event=...)``: the token, the key's
    confirmation and the token's record are one statement, and nothing is stored if a key moved on. A
    revocation of the key waits for that statement's transaction only (tokens.rotation)."""
    unique = sorted(set(kids))
    model = get_access_token_model()
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    values = [field.get_db_prep_save(field.pre_save(access_token, True), connection) for field in fields]
    return _store_sql(len(unique)), [*unique, *values, len(unique)]
