from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path("login", views.sign_in, name="login"),
    path("logout", views.sign_out, name="logout"),
    path("mfa", views.mfa_challenge, name="mfa"),
    path("mfa/enroll", views.mfa_enroll, name="mfa_enroll"),
    path("mfa/step-up", views.mfa_step_up, name="mfa_step_up"),
    path("mfa/replenish", views.mfa_replenish, name="replenish"),
    path("security", views.security, name="security"),
    path("security/verify", views.security_verify, name="security_verify"),
    path("security/factors/remove", views.remove_factor, name="remove_factor"),
    path("security/factors/rename", views.rename_factor, name="rename_factor"),
    path("security/backup-codes", views.regenerate_backup_codes, name="regenerate_backup_codes"),
    path("security/sign-out-everywhere", views.sign_out_everywhere, name="sign_out_everywhere"),
]
