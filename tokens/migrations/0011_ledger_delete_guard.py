"""A trigger refuses DELETE on the audit ledger except below a recorded prune (red team rte (c)).

Until now only UPDATEs were refused (0004). A record deleted before it was sealed left no trace at all:
a ``key.revoked`` record removed within the seal interval, and the key row restored, brought a revoked
key back with ``audit verify`` saying OK. Now a record may be deleted only once sealed, and only if its
leaf index is below the ``tree_size`` of a ``ledger.pruned`` record that stays (``prune_ledger`` appends
it before it deletes): such a record is evidence, since its prune statement must carry an audit key's
signature, which the verifier checks and a database writer cannot make. A ``ledger.pruned`` record
sealed below its own ``tree_size`` covers nothing (else it could vouch for its own removal).

Like 0004's trigger it does not stop the table's owner or a database superuser, who can drop or disable
it (docs/audit-ledger.md, "What the database refuses"). TRUNCATE is not refused: Django's test flush uses
it on PostgreSQL, and it removes the sealed records with the rest, which the signed tree shows.
"""

from django.db import migrations

# PostgreSQL: one check per statement over the deleted rows (a prune deletes millions in one statement).
# A ledger.pruned body that is not JSON, or whose tree_size is a fraction, fails the cast: refused; one whose
# tree_size is not a number (a string of digits would cast) covers nothing.
POSTGRESQL = [
    """CREATE FUNCTION tokens_ledger_delete_guard() RETURNS trigger AS $$
    DECLARE
      covered bigint;
    BEGIN
      SELECT max(pruned.size) INTO covered FROM (
        SELECT leaf_index, (body::jsonb #>> '{detail,tree_size}')::bigint AS size
        FROM tokens_ledgerrecord
        WHERE event = 'ledger.pruned' AND jsonb_typeof(body::jsonb #> '{detail,tree_size}') = 'number'
      ) AS pruned
      WHERE pruned.leaf_index IS NULL OR pruned.leaf_index >= pruned.size;
      IF EXISTS (
        SELECT 1 FROM gone WHERE gone.leaf_index IS NULL OR gone.leaf_index >= coalesce(covered, 0)
      ) THEN
        RAISE EXCEPTION
          'the audit ledger is append-only: a record is deleted only once sealed and pruned (audit prune)';
      END IF;
      RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    "CREATE TRIGGER tokens_ledgerrecord_no_delete AFTER DELETE ON tokens_ledgerrecord"
    " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION tokens_ledger_delete_guard()",
]

# SQLite has no statement triggers: each row is checked before it goes. json_extract of a body that is
# not JSON raises (refused); a tree_size that is not an integer covers nothing.
SQLITE_CREATE = (
    "CREATE TRIGGER IF NOT EXISTS tokens_ledgerrecord_no_delete BEFORE DELETE ON tokens_ledgerrecord"
    " WHEN OLD.leaf_index IS NULL OR NOT EXISTS ("
    "SELECT 1 FROM tokens_ledgerrecord AS pruned WHERE pruned.event = 'ledger.pruned'"
    " AND pruned.id <> OLD.id"
    " AND json_type(pruned.body, '$.detail.tree_size') = 'integer'"
    " AND json_extract(pruned.body, '$.detail.tree_size') > OLD.leaf_index"
    " AND (pruned.leaf_index IS NULL"
    " OR pruned.leaf_index >= json_extract(pruned.body, '$.detail.tree_size'))"
    ") BEGIN SELECT RAISE(ABORT,"
    " 'the audit ledger is append-only: a record is deleted only once sealed and pruned (audit prune)');"
    " END"
)
NAME = "tokens_ledgerrecord_no_delete"
SQLITE_DROP = "DROP TRIGGER IF EXISTS tokens_ledgerrecord_no_delete"


def delete_guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in {"postgresql": POSTGRESQL, "sqlite": [SQLITE_CREATE]}.get(vendor, []):
        schema_editor.execute(statement)


def drop_delete_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS tokens_ledgerrecord_no_delete ON tokens_ledgerrecord")
        schema_editor.execute("DROP FUNCTION IF EXISTS tokens_ledger_delete_guard()")
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0010_ledger_event_without_choices"),
    ]

    operations = [
        migrations.RunPython(delete_guard, drop_delete_guard),
    ]
