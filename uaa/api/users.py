"""/api/v1/users: create, list by e-mail, read, deactivate, reactivate, reset second factors, unlock, revoke
every session and token. Scopes: ``uaa.users.read`` to read, ``uaa.users.write`` for the rest.

The services are accounts/'s, as in the Django admin; their records name the calling client (``by`` in a
record about the user, ``sub`` in an ``admin.change``). Only ordinary accounts: a staff or superuser account
is changed in the Django admin by a superuser, never through a client's token (403 ``access_denied``), and
the API creates no staff account.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services, throttling
from accounts.mfa import enrollment, policy
from accounts.models import User, canonical_email, validate_account_email
from uaa.api.base import AdminViewSet, Pages, created
from uaa.api.fields import StrictCharField, StrictSerializer

STAFF_REFUSED = "A staff account is changed in the Django admin by a superuser, not through the API."


class UserSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True, help_text="the sub of this user's tokens")
    email = serializers.EmailField(read_only=True)
    email_verified = serializers.BooleanField(read_only=True)
    given_name = serializers.CharField(read_only=True)
    family_name = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    is_staff = serializers.BooleanField(read_only=True)
    has_second_factor = serializers.BooleanField(read_only=True)
    locked_until = serializers.DateTimeField(read_only=True, allow_null=True, help_text="sign-in lockout")
    date_joined = serializers.DateTimeField(read_only=True)
    last_login = serializers.DateTimeField(read_only=True, allow_null=True)

    def to_representation(self, instance: User) -> dict[str, Any]:
        locked = throttling.locked_until(email=instance.email)
        return {
            "id": str(instance.pk),
            "email": instance.email,
            "email_verified": instance.email_verified,
            "given_name": instance.given_name,
            "family_name": instance.family_name,
            "is_active": instance.is_active,
            "is_staff": instance.is_staff or instance.is_superuser,
            "has_second_factor": policy.has_factors(instance),
            "locked_until": locked.isoformat() if locked else None,
            "date_joined": instance.date_joined.isoformat(),
            "last_login": instance.last_login.isoformat() if instance.last_login else None,
        }


class NewUserSerializer(StrictSerializer):
    email = StrictCharField(max_length=254)
    password = StrictCharField(
        required=False,
        write_only=True,
        max_length=4096,
        help_text="Left out: no password (the user sets one through password reset).",
    )
    given_name = StrictCharField(required=False, allow_blank=True, max_length=150)
    family_name = StrictCharField(required=False, allow_blank=True, max_length=150)

    def validate_email(self, value: str) -> str:
        """accounts.models.validate_account_email, as in the Django admin: no look-alike of an account."""
        try:
            address = validate_account_email(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        if User.objects.filter(email=address).exists():
            raise serializers.ValidationError("An account with this e-mail address exists.")
        return address

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "password" in attrs:
            candidate = User(
                email=attrs["email"],
                given_name=attrs.get("given_name", ""),
                family_name=attrs.get("family_name", ""),
            )
            try:
                validate_password(attrs["password"], candidate)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs


class RevokedSerializer(serializers.Serializer):
    sessions = serializers.IntegerField()
    refresh_tokens = serializers.IntegerField()
    access_tokens = serializers.IntegerField()
    authorization_codes = serializers.IntegerField()


class UnlockedSerializer(serializers.Serializer):
    unlocked = serializers.BooleanField(help_text="false: the account was not locked")


def _action(summary: str, response: Any = None) -> Any:
    return extend_schema(summary=summary, request=None, responses={200: response or UserSerializer})


@extend_schema_view(
    list=extend_schema(
        summary="Find users by e-mail address",
        parameters=[OpenApiParameter("email", OpenApiTypes.STR, description="exactly this address")],
        responses=UserSerializer(many=True),
    ),
    retrieve=extend_schema(summary="Read a user", responses=UserSerializer),
    create=extend_schema(
        summary="Create an ordinary account", request=NewUserSerializer, responses={201: UserSerializer}
    ),
)
class UserViewSet(AdminViewSet):
    read_scope = "uaa.users.read"
    write_scope = "uaa.users.write"
    lookup_field = "pk"
    lookup_url_kwarg = "user_id"
    lookup_value_regex = r"[0-9a-fA-F-]{36}"
    pagination_class = Pages
    serializer_class = UserSerializer
    http_method_names: ClassVar[list[str]] = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet[User]:
        return User.objects.order_by("-date_joined", "pk")

    def _ordinary(self) -> User:
        user = self.get_object()
        if user.is_staff or user.is_superuser:
            raise exceptions.PermissionDenied(STAFF_REFUSED)
        return user

    def list(self, request: Request) -> Response:
        query = self.get_queryset()
        email = request.query_params.get("email")
        if email:
            query = query.filter(email=canonical_email(email[:254]))
        page = self.paginate_queryset(query)
        return self.get_paginated_response(UserSerializer(page, many=True).data)

    def retrieve(self, request: Request, user_id: str) -> Response:
        return Response(UserSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        form = NewUserSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user = services.register_user(
            email=data["email"],
            password=data.get("password"),
            given_name=data.get("given_name", ""),
            family_name=data.get("family_name", ""),
            actor=self.caller.actor,
        )
        return created(UserSerializer(user).data)

    @_action("Deactivate: no sign-in; every session and grant ends and stays ended")
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, user_id: str) -> Response:
        user = self._ordinary()
        services.deactivate_user(request=request, user=user, actor=self.caller.actor)  # type: ignore[arg-type]  # a DRF Request
        return Response(UserSerializer(user).data)

    @_action("Reactivate: sign-in allowed again; earlier grants stay ended")
    @action(detail=True, methods=["post"])
    def reactivate(self, request: Request, user_id: str) -> Response:
        user = self._ordinary()
        services.reactivate_user(user=user, actor=self.caller.actor)
        return Response(UserSerializer(user).data)

    @_action("Reset second factors: signed out everywhere, the next sign-in enrolls again")
    @action(detail=True, methods=["post"], url_path="reset-factors")
    def reset_factors(self, request: Request, user_id: str) -> Response:
        user = self._ordinary()
        enrollment.reset_factors(request=request, user=user)  # type: ignore[arg-type]
        user.refresh_from_db()
        return Response(UserSerializer(user).data)

    @_action("Unlock sign-in (clear the failed-attempt lockout)", UnlockedSerializer)
    @action(detail=True, methods=["post"])
    def unlock(self, request: Request, user_id: str) -> Response:
        user = self._ordinary()
        return Response({"unlocked": enrollment.unlock(request=request, user=user)})  # type: ignore[arg-type]

    @_action("Revoke every session and token of the user", RevokedSerializer)
    @action(detail=True, methods=["post"], url_path="revoke-tokens")
    def revoke_tokens(self, request: Request, user_id: str) -> Response:
        user = self._ordinary()
        revoked = services.revoke_user_grants(request=request, user=user)  # type: ignore[arg-type]
        return Response(
            {
                "sessions": revoked.sessions,
                "refresh_tokens": revoked.refresh_tokens,
                "access_tokens": revoked.access_tokens,
                "authorization_codes": revoked.authorization_codes,
            }
        )
