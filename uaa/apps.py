"""The project's own app config: UAA's configuration checks (uaa/checks.py), registered here as
django-oauth-toolkit and allauth register theirs, and refused at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class UAAConfig(AppConfig):
    name = "uaa"
    label = "uaa"
    verbose_name = "UAA"

    def ready(self) -> None:
        from django.core import checks

        from uaa.checks import check_settings, refuse_to_start

        checks.register(check_settings, checks.Tags.security)
        # Every process runs django.setup() before it serves anything (gunicorn's workers, Celery, manage.py):
        # none of them starts with a configuration error (the same list `manage.py check` reports).
        refuse_to_start()

        from tokens.signals import signing_key_changed
        from uaa.middleware import jwks_changed

        # A key change replaces the last good copy of the JWKS served during a database outage.
        signing_key_changed.connect(jwks_changed, dispatch_uid="uaa.last_good_jwks")

        import uaa.metrics  # noqa: F401  # connects its receivers (sign-ins, lockouts, Celery tasks)
