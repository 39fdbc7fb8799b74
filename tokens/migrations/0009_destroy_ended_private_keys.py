"""Revoked and expired signing keys lose their private halves; key records of the ledger get an index.

From this release a key's wrapped blobs are emptied the moment it is revoked or expires
(``SigningKey.revoke`` / ``expire``), so a database write can never make it prove itself again
(docs/key-rotation.md, "What a database writer can do to keys"). Keys that ended before it still hold
theirs: they are emptied here, once. Nothing is unwrapped, so no KEK is needed. There is no way back:
the reverse migration leaves them empty.

The partial index ``ledger_key_records`` holds only the ``key.retired`` / ``key.expired`` /
``key.revoked`` records, which the trust check consults for every key it publishes, verifies with or
signs with; token records never enter it. On SQLite it is a plain ``CREATE INDEX`` (no table rebuild),
so the append-only trigger of 0004/0005 stays.
"""

from django.db import migrations, models

ENDED = ("revoked", "expired")


def destroy_ended_private_keys(apps, schema_editor):
    SigningKey = apps.get_model("tokens", "SigningKey")
    SigningKey.objects.filter(state__in=ENDED).update(wrapped_private_key=b"", wrapped_data_key=b"")


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0008_admin_action_permissions"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="ledgerrecord",
            index=models.Index(
                condition=models.Q(("event__in", ("key.expired", "key.retired", "key.revoked"))),
                fields=["event"],
                name="ledger_key_records",
            ),
        ),
        migrations.RunPython(destroy_ended_private_keys, migrations.RunPython.noop),
    ]
