"""Client services: register a client, rotate its secret (with a grace window for the previous one) and
end that window. Raw secrets are returned once, stored hashed; a previous secret is kept as its hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret

from tokens import ledger
from tokens.models import LedgerRecord
from uaa.oauth.hashers import is_client_secret_hash
from uaa.oauth.models import Client

# The longest grace window a rotation may give the previous secret (the setting, the API, the admin): a
# window is for rolling the new secret out, not a second secret to keep.
MAX_SECRET_GRACE_SECONDS = 30 * 86400
# Written by rotate_client_secret and end_client_secret_grace only, never by update_client.
SECRET_FIELDS = (
    "client_secret",
    "hash_client_secret",
    "previous_secret_hash",
    "previous_secret_expires",
    "secret_rotated_at",
)


@dataclass(frozen=True)
class IssuedCredentials:
    client: Client
    client_secret: str | None  # raw, shown exactly once; None for public clients


def register_client(
    *,
    name: str,
    client_type: str,
    grant_type: str,
    redirect_uris: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    trusted: bool = False,
    requires_mfa: bool = False,
    require_pkce: bool = True,
    algorithm: str = Client.RS256,
    default_audience: list[str] | None = None,
    token_endpoint_auth_method: str = Client.CLIENT_SECRET,
    jwks: dict[str, object] | None = None,
    jwks_uri: str = "",
    introspection_resources: list[str] | None = None,
    allowed_resources: list[str] | None = None,
    allowed_scopes: list[str] | None = None,
    allowed_origins: list[str] | None = None,
    rate_limit: int | None = None,
    actor: str = "",
) -> IssuedCredentials:
    """Register a client. ``allowed_resources`` (RFC 8707: the resource servers it may get tokens for)
    defaults to its default audience; ``allowed_scopes`` (its extra scopes, RFC 6749 §3.3) to none.
    ``require_pkce`` off (a confidential client only) lets its OpenID Connect requests with a ``nonce``
    leave PKCE out (uaa/oauth/rfc7636.py). ``actor`` names who registered it in the record (an admin's
    ``sub``, or the admin API's calling client)."""
    requestable = list(default_audience or []) if allowed_resources is None else allowed_resources
    client = Client(
        name=name,
        client_type=client_type,
        authorization_grant_type=grant_type,
        redirect_uris=" ".join(redirect_uris or []),
        post_logout_redirect_uris=" ".join(post_logout_redirect_uris or []),
        trusted=trusted,
        requires_mfa=requires_mfa,
        require_pkce=require_pkce,
        algorithm=algorithm,
        default_audience=" ".join(default_audience or []),
        token_endpoint_auth_method=token_endpoint_auth_method,
        jwks=jwks or {},
        jwks_uri=jwks_uri,
        introspection_resources=" ".join(introspection_resources or []),
        allowed_resources=" ".join(requestable),
        allowed_scopes=" ".join(allowed_scopes or []),
        allowed_origins=" ".join(allowed_origins or []),
        rate_limit=rate_limit,
    )
    client.full_clean(exclude=["client_secret", "client_id"])
    return save_registration(client=client, actor=actor)


@transaction.atomic
def save_registration(*, client: Client, actor: str = "") -> IssuedCredentials:
    """Store a new, validated ``client`` with a fresh secret, and its ``client.registered`` record naming
    ``actor`` (the ``sub`` of the admin who added it; empty from the shell). ``register_client`` and the
    admin's add form both end here, so every client gets its secret and its record the same way."""
    # A public client gets a random secret nobody is told: an empty one would let "client_id:" with an
    # empty password count as client authentication.
    raw_secret = generate_client_secret()
    client.client_secret = raw_secret
    client.hash_client_secret = True
    client.save()
    ledger.append_record(
        event=LedgerRecord.Event.CLIENT_REGISTERED,
        client_id=client.client_id,
        sub=actor,
        detail={
            "client_type": client.client_type,
            "grant_type": client.authorization_grant_type,
            "redirect_uris": client.redirect_uris.split(),
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "require_pkce": client.require_pkce,
            "introspection_resources": client.served_resources,
            "allowed_resources": client.requestable_resources,
            "allowed_scopes": client.requestable_scopes,
            "rate_limit": client.rate_limit,
        },
    )
    confidential = client.client_type == Client.CLIENT_CONFIDENTIAL
    return IssuedCredentials(client=client, client_secret=raw_secret if confidential else None)


@transaction.atomic
def rotate_client_secret(*, client: Client, actor: str = "", grace_seconds: int | None = None) -> str:
    """A new secret for a confidential client (returned raw, once). The old one goes on authenticating for
    ``grace_seconds`` (default ``UAA_CLIENT_SECRET_GRACE_SECONDS``, 0: it stops at once; at most
    ``MAX_SECRET_GRACE_SECONDS``), kept as the hash it was stored as, never in plain. One previous secret
    only: a rotation within a window replaces the previous secret by the one it rotates out, and a rotation
    without a window ends a running one. The ``client.secret_rotated`` record names ``actor`` (the ``sub``
    of the admin, or the admin API's calling client), the window and its end. ``client`` is updated too."""
    if client.client_type != Client.CLIENT_CONFIDENTIAL:
        raise ValueError("Only confidential clients have a secret.")
    grace = settings.UAA_CLIENT_SECRET_GRACE_SECONDS if grace_seconds is None else grace_seconds
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_SECRET_GRACE_SECONDS:
        raise ValueError(f"The grace window is from 0 to {MAX_SECRET_GRACE_SECONDS} seconds.")
    locked = Client.objects.select_for_update().get(pk=client.pk)
    now = timezone.now()
    rotated_out = locked.client_secret  # the hash (DOT hashes on save): what a window keeps
    if grace and not (locked.hash_client_secret and is_client_secret_hash(rotated_out)):
        raise ValueError(
            "This client's secret is not stored as a uaa_sha256 hash: rotate it without a grace window."
        )
    raw_secret = generate_client_secret()
    locked.client_secret = raw_secret
    locked.hash_client_secret = True
    locked.previous_secret_hash = rotated_out if grace else ""
    locked.previous_secret_expires = now + timedelta(seconds=grace) if grace else None
    locked.secret_rotated_at = now
    locked.save(update_fields=[*SECRET_FIELDS, "updated"])
    _copy_secret_fields(source=locked, target=client)
    detail: dict[str, object] = {"grace_seconds": grace}
    if locked.previous_secret_expires is not None:
        detail["previous_secret_valid_until"] = ledger.rfc3339_utc(locked.previous_secret_expires)
    ledger.append_record(
        event=LedgerRecord.Event.CLIENT_SECRET_ROTATED,
        client_id=client.client_id,
        sub=actor,
        at=now,
        detail=detail,
    )
    return raw_secret


@transaction.atomic
def end_client_secret_grace(*, client: Client, actor: str = "") -> bool:
    """End the previous secret's grace window now ("end the grace now": a leaked old secret is killed at
    once, in every process: the write moves the row's generation, uaa/oauth/client_cache.py). Whether a
    window was running; only then is there a ``client.secret_grace_ended`` record naming ``actor``, with
    when the window would have ended. ``client`` is updated too."""
    if client.client_type != Client.CLIENT_CONFIDENTIAL:
        raise ValueError("Only confidential clients have a secret.")
    locked = Client.objects.select_for_update().get(pk=client.pk)
    now = timezone.now()
    running = locked.previous_secret_at(now) != ""
    expires = locked.previous_secret_expires
    if locked.previous_secret_hash or expires is not None:  # an ended window's leftovers go too
        locked.previous_secret_hash, locked.previous_secret_expires = "", None
        locked.save(update_fields=["previous_secret_hash", "previous_secret_expires", "updated"])
    _copy_secret_fields(source=locked, target=client)
    if running and expires is not None:
        ledger.append_record(
            event=LedgerRecord.Event.CLIENT_SECRET_GRACE_ENDED,
            client_id=client.client_id,
            sub=actor,
            at=now,
            detail={"previous_secret_valid_until": ledger.rfc3339_utc(expires)},
        )
    return running


def _copy_secret_fields(*, source: Client, target: Client) -> None:
    for name in (*SECRET_FIELDS, "updated"):
        setattr(target, name, getattr(source, name))


@transaction.atomic
def update_client(*, client: Client, changes: dict[str, object], actor: str) -> Client:
    """Change ``client``'s fields (model field names to new values; never its id or secret), validated as
    a registration is, and record an ``admin.change`` naming ``actor`` and the fields (never the values)."""
    locked = Client.objects.select_for_update().get(pk=client.pk)
    for name, value in changes.items():
        if name in ("id", "client_id", *SECRET_FIELDS, "created", "updated", "user", "generation"):
            raise ValueError(f"{name} is not changed here")
        setattr(locked, name, value)
    locked.full_clean(exclude=["client_secret", "client_id"])
    locked.save()
    _record_change(client=locked, actor=actor, action="change", fields=sorted(changes))
    return locked


@transaction.atomic
def delete_client(*, client: Client, actor: str) -> None:
    """Delete ``client`` with its tokens, codes and consents; the ``admin.change`` record names ``actor``."""
    _record_change(client=client, actor=actor, action="delete", fields=[])
    client.delete()


def _record_change(*, client: Client, actor: str, action: str, fields: list[str]) -> None:
    ledger.append_record(
        event=LedgerRecord.Event.ADMIN_CHANGE,
        client_id=client.client_id,
        sub=actor,
        subject=f"oauth.client:{client.pk}",
        detail={"action": action, "model": "oauth.client", "object_id": str(client.pk), "fields": fields},
    )
