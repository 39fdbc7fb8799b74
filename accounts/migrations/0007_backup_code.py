"""Backup codes have one name: the model ``RecoveryCode`` is ``BackupCode`` and ``User.recovery_codes`` is
``User.backup_codes`` (accounts/mfa/backup_codes.py). The table ``accounts_recoverycode`` is renamed to
``accounts_backupcode`` with its rows; the model's content type is renamed by django.contrib.contenttypes,
and its four permissions keep their ids (and any group holding them) under the new codenames.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

ACTIONS = ("add", "change", "delete", "view")


def _rename_permissions(apps, old: str, new: str, new_name: str) -> None:
    Permission = apps.get_model("auth", "Permission")
    for action in ACTIONS:
        Permission.objects.filter(content_type__app_label="accounts", codename=f"{action}_{old}").update(
            codename=f"{action}_{new}", name=f"Can {action} {new_name}"
        )


def forwards(apps, schema_editor):
    _rename_permissions(apps, "recoverycode", "backupcode", "backup code")


def backwards(apps, schema_editor):
    _rename_permissions(apps, "backupcode", "recoverycode", "recovery code")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_mfa_enrolled_at"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RenameModel(old_name="RecoveryCode", new_name="BackupCode"),
        migrations.AlterField(
            model_name="backupcode",
            name="user",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="backup_codes",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
