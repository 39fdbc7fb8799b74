"""Client.generation: a counter the database bumps on every UPDATE of a client row (issue 12).

uaa/oauth/client_cache.py keeps clients per process and reads (id, generation) of the client on every
use: a row changed in any way — by the admin, the API, ``QuerySet.update()`` in a shell, or plain SQL — has
a new generation, so no process uses its old copy again; a deleted client has no row. The trigger, not
``save()``, does the counting, so that nothing that writes the row can leave it out. Like the ledger's
triggers it does not stop the table's owner, who can drop it.
"""

from django.db import migrations, models

POSTGRESQL = [
    """CREATE FUNCTION oauth_client_next_generation() RETURNS trigger AS $$
    BEGIN
      NEW.generation := OLD.generation + 1;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    "CREATE TRIGGER oauth_client_generation BEFORE UPDATE ON oauth_client"
    " FOR EACH ROW EXECUTE FUNCTION oauth_client_next_generation()",
]
# SQLite: after the row is written (whatever generation the writer gave it), set the old one plus one.
# recursive_triggers is off (SQLite's default, never turned on here), so this UPDATE fires no trigger.
SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS oauth_client_generation AFTER UPDATE ON oauth_client FOR EACH ROW"
    " BEGIN UPDATE oauth_client SET generation = OLD.generation + 1 WHERE id = NEW.id; END"
]


def create_trigger(apps, schema_editor):
    for statement in {"postgresql": POSTGRESQL, "sqlite": SQLITE}.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS oauth_client_generation ON oauth_client")
        schema_editor.execute("DROP FUNCTION IF EXISTS oauth_client_next_generation()")
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS oauth_client_generation")


class Migration(migrations.Migration):
    dependencies = [
        ("oauth", "0008_client_require_pkce"),
    ]

    operations = [
        migrations.AddField(
            model_name="client",
            name="generation",
            field=models.BigIntegerField(
                default=0,
                editable=False,
                help_text="Bumped by the database on every change of the row (uaa/oauth/client_cache.py).",
            ),
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
