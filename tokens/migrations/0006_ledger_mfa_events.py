"""The MFA events (accounts/mfa) as named choices of the ledger's event column: admin labels only, no SQL."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0005_ledger_indexes"),
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
                    ("mfa.enrolled", "MFA factor enrolled"),
                    ("mfa.removed", "MFA factor removed"),
                    ("mfa.reset", "MFA reset by an admin"),
                    ("mfa.backup_codes_generated", "backup codes generated"),
                    ("account.unlocked", "account unlocked"),
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
    ]
