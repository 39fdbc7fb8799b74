"""/api/v1/audit: the ledger's records (filtered, cursor-paginated, newest first), the current signed tree
head, RFC 9162 inclusion and consistency proofs, and the export. Scope ``uaa.audit.read``; nothing here
writes (reads are not recorded in the ledger, as in the Django admin).

The tree head is ``published_tree_head``'s, as ``/.well-known/audit-head.json`` serves it: only a head the
sealer itself would extend (its signature verifies, it extends the witness); otherwise 503, never a stale
one. Proofs are tokens/ledger/tree.py's, documents tokens/verifier.py checks offline.

The export is ``manage.py audit export``'s four files in one ZIP archive, streamed batch by batch
(tokens/ledger/export.py ``stream_export``): unzipped, it is the directory tokens/verifier.py verifies.
Always the whole sealed ledger from its pruning point: the format verifies an export that starts at 0 or
at a signed prune point and ends at a signed head, nothing in between, so there are no range parameters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from tokens import ledger
from tokens.models import LedgerRecord, TreeHead
from uaa.api.base import AdminViewSet
from uaa.api.errors import NO_STORE
from uaa.api.schema import ErrorSerializer, nullable_links

MAX_FILTER = 255
EXPORT_TYPE = "application/zip"
WHOLE_EXPORT = "The export has no parameters: it is always the whole sealed ledger (docs/api.md)."


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return nullable_links(super().get_paginated_response_schema(schema))

    def decode_cursor(self, request: Request) -> Any:
        refused = serializers.ValidationError({"cursor": ["Not a cursor this API gave."]})
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise refused from None
        position = cursor.position if cursor is not None else None
        if position is not None and not (position.isascii() and position.isdigit() and len(position) < 19):
            raise refused  # the position is compared with the id column: an integer, nothing else
        return cursor


class RecordSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the row: the cursor's order")
    leaf_index = serializers.IntegerField(allow_null=True, help_text="null until a tree head seals it")
    leaf_hash = serializers.CharField(allow_blank=True)
    event = serializers.CharField()
    at = serializers.DateTimeField()
    client_id = serializers.CharField(allow_blank=True)
    actor = serializers.CharField(allow_blank=True, help_text="the record's sub")
    record = serializers.JSONField(allow_null=True, help_text="the record (RFC 8785 JSON) as stored")

    def to_representation(self, instance: LedgerRecord) -> dict[str, Any]:
        try:
            body = json.loads(instance.body)
        except ValueError:
            body = None  # written into the database outside UAA: `audit verify` names it
        return {
            "id": instance.pk,
            "leaf_index": instance.leaf_index,
            "leaf_hash": instance.leaf_hash,
            "event": instance.event,
            "at": instance.at.isoformat(),
            "client_id": instance.client_id,
            "actor": instance.actor,
            "record": body,
        }


class TreeHeadSerializer(serializers.Serializer):
    issuer = serializers.CharField()
    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField()
    timestamp = serializers.IntegerField(help_text="ms since the epoch")
    kid = serializers.CharField(help_text="the audit key (/.well-known/audit-keys.json)")
    signature = serializers.CharField()
    consistency = serializers.ListField(child=serializers.CharField())


class InclusionSerializer(serializers.Serializer):
    issuer = serializers.CharField()
    index = serializers.IntegerField()
    leaf_hash = serializers.CharField()
    record = serializers.JSONField()
    tree_head = serializers.JSONField()
    inclusion = serializers.ListField(child=serializers.CharField())


class ConsistencySerializer(serializers.Serializer):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    consistency = serializers.ListField(child=serializers.CharField())


def _time(name: str, value: str | None, errors: dict[str, list[str]]) -> datetime | None:
    if not value:
        return None
    parsed = None
    try:
        parsed = parse_datetime(value[:64])
    except ValueError:
        pass
    if parsed is None or parsed.tzinfo is None:
        errors[name] = ["An RFC 3339 date-time with its offset, e.g. 2026-01-31T12:00:00Z."]
        return None
    try:  # in UTC, as stored: PostgreSQL refuses offsets beyond ±15:59 (RFC 3339 allows ±23:59)
        return parsed.astimezone(UTC)
    except OverflowError:
        errors[name] = ["A date-time within years 1 to 9999 once in UTC."]
        return None


def _size(name: str, value: str | None, errors: dict[str, list[str]], *, required: bool) -> int | None:
    if value is None or value == "":
        if required:
            errors[name] = ["Required."]
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        errors[name] = ["A non-negative integer."]
        return None
    return int(value)


def _not_found(message: str) -> Response:
    return Response({"error": "not_found", "error_description": message}, status=404, headers=NO_STORE)


def _unverifiable_head() -> Response:
    body = {
        "error": "temporarily_unavailable",
        "error_description": "The latest tree head cannot be verified; try again later.",
    }
    return Response(body, status=HTTPStatus.SERVICE_UNAVAILABLE, headers={"Retry-After": "60"})


def _missing(description: str) -> OpenApiResponse:
    """A 404 of a route without a path id (the document lists 404 for those with one by itself)."""
    return OpenApiResponse(response=ErrorSerializer, description=description)


class AnyAccept(BaseContentNegotiation):
    """The export answers a ZIP archive, and its errors JSON, whatever ``Accept`` asks for (RFC 9110
    §12.5.1 lets a server disregard it): no 406 for ``Accept: application/zip``."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: list[Any], format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


