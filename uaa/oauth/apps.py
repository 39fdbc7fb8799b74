from django.apps import AppConfig


class OAuthConfig(AppConfig):
    name = "uaa.oauth"
    label = "oauth"
    verbose_name = "OAuth clients"
    default_auto_field = "django.db.models.BigAutoField"
