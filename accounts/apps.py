from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from accounts.sessions import end_recorded_session

        # Every way out (our sign-out, RP-initiated logout, the timeouts) closes the sign-in record.
        user_logged_out.connect(end_recorded_session, dispatch_uid="accounts.end_recorded_session")
