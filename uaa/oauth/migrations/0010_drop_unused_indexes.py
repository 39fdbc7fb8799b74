"""Drop the PostgreSQL indexes no lookup uses (issue 12 item 2), which every INSERT still maintained.

Django gives a unique or indexed CharField on PostgreSQL a second, ``varchar_pattern_ops`` index (``_like``)
for LIKE and prefix queries. UAA looks these columns up by equality only (a token's or a code's checksum,
a client_id), which the unique index answers (EXPLAIN: ``Index Scan using ..._uniq`` / ``_key``). And
``client_secret`` is indexed twice by django-oauth-toolkit (``db_index``), though a stored secret is a
salted hash that nothing looks up. SQLite has no such indexes; nothing to do there.

Dropped by name as found in ``pg_indexes`` (Django's names carry a hash); the reverse recreates them.
Later schema changes to these fields find no ``_like`` index and drop none (Django's loop over found names).
"""

from django.db import migrations

# (table, column, whether the plain index on the column goes too): only _like indexes, and client_secret's.
UNUSED = [
    ("oauth2_provider_accesstoken", "token_checksum", False),
    ("oauth_client", "client_id", False),
    ("oauth_client", "client_secret", True),
    ("oauth_redeemedcode", "code_checksum", False),
    ("accounts_throttlecounter", "key", False),
]


def _indexes(cursor, table, column, *, plain):
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s",
        [table],
    )
    found = []
    for name, definition in cursor.fetchall():
        if definition.startswith("CREATE UNIQUE"):
            continue  # the unique index answers the equality lookups: it stays
        if f"({column} varchar_pattern_ops)" in definition or (plain and definition.endswith(f"({column})")):
            found.append(name)
    return found


def drop_unused(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        for table, column, plain in UNUSED:
            for name in _indexes(cursor, table, column, plain=plain):
                schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")


def recreate(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for table, column, plain in UNUSED:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {quote(f'{table}_{column}_like')} ON {quote(table)}"
            f" ({quote(column)} varchar_pattern_ops)"
        )
        if plain:
            name = quote(f"{table}_{column}_idx")
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {quote(table)} ({quote(column)})")


class Migration(migrations.Migration):
    dependencies = [
        ("oauth", "0009_client_generation"),
        ("accounts", "0008_profile_claims"),
        ("oauth2_provider", "0022_refreshtoken_token_family_index"),
    ]

    operations = [migrations.RunPython(drop_unused, recreate)]
