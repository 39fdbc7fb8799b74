"""Audit records of events announced by signals: signing-key changes and changes made in Django admin.

Both signals are sent inside the transaction of the change (tokens/rotation.py; the admin's change and
delete views), so the record commits or rolls back with it. Connected in ``TokensConfig.ready``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

from tokens import ledger
from tokens.models import LedgerRecord, SigningKey

ADMIN_ACTIONS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}


def record_signing_key_change(
    sender: type[SigningKey], *, event: str, key: SigningKey, at: Any, **extra: Any
) -> None:
    """``tokens.signals.signing_key_changed``: published, activated, retired, expired, revoked."""
    detail = {"alg": key.algorithm}
    if extra.get("reason"):
        detail["reason"] = str(extra["reason"])
    actor = str(extra.get("actor") or "")  # the admin who asked, when one did (tokens/rotation.py)
    ledger.append_record(event=f"key.{event}", at=at, sub=actor, subject=key.kid, detail=detail)


def _changed_fields(message: str) -> list[str]:
    """The field names of an admin change message (never the values)."""
    try:
        parts = json.loads(message) if message else []
    except ValueError:
        return []
    fields: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        for change in part.values() if isinstance(part, dict) else []:
            fields.extend(str(name) for name in (change or {}).get("fields", []))
    return fields


def record_admin_change(sender: type[LogEntry], *, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    """Django admin's own log of an add, change or delete, copied into the ledger (no values, names only)."""
    if not created:
        return
    model = (
        f"{instance.content_type.app_label}.{instance.content_type.model}" if instance.content_type else ""
    )
    ledger.append_record(
        event=LedgerRecord.Event.ADMIN_CHANGE,
        at=instance.action_time,
        sub=str(instance.user_id),
        subject=f"{model}:{instance.object_id}",
        detail={
            "action": ADMIN_ACTIONS.get(instance.action_flag, str(instance.action_flag)),
            "model": model,
            "object_id": str(instance.object_id or ""),
            "fields": _changed_fields(instance.change_message),
        },
    )


def record_admin_action(
    *, actor: str, model: str, object_id: str, action: str, fields: Sequence[str] = (), **detail: Any
) -> None:
    """An admin action that Django's ``LogEntry`` does not see (a bulk update, running a task, sealing),
    recorded like an admin change: ``sub`` = the admin, field names only, never values."""
    ledger.append_record(
        event=LedgerRecord.Event.ADMIN_CHANGE,
        sub=actor,
        subject=f"{model}:{object_id}",
        detail={"action": action, "model": model, "object_id": object_id, "fields": list(fields), **detail},
    )
