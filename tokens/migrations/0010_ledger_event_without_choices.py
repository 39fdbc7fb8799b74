"""The ledger's event column without ``choices``: a new event kind is a name in ``LedgerRecord.Event``, not
a migration. No SQL: Django keeps choices in Python only."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0009_destroy_ended_private_keys"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgerrecord",
            name="event",
            field=models.CharField(editable=False, max_length=64),
        ),
    ]
