"""/api/v1/clients: list, register (the secret in the 201 answer, once), read, change, delete, rotate the
secret, end the previous secret's grace window. Scopes: ``uaa.clients.read`` to read, ``uaa.clients.write``
for the rest (write does not imply read). Registration and rotation are uaa/oauth/services.py's, as in the
Django admin; every change is a ledger record whose ``sub`` is the calling client. The secret is never
shown again, nor logged, nor its hash.

Rotation may give the old secret a grace window: ``{"grace_seconds": N}`` in the body (0 to 30 days; without
it ``UAA_CLIENT_SECRET_GRACE_SECONDS``, 0 by default: the old secret stops at once). While the window runs
both secrets authenticate, and a client shows ``previous_secret_valid_until``; one previous secret only (a
second rotation replaces it). ``DELETE .../previous-secret`` ends the window at once, in every process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError as ModelValidationError
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from uaa.api.base import AdminViewSet, Pages, created, field_errors
from uaa.api.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictListField,
    StrictSerializer,
    uri_list,
)
from uaa.oauth.models import Client
from uaa.oauth.scopes import USER_SCOPES
from uaa.oauth.services import (
    MAX_SECRET_GRACE_SECONDS,
    delete_client,
    end_client_secret_grace,
    register_client,
    rotate_client_secret,
    update_client,
)

GRANT_TYPES = {
    "authorization_code": Client.GRANT_AUTHORIZATION_CODE,
    "client_credentials": Client.GRANT_CLIENT_CREDENTIALS,
}
GRANT_NAMES = {value: name for name, value in GRANT_TYPES.items()}
CLIENT_TYPES = (Client.CLIENT_CONFIDENTIAL, Client.CLIENT_PUBLIC)
ALGORITHMS = tuple(name for name, _ in Client.SIGNING_ALGORITHMS)
AUTH_METHODS = tuple(name for name, _ in Client.AUTH_METHODS)

# API name -> model field; a list field is stored space-separated
LIST_FIELDS = {
    "redirect_uris": "redirect_uris",
    "post_logout_redirect_uris": "post_logout_redirect_uris",
    "allowed_origins": "allowed_origins",
    "allowed_resources": "allowed_resources",
    "default_audience": "default_audience",
    "allowed_scopes": "allowed_scopes",
    "introspection_resources": "introspection_resources",
}
PLAIN_FIELDS = (
    "name",
    "trusted",
    "requires_mfa",
    "require_pkce",
    "algorithm",
    "token_endpoint_auth_method",
    "jwks",
    "jwks_uri",
    "rate_limit",
)
MODEL_NAMES = {"authorization_grant_type": "grant_type"}
SECRET_ROTATED_HELP = "When the current secret was made by a rotation; null: it is the registration's."
PREVIOUS_SECRET_HELP = (
    "While a rotation's grace window runs: when the previous secret stops authenticating; null: only the "
    "current secret authenticates."
)
GRACE_HELP = (
    "Seconds the old secret goes on authenticating beside the new one, from 0 (it stops at once) to "
    f"{MAX_SECRET_GRACE_SECONDS} (30 days); without it UAA_CLIENT_SECRET_GRACE_SECONDS (0 by default). A "
    "running window's previous secret is replaced: one previous secret only."
)
RATE_LIMIT_HELP = (
    "Requests per UAA_RATELIMIT_WINDOW this client may make at each of the token, introspection, revocation "
    "and userinfo endpoints (its successes are counted); null: the defaults; 0: no limit for this client."
)


def _no_spaces(value: str) -> str:
    if not value or any(ch.isspace() for ch in value) or not value.isprintable():
        raise serializers.ValidationError("A non-empty value without spaces.")
    return value


def _words(**kwargs: Any) -> StrictListField:
    return StrictListField(
        child=StrictCharField(max_length=2048, validators=[_no_spaces]), max_length=50, **kwargs
    )


class JWKSField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError("A JWK Set: a JSON object (RFC 7517 §5).")
        return data


class ClientSerializer(serializers.Serializer):
    """A registered client as the API shows it: never its secret."""

    client_id = serializers.CharField(read_only=True)
    name = serializers.CharField()
    client_type = serializers.ChoiceField(choices=CLIENT_TYPES)
    grant_type = serializers.ChoiceField(choices=tuple(GRANT_TYPES))
    redirect_uris = serializers.ListField(child=serializers.CharField())
    post_logout_redirect_uris = serializers.ListField(child=serializers.CharField())
    allowed_origins = serializers.ListField(child=serializers.CharField())
    trusted = serializers.BooleanField()
    requires_mfa = serializers.BooleanField()
    require_pkce = serializers.BooleanField()
    algorithm = serializers.ChoiceField(choices=ALGORITHMS)
    allowed_resources = serializers.ListField(child=serializers.CharField())
    default_audience = serializers.ListField(child=serializers.CharField())
    allowed_scopes = serializers.ListField(child=serializers.CharField())
    introspection_resources = serializers.ListField(child=serializers.CharField())
    token_endpoint_auth_method = serializers.ChoiceField(choices=AUTH_METHODS)
    jwks = serializers.JSONField()
    jwks_uri = serializers.CharField()
    rate_limit = serializers.IntegerField(allow_null=True, help_text=RATE_LIMIT_HELP)
    secret_rotated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text=SECRET_ROTATED_HELP
    )
    previous_secret_valid_until = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text=PREVIOUS_SECRET_HELP
    )
    created = serializers.DateTimeField(read_only=True)
    updated = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance: Client) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_id": instance.client_id,
            "client_type": instance.client_type,
            "grant_type": GRANT_NAMES.get(
                instance.authorization_grant_type, instance.authorization_grant_type
            ),
        }
        body.update({name: getattr(instance, name) for name in PLAIN_FIELDS})
        body.update({name: getattr(instance, field).split() for name, field in LIST_FIELDS.items()})
        body["secret_rotated_at"] = _isoformat(instance.secret_rotated_at)
        body["previous_secret_valid_until"] = _isoformat(instance.previous_secret_valid_until(timezone.now()))
        body["created"] = instance.created.isoformat() if instance.created else None
        body["updated"] = instance.updated.isoformat() if instance.updated else None
        return {name: body[name] for name in self.fields if name in body}


def _isoformat(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class RegisteredClientSerializer(ClientSerializer):
    client_secret = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Shown in this answer only; null for a public client. Store it now: it is kept hashed.",
    )


class ClientChangeSerializer(StrictSerializer):
    """What a change may set. The id, secret, type, grant type and dates are never set this way."""

    client_id = serializers.CharField(read_only=True)
    client_secret = serializers.CharField(read_only=True)
    client_type = serializers.CharField(read_only=True, help_text="Fixed at registration.")
    grant_type = serializers.CharField(read_only=True, help_text="Fixed at registration.")
    created = serializers.DateTimeField(read_only=True)
    updated = serializers.DateTimeField(read_only=True)
    id = serializers.IntegerField(read_only=True)
    secret_rotated_at = serializers.DateTimeField(read_only=True)
    previous_secret_valid_until = serializers.DateTimeField(
        read_only=True, help_text="Set by a rotation, ended by DELETE .../previous-secret."
    )

    name = StrictCharField(max_length=255, required=False)
    redirect_uris = uri_list(required=False)
    post_logout_redirect_uris = uri_list(required=False)
    allowed_origins = _words(required=False)
    trusted = StrictBooleanField(required=False)
    requires_mfa = StrictBooleanField(required=False)
    require_pkce = StrictBooleanField(required=False)
    algorithm = serializers.ChoiceField(choices=ALGORITHMS, required=False)
    allowed_resources = _words(required=False)
    default_audience = _words(required=False)
    allowed_scopes = _words(required=False)
    introspection_resources = _words(required=False)
    token_endpoint_auth_method = serializers.ChoiceField(choices=AUTH_METHODS, required=False)
    jwks = JWKSField(required=False)
    jwks_uri = StrictCharField(max_length=1000, required=False, allow_blank=True)
    rate_limit = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**31 - 1, help_text=RATE_LIMIT_HELP
    )

    def grant_type_of(self, attrs: dict[str, Any]) -> str:
        instance = self.instance
        assert isinstance(instance, Client)
        return instance.authorization_grant_type

    def validate_allowed_scopes(self, scopes: list[str]) -> list[str]:
        for scope in scopes:
            if scope in USER_SCOPES:
                raise serializers.ValidationError(
                    f"{scope} is an OpenID Connect user scope: no client needs it registered."
                )
            if scope not in settings.UAA_SCOPES:
                raise serializers.ValidationError(f"{scope[:100]} is not a scope UAA offers.")
        return scopes

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        admin = set(settings.UAA_ADMIN_SCOPES) & set(attrs.get("allowed_scopes", []))
        if admin and self.grant_type_of(attrs) != Client.GRANT_CLIENT_CREDENTIALS:
            raise serializers.ValidationError(
                {"allowed_scopes": [f"{sorted(admin)[0]} is for client-credentials clients only."]}
            )
        # A person gives admin scopes and trust (the Django admin, manage.py create_client), never another
        # client: a token with uaa.clients.write could otherwise give itself, or a client it registers,
        # every admin scope (uaa.keys.write, uaa.users.write), or spare a client the consent page of every
        # user, staff included. What an admin gave may stay, or go.
        instance = self.instance if isinstance(self.instance, Client) else None
        given = set(instance.allowed_scopes.split()) if instance else set()
        added = sorted(admin - given)
        if added:
            raise serializers.ValidationError(
                {"allowed_scopes": [f"{added[0]} is given in the Django admin, not through the API."]}
            )
        if attrs.get("trusted") and not (instance and instance.trusted):
            raise serializers.ValidationError(
                {"trusted": ["A client is made trusted in the Django admin, not through the API."]}
            )
        return attrs


class ClientRegistrationSerializer(ClientChangeSerializer):
    client_type = serializers.ChoiceField(choices=CLIENT_TYPES)  # type: ignore[assignment]
    grant_type = serializers.ChoiceField(choices=tuple(GRANT_TYPES))  # type: ignore[assignment]
    name = StrictCharField(max_length=255)

    def grant_type_of(self, attrs: dict[str, Any]) -> str:
        return GRANT_TYPES[attrs["grant_type"]]


class SecretRotationRequestSerializer(StrictSerializer):
    """A rotation's body: optional, and so is its one member."""

    grace_seconds = StrictIntegerField(
        required=False, min_value=0, max_value=MAX_SECRET_GRACE_SECONDS, help_text=GRACE_HELP
    )


