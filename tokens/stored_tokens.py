"""The stored access-token record of a presented token, with its client and its user, in one plain query.

Introspection (tokens/introspection.py) and every bearer-token check (userinfo, the admin API:
uaa/oauth/validators.py ``_load_access_token``) look the record up by its checksum on each request.
django-oauth-toolkit does it with ``select_related("application", "user").filter(...).first()``, whose
compilation (three models' columns, the joins, the ordering ``first()`` adds) cost more than the query;
here the statement is written once per database vendor and the three instances are built from its row
as ``select_related`` builds them (tokens/rows.py).

Nothing is cached but the statement's text: the record, the client and the user (``is_active``,
``not_before``) are read from the database by the one statement on every call, so a revoked token, a
deactivated user or a user's revocation time is seen by the very next request, as before.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from oauth2_provider.models import get_access_token_model, get_application_model

from tokens.checksum import sha256_hex
from tokens.rows import RowShape, database

# The attribute a token built here carries: its ``user`` (and ``application``) came from the same
# statement as the token row, so they are as committed now (uaa/oauth/not_before.py relies on it).
LOADED_WITH_USER = "uaa_user_read_with_token"


@cache
def _statement(vendor: str) -> tuple[str, RowShape]:
    """The statement and its row's shape (per vendor: quoting differs)."""
    db = database()
    quote = db.ops.quote_name
    token_model, client_model, user_model = (
        get_access_token_model(),
        get_application_model(),
        get_user_model(),
    )
    shape = RowShape(db, (token_model, "t"), (client_model, "c"), (user_model, "u"))
    token_meta = token_model._meta
    application, user = token_meta.get_field("application"), token_meta.get_field("user")
    sql = (
        f"SELECT {shape.select} FROM {quote(token_meta.db_table)} t"  # noqa: S608 - our own tables  # nosec B608
        f" LEFT JOIN {quote(client_model._meta.db_table)} c"
        f" ON c.{quote(client_model._meta.pk.column)} = t.{quote(application.column)}"  # type: ignore[union-attr]
        f" LEFT JOIN {quote(user_model._meta.db_table)} u"
        f" ON u.{quote(user_model._meta.pk.column)} = t.{quote(user.column)}"  # type: ignore[union-attr,arg-type]
        f" WHERE t.{quote(token_meta.get_field('token_checksum').column)} = %s"  # type: ignore[union-attr]
    )
    return sql, shape


def load_access_token(token: str) -> Any | None:
    """The ``AccessToken`` stored for ``token`` (by its checksum), its ``application`` and ``user`` read in
    the same statement (either ``None`` when the token has none), or ``None`` if no record is stored or
    the client or user it names does not exist."""
    db = database()
    sql, shape = _statement(db.vendor)
    with db.cursor() as cursor:
        cursor.execute(sql, [sha256_hex(token)])
        row = cursor.fetchone()
    if row is None:
        return None
    record, client, user = shape.instances(db, row)
    if record is None:
        return None
    if (record.application_id is not None and client is None) or (
        record.user_id is not None and user is None
    ):
        # A reference to a row that is not there (constraints deferred or dropped by whoever can write
        # the tables): DOT's select_related read it as a token without a client, which is trusted as no
        # client at all. A token whose client or user is gone is no token.
        return None
    meta = get_access_token_model()._meta
    meta.get_field("application").set_cached_value(record, client)  # type: ignore[union-attr]
    meta.get_field("user").set_cached_value(record, user)  # type: ignore[union-attr]
    setattr(record, LOADED_WITH_USER, True)
    return record
