"""Root URLconf: /oauth/, /.well-known/, /accounts/, /admin/, /api/v1/."""

from django.contrib import admin
from django.shortcuts import redirect
from django.urls import include, path
from oauth2_provider import views as dot

from accounts.views import admin_login
from uaa import health
from uaa.metrics_view import metrics_view
from uaa.oauth import views
from uaa.oauth.http import oauth_endpoint
from uaa.oauth.ratelimit import limiter

handler400 = "uaa.oauth.views.bad_request"
handler403 = "uaa.oauth.views.permission_denied"
handler404 = "uaa.oauth.views.page_not_found"
handler500 = "uaa.middleware.server_error"  # a database outage is a 503 (uaa/outage.py)

admin.site.site_header = "UAA administration"
admin.site.site_title = "UAA"
admin.site.login = admin_login  # type: ignore[method-assign]


oauth_patterns = (
    [
        path("authorize", views.AuthorizeView.as_view(), name="authorize"),
        path("token", oauth_endpoint(rate_limit=limiter("token"))(views.TokenView.as_view()), name="token"),
        path(
            "revoke",
            oauth_endpoint(rate_limit=limiter("revocation"))(dot.RevokeTokenView.as_view()),
            name="revoke",
        ),
        path(
            "introspect",
            oauth_endpoint(rate_limit=limiter("introspection"))(views.introspect_view),
            name="introspect",
        ),
        path(
            "userinfo",
            oauth_endpoint(
                methods=("GET", "POST"), form_body=False, bearer=True, rate_limit=limiter("userinfo")
            )(dot.UserInfoView.as_view()),
            name="userinfo",
        ),
        path("logout", views.LogoutView.as_view(), name="logout"),
    ],
    "oauth",
)

urlpatterns = [
    path("", lambda request: redirect("accounts:home")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("oauth/", include(oauth_patterns)),
    path(".well-known/openid-configuration", views.openid_configuration_view, name="openid-configuration"),
    path(
        ".well-known/oauth-authorization-server",
        views.authorization_server_metadata_view,
        name="oauth-authorization-server",
    ),
    path(".well-known/", include("tokens.urls")),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("uaa.api.urls")),
]
