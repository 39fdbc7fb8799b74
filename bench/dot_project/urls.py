"""DOT's own URLs (token, introspection, JWKS, discovery, ...) under /o/, as its tutorial mounts them."""

from django.urls import include, path

urlpatterns = [path("o/", include("oauth2_provider.urls", namespace="oauth2_provider"))]
