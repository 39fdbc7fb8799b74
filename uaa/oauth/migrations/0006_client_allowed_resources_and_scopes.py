"""Per-client allow-lists: the resources a client may get tokens for (RFC 8707) and its extra scopes
(RFC 6749 §3.3). Before, any client could name any resource and get any extra scope of UAA_SCOPES.

Upgrading fails closed (docs/operations.md, "Upgrading"): an existing client may request its default
audience and nothing else, and has no extra scope. What its stored tokens show it was issued beyond
that is printed, per client, for the operator to grant in admin what it is meant to have; a token an
attacker minted through the old rule shows up there too, so it is a list to review, not to copy.
"""

import sys

from django.db import migrations, models

USER_SCOPES = {"openid", "profile", "email", "offline_access"}  # uaa.oauth.scopes.USER_SCOPES


def allow_the_default_audience(apps, schema_editor):
    from oauth2_provider.oauth2_validators import is_valid_resource_uri

    Client = apps.get_model("oauth", "Client")
    AccessToken = apps.get_model("oauth2_provider", "AccessToken")
    lines = []
    for client in Client.objects.order_by("pk"):
        default = client.default_audience.split()
        client.allowed_resources = " ".join(
            audience for audience in default if is_valid_resource_uri(audience)
        )
        client.save(update_fields=["allowed_resources"])
        scopes, resources = set(), set()
        for scope, resource in AccessToken.objects.filter(application=client).values_list(
            "scope", "resource"
        ):
            scopes.update(set(scope.split()) - USER_SCOPES)
            resources.update(set(resource or []) - set(default))
        if scopes or resources:
            lines.append(
                f"  {client.client_id} ({client.name}): scopes {' '.join(sorted(scopes)) or '-'}; "
                f"resources {' '.join(sorted(resources)) or '-'}"
            )
    if lines:
        sys.stdout.write(
            "\n  oauth 0006: clients now get only their default audience and no extra scope. Their "
            "stored tokens show these beyond that; grant in admin only what each is meant to have:\n"
            + "\n".join(lines)
            + "\n"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("oauth", "0005_clientauthenticationtally"),
        ("oauth2_provider", "0022_refreshtoken_token_family_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="client",
            name="allowed_resources",
            field=models.CharField(
                blank=True,
                help_text="Space-separated resource URIs (RFC 8707) this client may name in resource, and so get access tokens for (their aud): the resource servers it calls. Compared exactly. Any other resource is refused with invalid_target. Not the resources it serves (introspection, below).",
                max_length=2000,
                verbose_name="resources this client may request",
            ),
        ),
        migrations.AddField(
            model_name="client",
            name="allowed_scopes",
            field=models.CharField(
                blank=True,
                help_text="Space-separated scopes of UAA_EXTRA_SCOPES this client may be granted (RFC 6749 §3.3); any other is refused with invalid_scope. The OpenID Connect user scopes (openid, profile, email, offline_access) need no entry: every authorization-code client may ask for them, and no client-credentials client gets them.",
                max_length=2000,
                verbose_name="extra scopes this client may request",
            ),
        ),
        migrations.AlterField(
            model_name="client",
            name="default_audience",
            field=models.CharField(
                blank=True,
                help_text="Space-separated audiences (aud) of access tokens when the request names no resource; each must be a resource this client may request. Empty: UAA itself (the issuer, for userinfo).",
                max_length=1000,
            ),
        ),
        migrations.RunPython(allow_the_default_audience, migrations.RunPython.noop),
    ]
