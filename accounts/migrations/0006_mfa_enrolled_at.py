"""``User.mfa_enrolled_at``: the account has had a second factor, so forced first enrollment (which trusts
the password alone) is closed to it until an admin resets its factors (accounts/signin.py).

Existing accounts that have, or had, a factor get it: a confirmed authenticator app, a passkey, or any
backup code, used or not (codes come with a factor).
"""

from django.db import migrations, models
from django.utils import timezone


def mark_enrolled(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    WebAuthnCredential = apps.get_model("accounts", "WebAuthnCredential")
    RecoveryCode = apps.get_model("accounts", "RecoveryCode")
    had = (
        set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))
        | set(WebAuthnCredential.objects.values_list("user_id", flat=True))
        | set(RecoveryCode.objects.values_list("user_id", flat=True))
    )
    User.objects.filter(pk__in=had, mfa_enrolled_at__isnull=True).update(mfa_enrolled_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_canonical_emails"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="mfa_enrolled_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="Set when the user first has a second factor; only an admin's reset clears it.",
                null=True,
                verbose_name="second factor since",
            ),
        ),
        migrations.RunPython(mark_enrolled, migrations.RunPython.noop),
    ]
