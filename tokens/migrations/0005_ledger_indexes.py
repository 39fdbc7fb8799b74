"""Fewer indexes on the token endpoint's path: none on ``event``; ``leaf_index`` unique once sealed only.

SQLite rebuilds the table to alter its fields, which drops the append-only trigger of 0004: it is
created again here.
"""

import importlib

from django.db import migrations, models

initial = importlib.import_module("tokens.migrations.0004_audit_ledger")


def recreate_sqlite_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS tokens_ledgerrecord_append_only")
        initial.append_only(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0004_audit_ledger"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgerrecord",
            name="event",
            field=models.CharField(
                choices=[
                    ("authorization.granted", "authorization granted"),
                    ("authorization.denied", "authorization denied"),
                    ("token.issued", "token issued"),
                    ("token.revoked", "token revoked"),
                    ("refresh_token.reused", "refresh token reuse detected"),
                    ("code.replayed", "authorization code replayed"),
                    ("client_authentication.failed", "client authentication failed"),
                    ("sign_in.succeeded", "sign-in succeeded"),
                    ("sign_in.failed", "sign-in failed"),
                    ("sign_out", "signed out"),
                    ("client.registered", "client registered"),
                    ("client.secret_rotated", "client secret rotated"),
                    ("admin.change", "admin change"),
                    ("key.published", "signing key published"),
                    ("key.activated", "signing key activated"),
                    ("key.retired", "signing key retired"),
                    ("key.expired", "signing key expired"),
                    ("key.revoked", "signing key revoked"),
                    ("audit_key.created", "audit key created"),
                    ("audit_key.retired", "audit key retired"),
                    ("ledger.pruned", "ledger records pruned after export"),
                ],
                editable=False,
                max_length=64,
            ),
        ),
        migrations.AlterField(
            model_name="ledgerrecord",
            name="leaf_index",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddConstraint(
            model_name="ledgerrecord",
            constraint=models.UniqueConstraint(
                condition=models.Q(("leaf_index__isnull", False)),
                fields=("leaf_index",),
                name="ledger_leaf_index",
            ),
        ),
        migrations.RunPython(recreate_sqlite_trigger, migrations.RunPython.noop),
    ]