def _model_changes(attrs: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, value in attrs.items():
        if name in LIST_FIELDS:
            changes[LIST_FIELDS[name]] = " ".join(value)
        else:
            changes[name] = value
    return changes


LIST_FILTERS = [
    OpenApiParameter("name", OpenApiTypes.STR, description="Part of the name (case-insensitive)."),
    OpenApiParameter("client_id", OpenApiTypes.STR, description="Exactly this client_id."),
    OpenApiParameter("client_type", OpenApiTypes.STR, enum=list(CLIENT_TYPES)),
    OpenApiParameter("grant_type", OpenApiTypes.STR, enum=list(GRANT_TYPES)),
]


@extend_schema_view(
    list=extend_schema(
        summary="List clients", parameters=LIST_FILTERS, responses=ClientSerializer(many=True)
    ),
    create=extend_schema(
        summary="Register a client (the secret is in this answer only)",
        request=ClientRegistrationSerializer,
        responses={201: RegisteredClientSerializer},
    ),
    retrieve=extend_schema(summary="Read a client", responses=ClientSerializer),
    partial_update=extend_schema(
        summary="Change a client", request=ClientChangeSerializer, responses=ClientSerializer
    ),
    destroy=extend_schema(summary="Delete a client with its tokens", responses={204: None}),
)
class ClientViewSet(AdminViewSet):
    read_scope = "uaa.clients.read"
    write_scope = "uaa.clients.write"
    lookup_field = "client_id"
    lookup_value_regex = r"[^/]+"
    pagination_class = Pages
    serializer_class = ClientSerializer
    http_method_names: ClassVar[list[str]] = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Client]:
        return Client.objects.order_by("-created", "-pk")

    def _filtered(self, request: Request) -> QuerySet[Client]:
        query = self.get_queryset()
        params = request.query_params
        errors: dict[str, list[str]] = {}
        name = params.get("name")
        if name:
            query = query.filter(name__icontains=name[:255])
        client_id = params.get("client_id")
        if client_id:
            query = query.filter(client_id=client_id[:255])
        client_type = params.get("client_type")
        if client_type:
            if client_type not in CLIENT_TYPES:
                errors["client_type"] = [f"One of {', '.join(CLIENT_TYPES)}."]
            query = query.filter(client_type=client_type)
        grant_type = params.get("grant_type")
        if grant_type:
            if grant_type not in GRANT_TYPES:
                errors["grant_type"] = [f"One of {', '.join(GRANT_TYPES)}."]
            query = query.filter(authorization_grant_type=GRANT_TYPES.get(grant_type, ""))
        if errors:
            raise serializers.ValidationError(errors)
        return query

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self._filtered(request))
        return self.get_paginated_response(ClientSerializer(page, many=True).data)

    def retrieve(self, request: Request, client_id: str) -> Response:
        return Response(ClientSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        form = ClientRegistrationSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        attrs = dict(form.validated_data)
        client_type, grant = attrs.pop("client_type"), GRANT_TYPES[attrs.pop("grant_type")]
        lists = {name: attrs.pop(name) for name in list(attrs) if name in LIST_FIELDS}
        try:
            issued = register_client(
                client_type=client_type, grant_type=grant, actor=self.caller.actor, **lists, **attrs
            )
        except ModelValidationError as exc:
            raise field_errors(exc, MODEL_NAMES) from None
        body = RegisteredClientSerializer(issued.client).data | {"client_secret": issued.client_secret}
        return created(body)

    def partial_update(self, request: Request, client_id: str) -> Response:
        client = self.get_object()
        form = ClientChangeSerializer(client, data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        if not form.validated_data:
            return Response(ClientSerializer(client).data)  # nothing to change, nothing to record
        try:
            client = update_client(
                client=client, changes=_model_changes(dict(form.validated_data)), actor=self.caller.actor
            )
        except ModelValidationError as exc:
            raise field_errors(exc, MODEL_NAMES) from None
        return Response(ClientSerializer(client).data)

    def destroy(self, request: Request, client_id: str) -> Response:
        delete_client(client=self.get_object(), actor=self.caller.actor)
        return Response(status=204)

    @extend_schema(
        summary="Rotate a confidential client's secret (the old one may go on for a grace window)",
        request=SecretRotationRequestSerializer,
        responses={200: RegisteredClientSerializer},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, client_id: str) -> Response:
        client = self._confidential()
        form = SecretRotationRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        grace = form.validated_data.get("grace_seconds")
        try:
            secret = rotate_client_secret(client=client, actor=self.caller.actor, grace_seconds=grace)
        except ValueError as exc:  # a secret stored in plain (made in a shell) cannot be kept as its hash
            raise serializers.ValidationError({"grace_seconds": [str(exc)]}) from None
        return Response(RegisteredClientSerializer(client).data | {"client_secret": secret})

    @extend_schema(
        summary="End the previous secret's grace window now: it stops authenticating at once",
        request=None,
        responses={200: ClientSerializer},
    )
    @action(detail=True, methods=["delete"], url_path="previous-secret")
    def previous_secret(self, request: Request, client_id: str) -> Response:
        client = self._confidential()
        end_client_secret_grace(client=client, actor=self.caller.actor)
        return Response(ClientSerializer(client).data)

    def _confidential(self) -> Client:
        client = self.get_object()
        if client.client_type != Client.CLIENT_CONFIDENTIAL:
            raise serializers.ValidationError({"client_type": ["A public client has no secret."]})
        return client
