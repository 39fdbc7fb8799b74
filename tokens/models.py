"""The keys and the ledger: signing keys (``next`` → ``active`` → ``retired`` → ``expired``, or ``revoked`` at
once), audit keys, ledger records and signed tree heads.

The private half is stored only wrapped (tokens/keys.py): AES-256-GCM under a per-key data key,
itself wrapped under the key-encryption key from ``UAA_KEK``. Nothing in the database alone decrypts it.
A revoked or expired key's private half is destroyed (its blobs emptied); its public JWK stays.

The lifecycle only moves forward, and a key's row is published only while nothing says it moved on:
its own ``retired_at`` / ``expired_at`` / ``revoked_at``, and the audit ledger's append-only, sealed
``key.retired`` / ``key.expired`` / ``key.revoked`` records (``SigningKeyQuerySet.publishable``). A
database write that sets a revoked key's ``state`` back is a contradiction, never a resurrection.

The audit ledger lives here too: ``AuditKey`` (Ed25519, wrapped the same way), ``LedgerRecord`` (the
append-only leaves) and ``TreeHead`` (signed Merkle tree heads); the services are in tokens/ledger/.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar

from django.db import connection, models
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

# The ledger records that end a key's time in a state. The partial index ``ledger_key_records`` holds
# exactly these rows, so looking a key up among them never reads the token records. Its predicate is
# repeated literally in :func:`contradiction_sql`: SQLite uses a partial index only for the same literal
# term (never for a bound parameter), in the same order.
KEY_RECORD_EVENTS = ("key.expired", "key.retired", "key.revoked")
_IN_KEY_RECORD_INDEX = "event IN ('key.expired', 'key.retired', 'key.revoked')"


def contradiction_sql(key: str) -> str:
    """SQL that is true for a signing-key row whose state is contradicted by what a database write
    cannot take back: its own ``revoked_at`` / ``expired_at`` (whatever the state says), its
    ``retired_at`` (for a ``next`` or ``active`` row), or a ledger record of its kid: ``key.revoked``
    or ``key.expired``, or ``key.retired`` for a ``next`` or ``active`` row. ``key`` is the (quoted)
    table name or alias the outer query gives ``tokens_signingkey``.

    Plain SQL, written once, because it runs for every token signed and verified: one small correlated
    subquery on the partial index, cheap to plan. The record's ``subject`` member is matched exactly as
    RFC 8785 writes it (``"subject":"<kid>"``; a kid is base64url, nothing in it is escaped).
    """
    position = "STRPOS" if connection.vendor == "postgresql" else "INSTR"
    ledger = connection.ops.quote_name("tokens_ledgerrecord")
    early = "('next', 'active')"
    return (
        f"({key}.revoked_at IS NOT NULL OR {key}.expired_at IS NOT NULL"  # noqa: S608 - constants only  # nosec B608
        f" OR ({key}.state IN {early} AND {key}.retired_at IS NOT NULL)"
        f" OR EXISTS (SELECT 1 FROM {ledger} r WHERE r.{_IN_KEY_RECORD_INDEX}"
        f" AND (r.event <> 'key.retired' OR {key}.state IN {early})"
        f" AND {position}(r.body, '\"subject\":\"' || {key}.kid || '\"') > 0))"
    )


def _contradicted() -> RawSQL:
    """:func:`contradiction_sql` for a plain ``SigningKey`` queryset (not one nested in another query
    of the same table, where Django renames the table)."""
    table = connection.ops.quote_name(SigningKey._meta.db_table)
    return RawSQL(contradiction_sql(table), (), output_field=BooleanField())  # noqa: S611 - constant SQL  # nosec B611


class KeyPurpose(StrEnum):
    """What a wrapped private key is for (tokens/keys.py binds it into the key's associated data). The
    table decides it, never a column: a signing key's blobs never serve as an audit key's, or back."""

    SIGNING = "signing"
    AUDIT = "audit"


class SigningKeyQuerySet(models.QuerySet["SigningKey"]):
    def active(self) -> SigningKeyQuerySet:
        return self.filter(state=SigningKey.State.ACTIVE)

    def next_in_line(self) -> SigningKeyQuerySet:
        return self.filter(state=SigningKey.State.NEXT)

    def in_published_state(self) -> SigningKeyQuerySet:
        """Rows whose ``state`` column says next, active or retired, whatever else says otherwise."""
        return self.filter(
            state__in=[SigningKey.State.NEXT, SigningKey.State.ACTIVE, SigningKey.State.RETIRED]
        )

    def publishable(self) -> SigningKeyQuerySet:
        """Next, active or retired, and nothing contradicts it (see the module docstring): what may be
        published and trusted, still subject to the proof of tokens/keys.py."""
        return self.in_published_state().exclude(_contradicted())

    def contradicted(self) -> SigningKeyQuerySet:
        """Rows in a published state that their timestamps or the ledger say have moved on: tampered."""
        return self.in_published_state().filter(_contradicted())

    def for_algorithm(self, algorithm: str) -> SigningKeyQuerySet:
        return self.filter(algorithm=algorithm)


class SigningKey(models.Model):
    class State(models.TextChoices):
        NEXT = "next", "next (published, not signing yet)"
        ACTIVE = "active", "active (signing)"
        RETIRED = "retired", "retired (published, no longer signing)"
        EXPIRED = "expired", "expired (unpublished)"
        REVOKED = "revoked", "revoked (unpublished at once)"

    class Algorithm(models.TextChoices):
        RS256 = "RS256", "RS256"
        ES256 = "ES256", "ES256"
        EDDSA = "EdDSA", "EdDSA (Ed25519)"

    kid = models.CharField("key id (RFC 7638 thumbprint)", max_length=64, unique=True, editable=False)
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.NEXT, db_index=True)
    public_jwk = models.JSONField(editable=False)
    wrapped_private_key = models.BinaryField(editable=False)
    wrapped_data_key = models.BinaryField(editable=False)
    kek_id = models.CharField("key-encryption key id", max_length=16, editable=False)
    created_at = models.DateTimeField(help_text="Also when the key was first published in the JWKS.")
    activate_after = models.DateTimeField(
        null=True, blank=True, help_text="Earliest activation: publication plus the JWKS cache lifetime."
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = SigningKeyQuerySet.as_manager()
    purpose: ClassVar[str] = KeyPurpose.SIGNING

    class Meta:
        ordering = ["-created_at"]
        permissions = [  # the admin's actions (tokens/admin.py); nobody may change a key's row directly
            ("rotate_signingkey", "Can rotate signing keys now"),
            ("revoke_signingkey", "Can revoke a signing key (emergency)"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["algorithm"], condition=Q(state="active"), name="one_active_signing_key_per_algorithm"
            ),
            models.UniqueConstraint(
                fields=["algorithm"], condition=Q(state="next"), name="one_next_signing_key_per_algorithm"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.kid[:12]} ({self.state})"

    def activate(self, *, now: datetime) -> None:
        self.state = self.State.ACTIVE
        self.activated_at = now
        self.save(update_fields=["state", "activated_at"])

    def retire(self, *, now: datetime) -> None:
        self.state = self.State.RETIRED
        self.retired_at = now
        self.save(update_fields=["state", "retired_at"])

    def expire(self, *, now: datetime) -> None:
        """Expired: unpublished for good, and the private half destroyed."""
        self.state = self.State.EXPIRED
        self.expired_at = now
        self._destroy_private_half()
        self.save(update_fields=["state", "expired_at", *self.PRIVATE_FIELDS])

    def revoke(self, *, now: datetime) -> None:
        """Revoked: unpublished for good, and the private half destroyed."""
        self.state = self.State.REVOKED
        self.revoked_at = now
        self._destroy_private_half()
        self.save(update_fields=["state", "revoked_at", *self.PRIVATE_FIELDS])

    PRIVATE_FIELDS: ClassVar[tuple[str, str]] = ("wrapped_private_key", "wrapped_data_key")

    def _destroy_private_half(self) -> None:
        """Empty the wrapped blobs: the key can never be proven (tokens/keys.py), so never be published,
        trusted or used again, whatever its row is later made to say. The public JWK stays."""
        self.wrapped_private_key = b""
        self.wrapped_data_key = b""

    @property
    def private_half_destroyed(self) -> bool:
        return not bytes(self.wrapped_private_key) and not bytes(self.wrapped_data_key)


class KeySeries(models.Model):
    """One row per algorithm: the lock every rotation of that algorithm's keys takes, and "rotate now"."""

    algorithm = models.CharField(max_length=10, choices=SigningKey.Algorithm.choices, primary_key=True)
    rotation_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "key series"

    def __str__(self) -> str:
        return f"{self.algorithm} keys"


class AuditKeyQuerySet(models.QuerySet["AuditKey"]):
    def active(self) -> AuditKeyQuerySet:
        return self.filter(state=AuditKey.State.ACTIVE)


class AuditKey(models.Model):
    """An Ed25519 key that signs audit tree heads; separate from token keys, wrapped under ``UAA_KEK`` alike.

    Every audit key ever used stays published (``/.well-known/audit-keys.json`` and every export): tree
    heads it signed must verify years after it was retired.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "active (signs tree heads)"
        RETIRED = "retired", "retired (published, no longer signing)"

    kid = models.CharField("key id (RFC 7638 thumbprint)", max_length=64, unique=True, editable=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    public_jwk = models.JSONField(editable=False)
    wrapped_private_key = models.BinaryField(editable=False)
    wrapped_data_key = models.BinaryField(editable=False)
    kek_id = models.CharField("key-encryption key id", max_length=16, editable=False)
    created_at = models.DateTimeField()
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = AuditKeyQuerySet.as_manager()
    purpose: ClassVar[str] = KeyPurpose.AUDIT
    algorithm: ClassVar[str] = "EdDSA"  # RFC 8037 §3.1, Ed25519 only

    class Meta:
        ordering = ["-created_at"]
        permissions = [("rotate_auditkey", "Can rotate the audit key")]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=Q(state="active"), name="one_active_audit_key"
            )
        ]

    def __str__(self) -> str:
        return f"audit key {self.kid[:12]} ({self.state})"


class AppendOnly(Exception):
    """Ledger records are written once: never updated (except being sealed) and never deleted one by one."""


class LedgerRecordQuerySet(models.QuerySet["LedgerRecord"]):
    def about_key(self, kid: str) -> LedgerRecordQuerySet:
        """The ``key.retired`` / ``key.expired`` / ``key.revoked`` records of ``kid`` (indexed)."""
        index = RawSQL(_IN_KEY_RECORD_INDEX, (), output_field=BooleanField())  # noqa: S611 - constant  # nosec B611
        return self.filter(index, body__contains=f'"subject":"{kid}"')

    def sealed(self) -> LedgerRecordQuerySet:
        return self.filter(leaf_index__isnull=False)

    def unsealed(self) -> LedgerRecordQuerySet:
        return self.filter(leaf_index__isnull=True)

    def in_leaf_order(self) -> LedgerRecordQuerySet:
        return self.sealed().order_by("leaf_index")


class LedgerRecord(models.Model):
    """One audit event: a leaf of the RFC 9162 Merkle tree (tokens/ledger/, docs/audit-ledger.md).

    ``body`` is the record itself, RFC 8785 canonical JSON; the leaf is its UTF-8 bytes. The other
    columns copy a few of its members for the admin's filters. ``leaf_index`` and ``leaf_hash`` are set
    once, when a tree head seals the record; nothing else ever changes (a database trigger refuses it).
    """

    class Event(models.TextChoices):
        """Every event name UAA records, defined here once; the label is the admin's. The column has no
        ``choices``: a new name is a line here, never a migration (docs/audit-ledger.md lists them)."""

        AUTHORIZATION_GRANTED = "authorization.granted", "authorization granted"
        AUTHORIZATION_DENIED = "authorization.denied", "authorization denied"
        TOKEN_ISSUED = "token.issued", "token issued"
        TOKEN_REVOKED = "token.revoked", "token revoked"
        REFRESH_TOKEN_REUSED = "refresh_token.reused", "refresh token reuse detected"
        CODE_REPLAYED = "code.replayed", "authorization code replayed"
        CLIENT_AUTHENTICATION_FAILED = "client_authentication.failed", "client authentication failed"
        SIGN_IN_SUCCEEDED = "sign_in.succeeded", "sign-in succeeded"
        SIGN_IN_FAILED = "sign_in.failed", "sign-in failed"
        SIGNED_OUT = "sign_out", "signed out"
        MFA_ENROLLED = "mfa.enrolled", "MFA factor enrolled"
        MFA_REMOVED = "mfa.removed", "MFA factor removed"
        MFA_RESET = "mfa.reset", "MFA reset by an admin"
        MFA_BACKUP_CODES_GENERATED = "mfa.backup_codes_generated", "backup codes generated"
        MFA_VERIFIED = "mfa.verified", "MFA factor re-entered (step-up)"
        ACCOUNT_UNLOCKED = "account.unlocked", "account unlocked"
        ACCOUNT_NOT_BEFORE = "account.not_before", "account's grants and sessions cut off (not before)"
        CLIENT_REGISTERED = "client.registered", "client registered"
        CLIENT_SECRET_ROTATED = "client.secret_rotated", "client secret rotated"
        CLIENT_SECRET_GRACE_ENDED = "client.secret_grace_ended", "client's previous secret ended early"
        ADMIN_CHANGE = "admin.change", "admin change"
        KEY_PUBLISHED = "key.published", "signing key published"
        KEY_ACTIVATED = "key.activated", "signing key activated"
        KEY_RETIRED = "key.retired", "signing key retired"
        KEY_EXPIRED = "key.expired", "signing key expired"
        KEY_REVOKED = "key.revoked", "signing key revoked"
        AUDIT_KEY_CREATED = "audit_key.created", "audit key created"
        AUDIT_KEY_RETIRED = "audit_key.retired", "audit key retired"
        LEDGER_PRUNED = "ledger.pruned", "ledger records pruned after export"

    event = models.CharField(max_length=64, editable=False)  # an ``Event`` value; no choices, see above
    at = models.DateTimeField(db_index=True, editable=False)
    client_id = models.CharField(max_length=255, blank=True, db_index=True, editable=False)
    actor = models.CharField("actor (sub)", max_length=255, blank=True, db_index=True, editable=False)
    body = models.TextField("record (RFC 8785 JSON)", editable=False)
    leaf_index = models.BigIntegerField(null=True, blank=True, editable=False)
    leaf_hash = models.CharField(max_length=64, blank=True, editable=False)

    objects = LedgerRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit record"
        permissions = [("seal_ledger", "Can seal the audit ledger now")]
        # Every index is written on the token endpoint's path, so there are few: the sealer's queue of
        # unsealed records, the leaf order (unique once sealed; unsealed rows stay out of it), and the
        # admin's searches by client and actor and by time. Events are filtered within those; the one
        # index on events is partial, and only key records (a few per signing key) ever enter it.
        indexes = [
            models.Index(fields=["id"], condition=Q(leaf_index__isnull=True), name="ledger_unsealed"),
            # the records a signing key's state is checked against (tokens/keys.py); a handful per key
            models.Index(
                fields=["event"], condition=Q(event__in=KEY_RECORD_EVENTS), name="ledger_key_records"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["leaf_index"], condition=Q(leaf_index__isnull=False), name="ledger_leaf_index"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} at {self.at:%Y-%m-%d %H:%M:%S} ({self.leaf_index})"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AppendOnly("audit records cannot be changed")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise AppendOnly("audit records are pruned only after export (manage.py audit prune)")

    @property
    def event_label(self) -> str:
        """The admin's label of the event, or its name if UAA defines none (a record written outside UAA)."""
        try:
            return str(LedgerRecord.Event(self.event).label)
        except ValueError:
            return self.event


class TreeHead(models.Model):
    """A signed tree head (RFC 9162 §4.10): size, root hash and time, signed by an audit key.

    ``frontier`` holds the roots of the perfect subtrees covering ``[0, tree_size)``: the next seal
    extends the tree from it, and it stands in for records pruned below this size. ``consistency`` is
    the RFC 9162 §2.1.4 proof that this tree extends the previous head's.
    """

    tree_size = models.PositiveBigIntegerField(db_index=True, editable=False)
    root_hash = models.CharField(max_length=64, editable=False)
    timestamp = models.BigIntegerField("timestamp (ms since the epoch)", editable=False)
    audit_key = models.ForeignKey(AuditKey, on_delete=models.PROTECT, to_field="kid", editable=False)
    signature = models.CharField("Ed25519 signature (base64url)", max_length=128, editable=False)
    frontier = models.JSONField(default=list, editable=False)
    consistency = models.JSONField(default=list, editable=False)
    pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="Records below this size were exported and pruned at this time."
    )

    class Meta:
        ordering = ["-tree_size", "-timestamp"]
        verbose_name = "signed tree head"

    def __str__(self) -> str:
        return f"tree head {self.tree_size} {self.root_hash[:12]}"

    @property
    def signed_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)

    def as_dict(self) -> dict[str, object]:
        """The head as exported (tree-heads.jsonl) and as the standalone verifier reads it."""
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": self.timestamp,
            "kid": self.audit_key_id,
            "signature": self.signature,
            "consistency": list(self.consistency),
        }
