from django.urls import path

from tokens import views

app_name = "tokens"

urlpatterns = [
    path("jwks.json", views.jwks, name="jwks"),
    path("audit-keys.json", views.audit_keys, name="audit-keys"),
    path("audit-head.json", views.audit_head, name="audit-head"),
]
