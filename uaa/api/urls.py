"""/api/v1/: the admin API's routes, its OpenAPI 3.1 document and the reference page (Swagger UI, its files
served from here: the CSP allows no other origin)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from uaa.api import schema  # noqa: F401 - registers the security scheme with drf-spectacular
from uaa.api.audit import AuditViewSet
from uaa.api.clients import ClientViewSet
from uaa.api.keys import SigningKeyViewSet
from uaa.api.users import UserViewSet

router = SimpleRouter(trailing_slash=False)
router.register("clients", ClientViewSet, basename="client")
router.register("keys", SigningKeyViewSet, basename="key")
router.register("users", UserViewSet, basename="user")
router.register("audit", AuditViewSet, basename="audit")

app_name = "api"


@csrf_exempt  # any method: the API's JSON 404, not Django's HTML CSRF 403 (no session authenticates here)
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any other path under /api/v1/: the API's JSON 404, not the HTML page."""
    body = {"error": "not_found", "error_description": "No such resource."}
    return JsonResponse(body, status=404, headers={"Cache-Control": "no-store"})


urlpatterns = [
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("", include(router.urls)),
    re_path(r"^(?P<rest>.*)$", not_found),
]
