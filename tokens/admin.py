"""Signing keys, the audit ledger, tree heads and audit keys in Django admin; public material only;
"rotate now" and "revoke" actions.

The audit ledger too: a read-only record browser with the current signed tree head and "verify now",
the tree heads, and the audit keys; and django-celery-beat's periodic tasks (tokens/beat_admin.py).

Each action that changes something needs a permission of its own (``tokens.rotate_signingkey``,
``revoke_signingkey``, ``rotate_auditkey``, ``seal_ledger``): Django neither offers nor runs an action
whose ``allowed_permissions`` the user lacks, and the seal view checks its permission itself. Each passes
the acting admin (``sub``) to the service, whose records name them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from django_celery_beat.models import PeriodicTask

from tokens.beat_admin import AuditedPeriodicTaskAdmin, actor_of, register_schedule_admins
from tokens.ledger import SealRefused, seal_tree_head, sealing_problem, verify_stored_ledger
from tokens.ledger.audit_keys import rotate_audit_key
from tokens.models import AuditKey, LedgerRecord, SigningKey, TreeHead
from tokens.receivers import record_admin_action
from tokens.rotation import active_key_cache_gap, request_rotation, revoke_signing_key


class ReadOnlyAdminMixin:
    """No add, change or delete in the admin: these rows are written by their services alone (signing
    keys' states by tokens.rotation, the ledger and its tree heads by tokens.ledger, audit keys by their
    rotation), reached through the actions that call them. Viewing needs the view permission as usual."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "kid",
        "algorithm",
        "state",
        "created_at",
        "activate_after",
        "activated_at",
        "retired_at",
        "expired_at",
        "revoked_at",
    ]
    list_filter = ["algorithm", "state"]
    search_fields = ["kid"]
    ordering = ["-created_at"]
    readonly_fields = (
        "kid",
        "algorithm",
        "state",
        "kek_id",
        "public_jwk",
        "created_at",
        "activate_after",
        "activated_at",
        "retired_at",
        "expired_at",
        "revoked_at",
    )
    fields = readonly_fields
    actions = ["rotate_now", "revoke"]

    def has_rotate_signingkey_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tokens.rotate_signingkey")

    def has_revoke_signingkey_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tokens.revoke_signingkey")

    @admin.action(
        description="Rotate now: the standby (next) key of these algorithms signs once pre-published",
        permissions=["rotate_signingkey"],
    )
    def rotate_now(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        for algorithm in sorted(set(queryset.values_list("algorithm", flat=True))):
            report = request_rotation(algorithm=algorithm, now=timezone.now(), actor=actor_of(request))
            if report.activated:
                signing, standby = ", ".join(report.activated), ", ".join(report.published)
                self.message_user(request, f"{algorithm}: {signing} signs now; new standby {standby}.")
            else:
                standby = ", ".join(report.published) or "already published"
                self.message_user(request, f"{algorithm}: next key {standby}; it signs once pre-published.")

    @admin.action(
        description="Revoke now (emergency): remove from JWKS, reject every token it signed",
        permissions=["revoke_signingkey"],
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        revoked_at: dict[str, datetime] = {}
        for kid, algorithm in list(queryset.values_list("kid", "algorithm")):
            revoked_at[algorithm] = timezone.now()
            revoke_signing_key(kid=kid, now=revoked_at[algorithm], reason="admin", actor=actor_of(request))
            self.message_user(request, f"revoked {kid}", level=messages.WARNING)
        for algorithm, at in sorted(revoked_at.items()):  # does a cached JWKS hold what signs now?
            gap = active_key_cache_gap(algorithm=algorithm, now=at)
            self.message_user(request, gap.message, level=messages.WARNING if gap.seconds else messages.INFO)


# --- the audit ledger: read-only, with the current signed tree head and "verify now" -----------------
class SealedFilter(admin.SimpleListFilter):
    title = "sealed"
    parameter_name = "sealed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "sealed under a signed tree head"), ("no", "not sealed yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[LedgerRecord]) -> QuerySet[LedgerRecord]:
        if self.value() == "yes":
            return queryset.filter(leaf_index__isnull=False)
        if self.value() == "no":
            return queryset.filter(leaf_index__isnull=True)
        return queryset


class EventFilter(admin.SimpleListFilter):
    """The events UAA defines (``LedgerRecord.Event``), by label: the column has no choices, and the
    distinct values of a table this size are not read for a filter (``?event=<name>`` as before)."""

    title = "event"
    parameter_name = "event"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in LedgerRecord.Event.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[LedgerRecord]) -> QuerySet[LedgerRecord]:
        return queryset.filter(event=self.value()) if self.value() else queryset


