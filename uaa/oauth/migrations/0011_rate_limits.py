"""Rate limits (issue 13 item 4): ``Client.rate_limit``, a client's own limit, and ``RateLimitCounter``, the
counters of uaa/oauth/ratelimit.py when no Redis is configured.

PostgreSQL gives the counters' varchar primary key a second, ``varchar_pattern_ops`` index (``_like``) that no
lookup uses (every one is by equality, ``ON CONFLICT`` included) and every upsert would maintain: dropped by
name as found in ``pg_indexes``, as 0010 drops the others. On SQLite ``rate_limit`` (nullable, no default) is
added by ``ALTER TABLE ... ADD COLUMN``, without rebuilding ``oauth_client``, so 0009's trigger stays.
"""

import django.core.validators
from django.db import migrations, models

TABLE = "oauth_ratelimitcounter"


def drop_like_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # CreateModel's indexes are deferred to the end of the migration: made now, so that the one found is gone.
    while schema_editor.deferred_sql:
        schema_editor.execute(schema_editor.deferred_sql.pop(0))
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s"
            " AND indexdef LIKE %s",
            [TABLE, "%varchar_pattern_ops%"],
        )
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


class Migration(migrations.Migration):
    dependencies = [
        ("oauth", "0010_drop_unused_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="client",
            name="rate_limit",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Requests this client may make per UAA_RATELIMIT_WINDOW (10 s by default) at each "
                "of the token, introspection, revocation and userinfo endpoints, counting the ones that "
                "succeed. Empty: the defaults (UAA_RATELIMIT_TOKEN_CLIENT and the others); 0: no limit for "
                "this client. The per-address limits apply whatever this says (docs/operations.md, Rate "
                "limits).",
                null=True,
                validators=[django.core.validators.MaxValueValidator(2147483647)],
            ),
        ),
        migrations.CreateModel(
            name="RateLimitCounter",
            fields=[
                ("key", models.CharField(max_length=128, primary_key=True, serialize=False)),
                ("window_end", models.BigIntegerField()),
                ("hits", models.IntegerField(default=0)),
            ],
        ),
        migrations.RunPython(drop_like_index, migrations.RunPython.noop),
    ]
