from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Tokens and keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.admin.models import LogEntry
        from django.db.models.signals import post_save

        from tokens import receivers
        from tokens.signals import signing_key_changed

        signing_key_changed.connect(receivers.record_signing_key_change, dispatch_uid="ledger.signing_key")
        post_save.connect(receivers.record_admin_change, sender=LogEntry, dispatch_uid="ledger.admin_change")