@admin.register(LedgerRecord)
class LedgerRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Browse the ledger (filter by event and time; search by client_id, actor or leaf index). Read-only."""

    list_display = ["leaf_index", "at", "event_label", "client_id", "actor", "summary"]
    list_filter = [EventFilter, "at", SealedFilter]
    search_fields = ["=client_id", "=actor", "=leaf_index"]
    date_hierarchy = "at"
    ordering = ["-id"]
    readonly_fields = (
        "leaf_index",
        "leaf_hash",
        "event_label",
        "at",
        "client_id",
        "actor",
        "record",
    )
    fields = readonly_fields
    show_full_result_count = False
    change_list_template = "admin/tokens/ledgerrecord/change_list.html"

    @admin.display(description="event", ordering="event")
    def event_label(self, obj: LedgerRecord) -> str:
        return obj.event_label

    @admin.display(description="record")
    def summary(self, obj: LedgerRecord) -> str:
        try:
            record = json.loads(obj.body)
            parts = [record.get(name, "") for name in ("grant_type", "subject", "jti")]
        except (ValueError, AttributeError):
            return "(not a ledger record: written outside UAA)"
        return " ".join(str(part) for part in parts if part)[:80]

    @admin.display(description="record (RFC 8785 canonical JSON)")
    def record(self, obj: LedgerRecord) -> str:
        try:
            shown = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            shown = obj.body  # escaped by format_html
        return format_html("<pre>{}</pre>", shown)

    def get_urls(self) -> list[URLPattern]:
        urls = [
            path("verify/", self.admin_site.admin_view(self.verify_view), name="tokens_ledgerrecord_verify"),
            path("seal/", self.admin_site.admin_view(self.seal_view), name="tokens_ledgerrecord_seal"),
        ]
        return urls + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        head = TreeHead.objects.select_related("audit_key").order_by("-tree_size", "-timestamp").first()
        context = {
            **(extra_context or {}),
            "tree_head": head,
            "unsealed": LedgerRecord.objects.unsealed().count(),
            "can_seal": self.has_seal_ledger_permission(request),
            "sealing_problem": sealing_problem(now=timezone.now()),
        }
        return super().changelist_view(request, extra_context=context)

    def has_seal_ledger_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tokens.seal_ledger")

    @method_decorator(require_POST)
    def verify_view(self, request: HttpRequest) -> HttpResponse:
        """Verify now: every record, every tree head signature, consistency between consecutive heads.

        It reads and changes nothing, so whoever may browse the ledger (an auditor) may run it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        report = verify_stored_ledger(now=timezone.now())
        self.message_user(request, report.summary(), level=messages.SUCCESS if report.ok else messages.ERROR)
        return HttpResponseRedirect(reverse("admin:tokens_ledgerrecord_changelist"))

    @method_decorator(require_POST)
    def seal_view(self, request: HttpRequest) -> HttpResponse:
        """Seal now: sign a tree head over the unsealed records (what beat does every few seconds)."""
        if not self.has_seal_ledger_permission(request):
            raise PermissionDenied
        try:  # not inside a transaction: the witness records a head once it is committed
            head = seal_tree_head(now=timezone.now())
        except SealRefused as refusal:
            self.message_user(request, f"Sealing refused: {refusal}", level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:tokens_ledgerrecord_changelist"))
        if head is not None:  # sealed by the next head, like any record written after this one
            record_admin_action(
                actor=actor_of(request),
                model="tokens.treehead",
                object_id=str(head.pk),
                action="seal",
                tree_size=head.tree_size,
            )
        self.message_user(request, f"Sealed: tree size {head.tree_size}." if head else "Nothing to seal.")
        return HttpResponseRedirect(reverse("admin:tokens_ledgerrecord_changelist"))


@admin.register(TreeHead)
class TreeHeadAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["tree_size", "root_hash", "signed_at", "audit_key", "pruned_at"]
    readonly_fields = (
        "tree_size",
        "root_hash",
        "timestamp",
        "signed_at",
        "audit_key",
        "signature",
        "consistency",
        "pruned_at",
    )
    fields = readonly_fields
    ordering = ["-tree_size", "-timestamp"]


@admin.register(AuditKey)
class AuditKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Audit keys: public material only; "rotate" starts a new key (the old one stays published)."""

    list_display = ["kid", "state", "created_at", "retired_at"]
    readonly_fields = (
        "kid",
        "state",
        "kek_id",
        "public_jwk",
        "created_at",
        "retired_at",
    )
    fields = readonly_fields
    actions = ["rotate"]

    def has_rotate_auditkey_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tokens.rotate_auditkey")

    @admin.action(
        description="Rotate the audit key (new tree heads are signed by a new key)",
        permissions=["rotate_auditkey"],
    )
    def rotate(self, request: HttpRequest, queryset: QuerySet[AuditKey]) -> None:
        key = rotate_audit_key(now=timezone.now(), actor=actor_of(request))
        self.message_user(request, f"audit key {key.kid} now signs tree heads")


def audited_delete_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse | None:
    """Django's "delete selected", with an audit record per object when several go at once.

    Django logs a multi-object deletion with ``bulk_create``, which sends no ``post_save`` for
    tokens.receivers to see; a single object is logged (and so recorded) the usual way.
    """
    if not request.POST.get("post"):
        return delete_selected(modeladmin, request, queryset)
    opts = queryset.model._meta
    pks = [str(pk) for pk in queryset.values_list("pk", flat=True)]
    with transaction.atomic():
        response = delete_selected(modeladmin, request, queryset)
        gone = len(pks) > 1 and not queryset.model._default_manager.filter(pk__in=pks).exists()
        model = f"{opts.app_label}.{opts.model_name}"
        for pk in pks if gone else []:
            record_admin_action(actor=actor_of(request), model=model, object_id=pk, action="delete")
    return response


audited_delete_selected.short_description = delete_selected.short_description  # type: ignore[attr-defined]
audited_delete_selected.allowed_permissions = ("delete",)  # type: ignore[attr-defined]
admin.site.add_action(audited_delete_selected, "delete_selected")

# django-celery-beat registers its own admin for periodic tasks (imported by tokens.beat_admin): this one
# puts its actions behind change_periodictask and records them, and its schedules (part of every task that
# runs on them) need change_periodictask too.
admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, AuditedPeriodicTaskAdmin)
register_schedule_admins(admin.site)
