"""The swapped django-oauth-toolkit models: ``Client`` (application) and ``AuthorizationCode`` (grant).

``RedeemedCode`` remembers which tokens an authorization code produced, so that a replayed code
revokes them (RFC 6749 §4.1.2, RFC 9700 §4.10).
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication, AbstractGrant


class Client(AbstractApplication):
    """An OAuth client. Redirect URIs match exactly; PKCE S256 is required for every code grant."""

    RS256 = "RS256"
    ES256 = "ES256"
    EDDSA = "EdDSA"
    SIGNING_ALGORITHMS: ClassVar[tuple[tuple[str, str], ...]] = (
        (RS256, "RS256 (RSA PKCS#1 v1.5 with SHA-256)"),
        (ES256, "ES256 (ECDSA P-256 with SHA-256)"),
        (EDDSA, "EdDSA (Ed25519)"),
    )

    trusted = models.BooleanField(
        default=False,
        help_text="First-party client: the consent page is skipped unless the request says prompt=consent.",
    )
    requires_mfa = models.BooleanField(
        "requires MFA",
        default=False,
        help_text="Users reach this client only after a second factor, even where the global policy "
        "(UAA_MFA_REQUIRED) would let them in with a password alone.",
    )
    algorithm = models.CharField(
        "ID token signing algorithm",
        max_length=10,
        choices=SIGNING_ALGORITHMS,
        default=RS256,
        help_text="id_token_signed_response_alg (OIDC Dynamic Client Registration §2).",
    )
    default_audience = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Space-separated audiences (aud) of access tokens when the request names no resource.",
    )

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        ordering = ["-created"]
        verbose_name = "client"

    @property
    def jwk_key(self) -> None:  # pragma: no cover - guarded: our validator signs with tokens.keys
        raise NotImplementedError("UAA signs with keys from tokens.keys, never with a per-client key.")

    def clean(self) -> None:
        # DOT's clean() ties RS256 to its OIDC_RSA_PRIVATE_KEY setting; our keys live in the database,
        # so validate everything else with the algorithm set aside.
        algorithm, self.algorithm = self.algorithm, AbstractApplication.NO_ALGORITHM
        try:
            super().clean()
        finally:
            self.algorithm = algorithm
        if self.algorithm not in dict(self.SIGNING_ALGORITHMS):
            raise ValidationError({"algorithm": "Choose RS256, ES256 or EdDSA."})
        if self.authorization_grant_type not in (
            self.GRANT_AUTHORIZATION_CODE,
            self.GRANT_CLIENT_CREDENTIALS,
        ):
            raise ValidationError(
                {"authorization_grant_type": "Only authorization code and client credentials are offered."}
            )
        if self.authorization_grant_type == self.GRANT_CLIENT_CREDENTIALS and (
            self.client_type != self.CLIENT_CONFIDENTIAL
        ):
            raise ValidationError({"client_type": "Client credentials need a confidential client."})

    @property
    def audiences(self) -> list[str]:
        return self.default_audience.split()


class AuthorizationCode(AbstractGrant):
    """An authorization code, with the authentication context of the sign-in that produced it."""

    auth_time = models.DateTimeField(null=True, blank=True)
    session_id = models.CharField("sid", max_length=64, blank=True)
    amr = models.JSONField(default=list, blank=True)
    acr = models.CharField(max_length=64, blank=True)

    class Meta(AbstractGrant.Meta):
        swappable = "OAUTH2_PROVIDER_GRANT_MODEL"


class RedeemedCode(models.Model):
    """A spent authorization code (its SHA-256 only), the tokens it produced, and their sign-in context.

    A replay of the code revokes those tokens; a refresh of the family reads its ``auth_time``/``amr``.
    """

    code_checksum = models.CharField(max_length=64, unique=True)
    client_id = models.CharField(max_length=255)
    access_token_checksum = models.CharField(max_length=64)
    refresh_token_family = models.UUIDField(null=True, blank=True, db_index=True)
    auth_time = models.DateTimeField(null=True, blank=True)
    session_id = models.CharField("sid", max_length=64, blank=True)
    amr = models.JSONField(default=list, blank=True)
    acr = models.CharField(max_length=64, blank=True)
    redeemed_at = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"redeemed code {self.code_checksum[:8]}"


class Consent(models.Model):
    """Scopes a user has granted a client, so the consent page is asked once (prompt=consent asks again)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="consents")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="consents")
    scopes = models.JSONField(default=list)
    granted_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "client"], name="one_consent_per_user_client")]

    def __str__(self) -> str:
        return f"consent of {self.user_id} to {self.client_id}"
