"""Client services: register a client and rotate its secret. Raw secrets are returned once, stored hashed."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from oauth2_provider.generators import generate_client_secret

from tokens import ledger
from tokens.models import LedgerRecord
from uaa.oauth.models import Client


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
def rotate_client_secret(*, client: Client, actor: str = "") -> str:
    """A new secret for a confidential client; the old one stops working at once. The record names
    ``actor``, the ``sub`` of the admin who rotated it."""
    if client.client_type != Client.CLIENT_CONFIDENTIAL:
        raise ValueError("Only confidential clients have a secret.")
    raw_secret = generate_client_secret()
    client.client_secret = raw_secret
    client.hash_client_secret = True
    client.save(update_fields=["client_secret", "hash_client_secret", "updated"])
    ledger.append_record(
        event=LedgerRecord.Event.CLIENT_SECRET_ROTATED, client_id=client.client_id, sub=actor
    )
    return raw_secret


@transaction.atomic
def update_client(*, client: Client, changes: dict[str, object], actor: str) -> Client:
    """Change ``client``'s fields (model field names to new values; never its id or secret), validated as
    a registration is, and record an ``admin.change`` naming ``actor`` and the fields (never the values)."""
    locked = Client.objects.select_for_update().get(pk=client.pk)
    for name, value in changes.items():
        if name in ("id", "client_id", "client_secret", "hash_client_secret", "created", "updated", "user"):
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
