"""The audit ledger: audit keys, append-only records, signed tree heads; sealing every 10 s in beat.

A trigger refuses any UPDATE that changes a record (sealing only fills ``leaf_index``/``leaf_hash``
once). It does not stop a database superuser, who can drop it: the signed Merkle tree is what makes
such a change evident (tokens/verifier.py).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

SCHEDULE = [("seal audit ledger", "tokens.seal_audit_ledger", 10)]

CHANGED = (
    "{new}.body {neq} {old}.body OR {new}.event {neq} {old}.event OR {new}.at {neq} {old}.at"
    " OR {new}.client_id {neq} {old}.client_id OR {new}.actor {neq} {old}.actor"
    " OR ({old}.leaf_index IS NOT NULL AND ({new}.leaf_index {neq} {old}.leaf_index"
    " OR {new}.leaf_hash {neq} {old}.leaf_hash))"
)

POSTGRESQL = [
    """CREATE FUNCTION tokens_ledger_append_only() RETURNS trigger AS $$
    BEGIN
      IF %s THEN
        RAISE EXCEPTION 'the audit ledger is append-only';
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql"""
    % CHANGED.format(new="NEW", old="OLD", neq="IS DISTINCT FROM"),
    "CREATE TRIGGER tokens_ledgerrecord_append_only BEFORE UPDATE ON tokens_ledgerrecord"
    " FOR EACH ROW EXECUTE FUNCTION tokens_ledger_append_only()",
]
SQLITE = [
    "CREATE TRIGGER tokens_ledgerrecord_append_only BEFORE UPDATE ON tokens_ledgerrecord WHEN %s"
    " BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END"
    % CHANGED.format(new="NEW", old="OLD", neq="IS NOT"),
]


def append_only(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in {"postgresql": POSTGRESQL, "sqlite": SQLITE}.get(vendor, []):
        schema_editor.execute(statement)


def drop_append_only(apps, schema_editor):
    schema_editor.execute(
        "DROP TRIGGER IF EXISTS tokens_ledgerrecord_append_only"
        + (" ON tokens_ledgerrecord" if schema_editor.connection.vendor == "postgresql" else "")
    )
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS tokens_ledger_append_only()")


def seed(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, task, seconds in SCHEDULE:
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unseed(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in SCHEDULE]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0003_default_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kid",
                    models.CharField(
                        editable=False,
                        max_length=64,
                        unique=True,
                        verbose_name="key id (RFC 7638 thumbprint)",
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("active", "active (signs tree heads)"),
                            ("retired", "retired (published, no longer signing)"),
                        ],
                        default="active",
                        max_length=10,
                    ),
                ),
                ("public_jwk", models.JSONField(editable=False)),
                ("wrapped_private_key", models.BinaryField()),
                ("wrapped_data_key", models.BinaryField()),
                (
                    "kek_id",
                    models.CharField(editable=False, max_length=16, verbose_name="key-encryption key id"),
                ),
                ("created_at", models.DateTimeField()),
                ("retired_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["-created_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("state", "active")),
                        fields=("state",),
                        name="one_active_audit_key",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="LedgerRecord",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "event",
                    models.CharField(
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
                        db_index=True,
                        editable=False,
                        max_length=64,
                    ),
                ),
                ("at", models.DateTimeField(db_index=True, editable=False)),
                ("client_id", models.CharField(blank=True, db_index=True, editable=False, max_length=255)),
                (
                    "actor",
                    models.CharField(
                        blank=True, db_index=True, editable=False, max_length=255, verbose_name="actor (sub)"
                    ),
                ),
                ("body", models.TextField(editable=False, verbose_name="record (RFC 8785 JSON)")),
                ("leaf_index", models.BigIntegerField(blank=True, editable=False, null=True, unique=True)),
                ("leaf_hash", models.CharField(blank=True, editable=False, max_length=64)),
            ],
            options={
                "verbose_name": "audit record",
                "ordering": ["-id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("leaf_index__isnull", True)),
                        fields=["id"],
                        name="ledger_unsealed",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="TreeHead",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tree_size", models.PositiveBigIntegerField(db_index=True, editable=False)),
                ("root_hash", models.CharField(editable=False, max_length=64)),
                (
                    "timestamp",
                    models.BigIntegerField(editable=False, verbose_name="timestamp (ms since the epoch)"),
                ),
                (
                    "signature",
                    models.CharField(
                        editable=False, max_length=128, verbose_name="Ed25519 signature (base64url)"
                    ),
                ),
                ("frontier", models.JSONField(default=list, editable=False)),
                ("consistency", models.JSONField(default=list, editable=False)),
                (
                    "pruned_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="Records below this size were exported and pruned at this time.",
                        null=True,
                    ),
                ),
                (
                    "audit_key",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="tokens.auditkey",
                        to_field="kid",
                    ),
                ),
            ],
            options={
                "verbose_name": "signed tree head",
                "ordering": ["-tree_size", "-timestamp"],
            },
        ),
        migrations.RunPython(append_only, drop_append_only),
        migrations.RunPython(seed, unseed),
    ]
