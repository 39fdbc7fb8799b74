"""What every admin API view shares: the token check, the scope permission, strict JSON, the error shape,
``no-store`` on every answer (a registration's answer holds a secret)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as ModelValidationError
from django.http import HttpRequest
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from uaa.api.auth import AccessTokenAuthentication, ApiCaller, HasAdminScope
from uaa.api.errors import NO_STORE, StrictJSONParser, handle_exception, storable
from uaa.api.schema import AdminApiSchema, nullable_links

MAX_QUERY_VALUE = 2048
MAX_PATH_VALUE = 255  # client_id's column; a kid is 64, a user id 36


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return nullable_links(super().get_paginated_response_schema(schema))

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound:
            raise serializers.ValidationError({"page": ["No such page."]}) from None


class AdminViewSet(GenericViewSet):
    authentication_classes = [AccessTokenAuthentication]
    permission_classes = [HasAdminScope]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]
    schema = AdminApiSchema()
    read_scope = ""
    write_scope = ""
    action_scopes: dict[str, str] = {}

    def get_exception_handler(self) -> Callable[..., Any]:
        return handle_exception

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        """After the token and scope checks: a path id and query parameters the database can take, of a
        sane length (PostgreSQL refuses NUL in text: a 500 otherwise)."""
        super().initial(request, *args, **kwargs)
        if any(len(str(value)) > MAX_PATH_VALUE or not storable(str(value)) for value in kwargs.values()):
            raise exceptions.NotFound()
        errors = {
            str(name)[:64]: ["A value without NUL, of at most 2048 characters."]
            for name, values in request.query_params.lists()
            for value in values
            if len(value) > MAX_QUERY_VALUE or not storable(value)
        }
        if errors:
            raise serializers.ValidationError(errors)

    def finalize_response(self, request: HttpRequest, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in NO_STORE.items():
            response[name] = value
        return response

    @property
    def caller(self) -> ApiCaller:
        caller = self.request.user
        assert isinstance(caller, ApiCaller)  # HasAdminScope let the request in
        return caller


def field_errors(
    exc: ModelValidationError, names: dict[str, str] | None = None
) -> serializers.ValidationError:
    """A model's ValidationError as the API's 400, its fields under their API names."""
    names = names or {}
    if not hasattr(exc, "error_dict"):
        return serializers.ValidationError({"non_field_errors": [str(message) for message in exc.messages]})
    errors: dict[str, list[str]] = {}
    for name, messages in exc.message_dict.items():
        key = "non_field_errors" if name == "__all__" else names.get(name, name)
        errors.setdefault(key, []).extend(str(message) for message in messages)
    return serializers.ValidationError(errors)


def created(body: Any) -> Response:
    return Response(body, status=201)
