"""Signing keys: ``next`` → ``active`` → ``retired`` → ``expired`` (or ``revoked`` at once).

The private half is stored only wrapped (tokens/keys.py): AES-256-GCM under a per-key data key,
itself wrapped under the key-encryption key from ``UAA_KEK``. Nothing in the database alone decrypts it.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q


class SigningKeyQuerySet(models.QuerySet["SigningKey"]):
    def active(self) -> SigningKeyQuerySet:
        return self.filter(state=SigningKey.State.ACTIVE)

    def next_in_line(self) -> SigningKeyQuerySet:
        return self.filter(state=SigningKey.State.NEXT)

    def publishable(self) -> SigningKeyQuerySet:
        return self.filter(
            state__in=[SigningKey.State.NEXT, SigningKey.State.ACTIVE, SigningKey.State.RETIRED]
        )

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

    class Meta:
        ordering = ["-created_at"]
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
        self.state = self.State.EXPIRED
        self.expired_at = now
        self.save(update_fields=["state", "expired_at"])

    def revoke(self, *, now: datetime) -> None:
        self.state = self.State.REVOKED
        self.revoked_at = now
        self.save(update_fields=["state", "revoked_at"])


class KeySeries(models.Model):
    """One row per algorithm: the lock every rotation of that algorithm's keys takes, and "rotate now"."""

    algorithm = models.CharField(max_length=10, choices=SigningKey.Algorithm.choices, primary_key=True)
    rotation_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "key series"

    def __str__(self) -> str:
        return f"{self.algorithm} keys"
