"""Secret rotation with a grace window (issue 13 item 1): the previous secret's hash and its expiry, and when
the current secret was made by a rotation (uaa/oauth/services.py ``rotate_client_secret``).

On SQLite a column that is NOT NULL with a default (``previous_secret_hash``) is added by rebuilding
``oauth_client`` (a new table, the rows copied, the old one dropped), and the drop takes 0009's trigger with
it: without it the generation no longer moves and uaa/oauth/client_cache.py would keep using a changed
client (a rotated secret) in other processes. The trigger is made again here, after the rebuild. PostgreSQL
adds the columns in place and keeps its trigger.
"""

from django.db import migrations, models

SQLITE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS oauth_client_generation AFTER UPDATE ON oauth_client FOR EACH ROW"
    " BEGIN UPDATE oauth_client SET generation = OLD.generation + 1 WHERE id = NEW.id; END"
)  # 0009's, word for word


def restore_sqlite_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("oauth", "0012_redeemed_code_token_checksum_index"),
    ]

    operations = [
        # unapplied: the last step, after the columns' removal rebuilt the table again (SQLite)
        migrations.RunPython(migrations.RunPython.noop, restore_sqlite_trigger),
        migrations.AddField(
            model_name="client",
            name="previous_secret_hash",
            field=models.CharField(
                blank=True,
                default="",
                editable=False,
                help_text="The hash of the secret before the last rotation, while its grace window runs.",
                max_length=255,
            ),
        ),
        migrations.AddField(
            model_name="client",
            name="previous_secret_expires",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="The end of the previous secret's grace window (it fails from this instant on).",
                null=True,
                verbose_name="previous secret valid until",
            ),
        ),
        migrations.AddField(
            model_name="client",
            name="secret_rotated_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When the current secret was made by a rotation; empty: it is the registration's.",
                null=True,
                verbose_name="secret last rotated",
            ),
        ),
        # applied: after the rebuild (SQLite)
        migrations.RunPython(restore_sqlite_trigger, migrations.RunPython.noop),
    ]
