"""Store every e-mail address in its canonical form (accounts.models.canonical_email): sign-in now looks
addresses up exactly, not case-insensitively, so a stored address in another form would not be found.

Two accounts whose addresses become equal are the same address twice; the migration stops and names
them (by id) rather than choose one: merge or rename one of them in the admin, then migrate again.
"""

import unicodedata

from django.db import migrations


def _canonical(value):
    text = unicodedata.normalize("NFKC", (value or "").strip())
    return unicodedata.normalize("NFKC", text.lower())


def canonicalise(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    seen = {}
    for pk, email in User.objects.values_list("pk", "email"):
        seen.setdefault(_canonical(email), []).append(pk)
    clashes = {address: ids for address, ids in seen.items() if len(ids) > 1}
    if clashes:
        named = "; ".join(", ".join(str(pk) for pk in ids) for ids in clashes.values())
        raise RuntimeError(
            "accounts.0005: these accounts have the same e-mail address once normalised (user ids): "
            f"{named}. Rename or merge them, then migrate again."
        )
    for pk, email in User.objects.values_list("pk", "email"):
        if _canonical(email) != email:
            User.objects.filter(pk=pk).update(email=_canonical(email))


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_not_before")]

    operations = [migrations.RunPython(canonicalise, migrations.RunPython.noop)]
