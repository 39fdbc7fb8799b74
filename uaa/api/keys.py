"""/api/v1/keys: the signing keys' public halves and states, rotate now, revoke (RFC 7517 public members
only; the private half, wrapped or not, never leaves tokens/). Scopes: ``uaa.keys.read`` to read,
``uaa.keys.write`` to rotate or revoke. The changes are tokens/rotation.py's, as in the Django admin and
``manage.py rotate_signing_keys --now`` / ``revoke_signing_key``; their ledger records name the caller.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tokens.jwks import PUBLIC_MEMBERS
from tokens.models import SigningKey
from tokens.rotation import active_key_cache_gap, request_rotation, revoke_signing_key
from uaa.api.base import AdminViewSet, Pages
from uaa.api.fields import StrictCharField, StrictSerializer

STATES = tuple(SigningKey.State.values)
ALGORITHMS = tuple(SigningKey.Algorithm.values)


class SigningKeySerializer(serializers.Serializer):
    kid = serializers.CharField(read_only=True, help_text="RFC 7638 thumbprint")
    alg = serializers.ChoiceField(choices=ALGORITHMS, read_only=True)
    state = serializers.ChoiceField(choices=STATES, read_only=True)
    public_jwk = serializers.DictField(read_only=True, help_text="RFC 7517 public members only")
    created_at = serializers.DateTimeField(read_only=True, help_text="also when it was first published")
    activate_after = serializers.DateTimeField(read_only=True, allow_null=True)
    activated_at = serializers.DateTimeField(read_only=True, allow_null=True)
    retired_at = serializers.DateTimeField(read_only=True, allow_null=True)
    expired_at = serializers.DateTimeField(read_only=True, allow_null=True)
    revoked_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def to_representation(self, instance: SigningKey) -> dict[str, Any]:
        stored = instance.public_jwk if isinstance(instance.public_jwk, dict) else {}
        dates = ("created_at", "activate_after", "activated_at", "retired_at", "expired_at", "revoked_at")
        return {
            "kid": instance.kid,
            "alg": instance.algorithm,
            "state": instance.state,
            "public_jwk": {name: value for name, value in stored.items() if name in PUBLIC_MEMBERS},
            **{name: (value.isoformat() if (value := getattr(instance, name)) else None) for name in dates},
        }


class RotationRequestSerializer(StrictSerializer):
    algorithm = serializers.ChoiceField(choices=ALGORITHMS)


class RotationSerializer(serializers.Serializer):
    published = serializers.ListField(child=serializers.CharField(), help_text="kids")
    activated = serializers.ListField(child=serializers.CharField())
    retired = serializers.ListField(child=serializers.CharField())
    expired = serializers.ListField(child=serializers.CharField())
    active = SigningKeySerializer(allow_null=True, help_text="the key signing for this algorithm now")


class RevocationRequestSerializer(StrictSerializer):
    reason = StrictCharField(max_length=200, help_text="recorded with the revocation")


class RevocationSerializer(serializers.Serializer):
    revoked = SigningKeySerializer()
    active = SigningKeySerializer(allow_null=True)
    cache_gap_seconds = serializers.IntegerField(
        help_text="how long relying parties that cached the JWKS may reject the active key's tokens"
    )


def _active(algorithm: str) -> dict[str, Any] | None:
    key = SigningKey.objects.active().for_algorithm(algorithm).first()
    return SigningKeySerializer(key).data if key is not None else None


@extend_schema_view(
    list=extend_schema(
        summary="List signing keys (public halves, states)",
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, enum=list(STATES)),
            OpenApiParameter("alg", OpenApiTypes.STR, enum=list(ALGORITHMS)),
        ],
        responses=SigningKeySerializer(many=True),
    ),
    retrieve=extend_schema(summary="Read a signing key", responses=SigningKeySerializer),
)
class SigningKeyViewSet(AdminViewSet):
    read_scope = "uaa.keys.read"
    write_scope = "uaa.keys.write"
    lookup_field = "kid"
    lookup_value_regex = r"[A-Za-z0-9_-]{1,64}"
    pagination_class = Pages
    serializer_class = SigningKeySerializer
    http_method_names: ClassVar[list[str]] = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet[SigningKey]:
        return SigningKey.objects.order_by("-created_at", "-pk")

    def list(self, request: Request) -> Response:
        query = self.get_queryset()
        errors: dict[str, list[str]] = {}
        state, alg = request.query_params.get("state"), request.query_params.get("alg")
        if state:
            if state not in STATES:
                errors["state"] = [f"One of {', '.join(STATES)}."]
            query = query.filter(state=state)
        if alg:
            if alg not in ALGORITHMS:
                errors["alg"] = [f"One of {', '.join(ALGORITHMS)}."]
            query = query.filter(algorithm=alg)
        if errors:
            raise serializers.ValidationError(errors)
        page = self.paginate_queryset(query)
        return self.get_paginated_response(SigningKeySerializer(page, many=True).data)

    def retrieve(self, request: Request, kid: str) -> Response:
        return Response(SigningKeySerializer(self.get_object()).data)

    @extend_schema(
        summary="Rotate now: the standby signs once it has been published for the pre-publication window",
        request=RotationRequestSerializer,
        responses=RotationSerializer,
    )
    @action(detail=False, methods=["post"])
    def rotate(self, request: Request) -> Response:
        form = RotationRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        algorithm = form.validated_data["algorithm"]
        report = request_rotation(algorithm=algorithm, now=timezone.now(), actor=self.caller.actor)
        return Response(
            {
                "published": report.published,
                "activated": report.activated,
                "retired": report.retired,
                "expired": report.expired,
                "active": _active(algorithm),
            }
        )

    @extend_schema(
        summary="Revoke a key: out of the JWKS at once, its tokens stop verifying, the standby signs",
        request=RevocationRequestSerializer,
        responses=RevocationSerializer,
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, kid: str) -> Response:
        key = self.get_object()
        form = RevocationRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # No time passed in: the revocation reads the clock once it holds the key (tokens.rotation).
        revoked = revoke_signing_key(
            kid=key.kid, reason=form.validated_data["reason"], actor=self.caller.actor
        )
        now = timezone.now()
        active = SigningKey.objects.active().for_algorithm(revoked.algorithm).first()
        gap = active_key_cache_gap(algorithm=revoked.algorithm, now=now).seconds if active else 0
        return Response(
            {
                "revoked": SigningKeySerializer(revoked).data,
                "active": _active(revoked.algorithm),
                "cache_gap_seconds": gap,
            }
        )
