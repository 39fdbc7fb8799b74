from django.apps import AppConfig


class OAuthConfig(AppConfig):
    name = "uaa.oauth"
    label = "oauth"
    verbose_name = "OAuth clients"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tokens.ledger import before_sealing
        from uaa.oauth.audit import flush_before_sealing

        # Summaries of failed client authentication whose window ended are sealed with the next run.
        before_sealing.connect(flush_before_sealing, dispatch_uid="uaa.oauth.flush_client_auth_failures")
