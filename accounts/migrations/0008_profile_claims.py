"""OIDC Core §5.1 profile, phone and address claims on the user, blank unless known (uaa/oauth/claims.py)."""

import django.core.validators
from django.db import migrations, models

import accounts.models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_backup_code"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="birthdate",
            field=models.CharField(
                blank=True,
                help_text="YYYY-MM-DD or YYYY.",
                max_length=10,
                validators=[accounts.models.validate_birthdate],
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="country",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name="user",
            name="gender",
            field=models.CharField(blank=True, help_text="female, male, or another value.", max_length=32),
        ),
        migrations.AddField(
            model_name="user",
            name="locale",
            field=models.CharField(
                blank=True,
                help_text="en-US",
                max_length=35,
                validators=[
                    django.core.validators.RegexValidator(
                        "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
                        message="Enter a BCP 47 language tag such as en-US.",
                    )
                ],
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="locality",
            field=models.CharField(blank=True, max_length=150, verbose_name="city"),
        ),
        migrations.AddField(
            model_name="user",
            name="middle_name",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name="user",
            name="nickname",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name="user",
            name="phone_number",
            field=models.CharField(
                blank=True,
                help_text="E.164: +14255551212",
                max_length=32,
                validators=[
                    django.core.validators.RegexValidator(
                        "^\\+[1-9][0-9]{6,14}(;ext=[0-9]{1,10})?$",
                        message="Enter an E.164 number such as +14255551212.",
                    )
                ],
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="phone_number_verified",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="user",
            name="picture",
            field=models.URLField(
                blank=True,
                max_length=500,
                validators=[
                    django.core.validators.URLValidator(message="Enter an https:// URL.", schemes=["https"])
                ],
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="postal_code",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="user",
            name="preferred_username",
            field=models.CharField(
                blank=True, help_text="Shown to applications; not unique, not an identifier.", max_length=150
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="profile",
            field=models.URLField(
                blank=True,
                max_length=500,
                validators=[
                    django.core.validators.URLValidator(message="Enter an https:// URL.", schemes=["https"])
                ],
                verbose_name="profile page",
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="region",
            field=models.CharField(blank=True, max_length=150, verbose_name="state or region"),
        ),
        migrations.AddField(
            model_name="user",
            name="street_address",
            field=models.TextField(blank=True, help_text="One line per line of the address.", max_length=500),
        ),
        migrations.AddField(
            model_name="user",
            name="website",
            field=models.URLField(
                blank=True,
                max_length=500,
                validators=[
                    django.core.validators.URLValidator(message="Enter an https:// URL.", schemes=["https"])
                ],
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="zoneinfo",
            field=models.CharField(
                blank=True,
                help_text="Europe/Paris",
                max_length=64,
                validators=[accounts.models.validate_zoneinfo],
                verbose_name="time zone",
            ),
        ),
    ]
