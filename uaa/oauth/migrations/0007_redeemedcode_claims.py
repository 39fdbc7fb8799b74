"""OIDC Core §5.5: the userinfo claims a spent code's request asked for (uaa/oauth/claims.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("oauth", "0006_client_allowed_resources_and_scopes")]

    operations = [
        migrations.AddField(
            model_name="redeemedcode",
            name="claims",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
