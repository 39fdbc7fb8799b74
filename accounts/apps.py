from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


def _check_mail_settings() -> None:
    """Register the e-mail settings' check (accounts/mail.py) and refuse to start on its errors, as
    uaa/apps.py does for the issuer's: a worker with an unreadable EMAIL_URL would send nothing."""
    from django.core import checks

    from accounts.mail import check_mail_settings

    checks.register(check_mail_settings, checks.Tags.security)
    errors = [found for found in check_mail_settings() if found.is_serious()]
    if errors:
        raise ImproperlyConfigured("Refusing to start: " + " ".join(f"[{e.id}] {e.msg}" for e in errors))


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from accounts.mfa.policy import factor_saved
        from accounts.models import WebAuthnCredential
        from accounts.sessions import end_recorded_session

        _check_mail_settings()

        # Every way out (our sign-out, RP-initiated logout, the timeouts) closes the sign-in record.
        user_logged_out.connect(end_recorded_session, dispatch_uid="accounts.end_recorded_session")
        # A factor bound any way closes first enrollment to its user (accounts/mfa/policy.py).
        post_save.connect(factor_saved, sender=TOTPDevice, dispatch_uid="accounts.totp_saved")
        post_save.connect(factor_saved, sender=WebAuthnCredential, dispatch_uid="accounts.webauthn_saved")