RECORD_FILTERS = [
    OpenApiParameter("event", OpenApiTypes.STR, description="an event name, e.g. token.issued"),
    OpenApiParameter("client_id", OpenApiTypes.STR),
    OpenApiParameter("actor", OpenApiTypes.STR, description="the record's sub"),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="at or after (RFC 3339, with offset)"),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="before (RFC 3339, with offset)"),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="from the previous page's next"),
    OpenApiParameter("page_size", OpenApiTypes.INT, description="100 by default, at most 1000"),
]


class AuditViewSet(AdminViewSet):
    read_scope = "uaa.audit.read"
    write_scope = "uaa.audit.read"  # nothing here writes; every method is GET
    http_method_names: ClassVar[list[str]] = ["get", "head", "options"]
    serializer_class = RecordSerializer

    def get_queryset(self) -> QuerySet[LedgerRecord]:
        return LedgerRecord.objects.all()

    @extend_schema(
        summary="Audit records, newest first",
        parameters=RECORD_FILTERS,
        responses=RecordSerializer(many=True),
    )
    @action(detail=False, methods=["get"], pagination_class=NewestFirst)
    def records(self, request: Request) -> Response:
        params = request.query_params
        errors: dict[str, list[str]] = {}
        query = self.get_queryset()
        for name, column in (("event", "event"), ("client_id", "client_id"), ("actor", "actor")):
            value = params.get(name)
            if value:
                query = query.filter(**{column: value[:MAX_FILTER]})
        since, until = (
            _time("since", params.get("since"), errors),
            _time("until", params.get("until"), errors),
        )
        if since is not None:
            query = query.filter(at__gte=since)
        if until is not None:
            query = query.filter(at__lt=until)
        if errors:
            raise serializers.ValidationError(errors)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(query, request, view=self)
        return paginator.get_paginated_response(RecordSerializer(page, many=True).data)

    @extend_schema(
        summary="The current signed tree head (as /.well-known/audit-head.json)",
        responses={200: TreeHeadSerializer, 404: _missing("not_found: no tree head has been signed yet")},
    )
    @action(detail=False, methods=["get"])
    def head(self, request: Request) -> Response:
        try:
            head = ledger.published_tree_head()
        except ledger.SealRefused:
            return _unverifiable_head()
        if head is None:
            return _not_found("No tree head has been signed yet.")
        return Response(head)

    @extend_schema(
        summary="RFC 9162 §2.1.3 inclusion proof of the record at a leaf index",
        parameters=[
            OpenApiParameter("index", OpenApiTypes.INT, required=True),
            OpenApiParameter("tree_size", OpenApiTypes.INT, description="a signed head's size; latest"),
        ],
        responses={
            200: InclusionSerializer,
            404: _missing("not_found: no such sealed record or signed head"),
        },
    )
    @action(detail=False, methods=["get"])
    def inclusion(self, request: Request) -> Response:
        errors: dict[str, list[str]] = {}
        index = _size("index", request.query_params.get("index"), errors, required=True)
        size = _size("tree_size", request.query_params.get("tree_size"), errors, required=False)
        if errors or index is None:
            raise serializers.ValidationError(errors)
        try:
            return Response(ledger.inclusion_proof(index=index, tree_size=size))
        except (TreeHead.DoesNotExist, LedgerRecord.DoesNotExist):
            return _not_found("No such sealed record in a signed tree head of that size.")

    @extend_schema(
        summary="RFC 9162 §2.1.4 consistency proof between two signed tree sizes",
        parameters=[
            OpenApiParameter("first", OpenApiTypes.INT, required=True),
            OpenApiParameter("second", OpenApiTypes.INT, required=True),
        ],
        responses={200: ConsistencySerializer, 404: _missing("not_found: not two signed sizes, or pruned")},
    )
    @action(detail=False, methods=["get"])
    def consistency(self, request: Request) -> Response:
        errors: dict[str, list[str]] = {}
        first = _size("first", request.query_params.get("first"), errors, required=True)
        second = _size("second", request.query_params.get("second"), errors, required=True)
        if not errors and first is not None and second is not None and not 0 < first <= second:
            errors["first"] = ["0 < first <= second."]
        if errors or first is None or second is None:
            raise serializers.ValidationError(errors)
        sizes = set(
            TreeHead.objects.filter(tree_size__in=[first, second]).values_list("tree_size", flat=True)
        )
        if sizes != {first, second}:
            return _not_found("Both sizes must be those of signed tree heads.")
        try:
            proof = ledger.consistency_proof(first=first, second=second)
        except (LookupError, ValueError):
            return _not_found("That range was pruned: prove it from the export that holds it.")
        return Response({"first": first, "second": second, "consistency": proof})

    @extend_schema(
        summary="The sealed ledger as one ZIP archive: the export an auditor verifies offline",
        description="The four files `manage.py audit export` writes (manifest.json, records.jsonl, "
        "tree-heads.jsonl, audit-keys.json), byte for byte, in a ZIP archive streamed as it is read from "
        "the database: unzip it and run tokens/verifier.py on the directory. Everything sealed up to the "
        "latest signed tree head, from record 0 or the last prune point; records not sealed yet are not "
        "in it. No parameters: a partial export would not verify.",
        parameters=[],
        responses={
            (200, EXPORT_TYPE): OpenApiResponse(
                response=OpenApiTypes.BINARY,
                description="the archive (Content-Disposition: attachment; chunked, no Content-Length)",
            ),
            404: _missing("not_found: nothing sealed yet"),
        },
    )
    @action(detail=False, methods=["get"], content_negotiation_class=AnyAccept)
    def export(self, request: Request) -> HttpResponse | StreamingHttpResponse | Response:
        if request.query_params:
            refused = {str(name)[:64]: [WHOLE_EXPORT] for name in request.query_params}
            raise serializers.ValidationError(refused)
        try:
            plan = ledger.plan_export(now=timezone.now())
        except ledger.ExportRefused:
            return _unverifiable_head()  # as /head: nothing is exported from a ledger cut back or rewritten
        if plan is None:
            return _not_found("No tree head has been signed yet.")
        response: HttpResponse | StreamingHttpResponse
        if request.method == "HEAD":
            response = HttpResponse(content_type=EXPORT_TYPE)  # the headers, without reading the ledger
        else:
            response = StreamingHttpResponse(ledger.stream_export(plan), content_type=EXPORT_TYPE)
        response["Content-Disposition"] = f'attachment; filename="{plan.filename}"'
        return response
