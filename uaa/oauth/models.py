"""The swapped django-oauth-toolkit models: ``Client`` (application) and ``AuthorizationCode`` (grant).

``RedeemedCode`` remembers which tokens an authorization code produced, so that a replayed code
revokes them (RFC 6749 §4.1.2, RFC 9700 §4.10).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from jwcrypto import jwk
from jwcrypto.common import JWException
from oauth2_provider.models import AbstractApplication, AbstractGrant

from uaa.oauth import rfc8252
from uaa.oauth.remote_jwks import UnsafeURI, check_uri
from uaa.oauth.scopes import USER_SCOPES

PUBLIC_CLIENT_PKCE = (
    "A public client always requires PKCE: nothing else binds its code to it (RFC 9700 §2.1.1)."
)


class Client(AbstractApplication):
    """An OAuth client. Redirect URIs match exactly; PKCE S256 is required for every code grant, unless a
    confidential client's ``require_pkce`` is off (uaa/oauth/rfc7636.py: then only OpenID Connect requests
    with a ``nonce`` may leave it out)."""

    RS256 = "RS256"
    ES256 = "ES256"
    EDDSA = "EdDSA"
    SIGNING_ALGORITHMS: ClassVar[tuple[tuple[str, str], ...]] = (
        (RS256, "RS256 (RSA PKCS#1 v1.5 with SHA-256)"),
        (ES256, "ES256 (ECDSA P-256 with SHA-256)"),
        (EDDSA, "EdDSA (Ed25519)"),
    )

    CLIENT_SECRET = "client_secret_basic"
    PRIVATE_KEY_JWT = "private_key_jwt"
    AUTH_METHODS: ClassVar[tuple[tuple[str, str], ...]] = (
        (CLIENT_SECRET, "client secret (HTTP Basic, or client_secret_post)"),
        (PRIVATE_KEY_JWT, "private_key_jwt (a JWT signed with the client's key, RFC 7523)"),
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
    require_pkce = models.BooleanField(
        "require PKCE",
        default=True,
        help_text="Every authorization request sends PKCE (S256). Off, for a confidential client only: an "
        "OpenID Connect request (scope openid) with a nonce may leave it out, as RFC 9700 §2.1.1 allows; "
        "any other request still needs it, and a request that sends it is checked. Leave it on unless "
        "the client cannot send PKCE (docs/security.md).",
    )
    algorithm = models.CharField(
        "ID token signing algorithm",
        max_length=10,
        choices=SIGNING_ALGORITHMS,
        default=RS256,
        help_text="id_token_signed_response_alg (OIDC Dynamic Client Registration §2).",
    )
    allowed_resources = models.CharField(
        "resources this client may request",
        max_length=2000,
        blank=True,
        help_text="Space-separated resource URIs (RFC 8707) this client may name in resource, and so get "
        "access tokens for (their aud): the resource servers it calls. Compared exactly. Any other "
        "resource is refused with invalid_target. Not the resources it serves (introspection, below).",
    )
    default_audience = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Space-separated audiences (aud) of access tokens when the request names no resource; "
        "each must be a resource this client may request. Empty: UAA itself (the issuer, for userinfo).",
    )
    allowed_scopes = models.CharField(
        "extra scopes this client may request",
        max_length=2000,
        blank=True,
        help_text="Space-separated scopes of UAA_EXTRA_SCOPES this client may be granted (RFC 6749 §3.3); "
        "any other is refused with invalid_scope. The OpenID Connect user scopes (openid, profile, email, "
        "offline_access) need no entry: every authorization-code client may ask for them, and no "
        "client-credentials client gets them.",
    )
    introspection_resources = models.CharField(
        "resources this client serves",
        max_length=2000,
        blank=True,
        help_text="Space-separated resource URIs (aud values, RFC 8707) this client serves as a resource "
        "server: it may introspect access tokens issued to other clients for them (RFC 7662 §4). Empty: "
        "it may introspect only its own tokens.",
    )

    token_endpoint_auth_method = models.CharField(
        max_length=32,
        choices=AUTH_METHODS,
        default=CLIENT_SECRET,
        help_text="How a confidential client authenticates (OIDC Dynamic Client Registration §2). With "
        "private_key_jwt its secret is refused, and its signed assertions are kept in the audit ledger.",
    )
    jwks = models.JSONField(
        "JWK Set",
        default=dict,
        blank=True,
        help_text="The client's public keys (RFC 7517), for private_key_jwt.",
    )
    jwks_uri = models.URLField(
        "JWK Set URL", max_length=1000, blank=True, help_text="Where to fetch them instead (https)."
    )
    rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(2**31 - 1)],
        help_text="Requests this client may make per UAA_RATELIMIT_WINDOW (10 s by default) at each of the "
        "token, introspection, revocation and userinfo endpoints, counting the ones that succeed. Empty: the "
        "defaults (UAA_RATELIMIT_TOKEN_CLIENT and the others); 0: no limit for this client. The per-address "
        "limits apply whatever this says (docs/operations.md, Rate limits).",
    )
    generation = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Bumped by the database on every change of the row (uaa/oauth/client_cache.py).",
    )
    # Secret rotation with a grace window (uaa/oauth/services.py rotate_client_secret): the secret before the
    # last rotation, as the hash it was stored as (never the secret), authenticates until its expiry.
    previous_secret_hash = models.CharField(
        max_length=255,
        blank=True,
        default="",
        editable=False,
        help_text="The hash of the secret before the last rotation, while its grace window runs.",
    )
    previous_secret_expires = models.DateTimeField(
        "previous secret valid until",
        null=True,
        blank=True,
        editable=False,
        help_text="The end of the previous secret's grace window (it fails from this instant on).",
    )
    secret_rotated_at = models.DateTimeField(
        "secret last rotated",
        null=True,
        blank=True,
        editable=False,
        help_text="When the current secret was made by a rotation; empty: it is the registration's.",
    )

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        ordering = ["-created"]
        verbose_name = "client"
        constraints = [
            # RFC 9700 §2.1.1: a public client has no other protection against code injection.
            models.CheckConstraint(
                condition=models.Q(require_pkce=True) | ~models.Q(client_type="public"),
                name="public_clients_require_pkce",
            )
        ]

    def redirect_uri_allowed(self, uri: str) -> bool:
        """RFC 8252 §7.3: any loopback port for native (public) clients only, else exact (RFC 9700 §4.1.3)."""
        return rfc8252.is_registered(
            uri=uri,
            registered=self.redirect_uris.split(),
            any_loopback_port=self.client_type == self.CLIENT_PUBLIC,
            client_id=self.client_id,
        )

    def post_logout_redirect_uri_allowed(self, uri: str) -> bool:
        """OIDC RP-Initiated Logout §3: a registered URI, compared exactly (port included) for all."""
        return rfc8252.is_registered(
            uri=uri,
            registered=self.post_logout_redirect_uris.split(),
            any_loopback_port=False,
            client_id=self.client_id,
        )

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
        self._clean_redirect_uris()
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
        if self.client_type != self.CLIENT_CONFIDENTIAL and not self.require_pkce:
            raise ValidationError({"require_pkce": PUBLIC_CLIENT_PKCE})
        self._clean_private_key_jwt()
        self._clean_introspection_resources()
        self._clean_allowed_resources()
        self._clean_allowed_scopes()

    def _clean_redirect_uris(self) -> None:
        """The one redirect URI rule (uaa/oauth/rfc8252.py check_redirect_uri), for sign-in and logout
        redirects alike: every way a client is registered or changed ends here."""
        errors: dict[str, list[str]] = {}
        for field in ("redirect_uris", "post_logout_redirect_uris"):
            problems = [
                problem
                for uri in getattr(self, field).split()
                if (
                    problem := rfc8252.redirect_uri_problem(
                        uri, schemes=self.get_allowed_schemes(), native=self.client_type == self.CLIENT_PUBLIC
                    )
                )
            ]
            if problems:
                errors[field] = problems
        if errors:
            raise ValidationError(errors)

    def _clean_allowed_resources(self) -> None:
        """RFC 8707 §2: absolute URIs without a fragment; the default audience is one of them."""
        from oauth2_provider.oauth2_validators import is_valid_resource_uri  # needs the app registry

        for resource in self.requestable_resources:
            if not is_valid_resource_uri(resource):
                message = f"{resource[:100]} is not an absolute URI without a fragment."
                raise ValidationError({"allowed_resources": message})
        for audience in self.audiences:
            if audience not in self.requestable_resources:
                raise ValidationError(
                    {
                        "default_audience": f"{audience[:100]} is not among the resources this client may "
                        "request: add it there too."
                    }
                )

    def _clean_allowed_scopes(self) -> None:
        """RFC 6749 §3.3: scopes UAA offers (UAA_SCOPES), other than the user scopes every code client has."""
        for scope in self.requestable_scopes:
            if scope in USER_SCOPES:
                raise ValidationError(
                    {
                        "allowed_scopes": f"{scope} is an OpenID Connect user scope: every "
                        "authorization-code client may ask for it, no client-credentials client gets it."
                    }
                )
            if scope not in settings.UAA_SCOPES:
                raise ValidationError(
                    {"allowed_scopes": f"{scope[:100]} is not a scope UAA offers (UAA_EXTRA_SCOPES)."}
                )

    def _clean_introspection_resources(self) -> None:
        """RFC 8707 §2 resources: absolute URIs without a fragment; never the issuer, whose tokens (aud =
        the issuer: userinfo) are described only to the client holding them."""
        from oauth2_provider.oauth2_validators import is_valid_resource_uri  # needs the app registry

        for resource in self.served_resources:
            if not is_valid_resource_uri(resource):
                message = f"{resource[:100]} is not an absolute URI without a fragment."
                raise ValidationError({"introspection_resources": message})
            if resource.rstrip("/") == settings.UAA_ISSUER:
                raise ValidationError(
                    {"introspection_resources": "UAA's own tokens are introspected only by their client."}
                )

    def _clean_private_key_jwt(self) -> None:
        """RFC 7523 keys: public keys only, inline or at an https URL (a loopback http URL for local use)."""
        if self.token_endpoint_auth_method != self.PRIVATE_KEY_JWT:
            return
        if self.client_type != self.CLIENT_CONFIDENTIAL:
            raise ValidationError(
                {"token_endpoint_auth_method": "private_key_jwt is for confidential clients."}
            )
        if bool(self.jwks) == bool(self.jwks_uri):
            raise ValidationError({"jwks": "Register the client's public keys: a JWK Set or a JWK Set URL."})
        if self.jwks_uri:
            try:
                check_uri(self.jwks_uri)  # checked again, with its addresses, at every fetch
            except UnsafeURI as exc:
                raise ValidationError({"jwks_uri": str(exc)}) from exc
            return
        try:
            keys = jwk.JWKSet.from_json(json.dumps(self.jwks))
        except (JWException, ValueError, TypeError) as exc:
            raise ValidationError({"jwks": "Not a JWK Set (RFC 7517 §5)."}) from exc
        if not list(keys) or any(key.has_private or key.get("kty") == "oct" for key in keys):
            # a symmetric key (kty oct) is a secret, not a public key (RFC 7523 §3 assertions are signed)
            raise ValidationError(
                {"jwks": "Give one or more public keys, and no private key (nor a symmetric one)."}
            )

    def previous_secret_at(self, now: datetime) -> str:
        """The previous secret's hash while its grace window runs at ``now`` (``now`` before
        ``previous_secret_expires``), else ``""``: an ended window authenticates nothing, whatever the row
        still holds, and its end needs no write (so no cached copy outlives it)."""
        expires = self.previous_secret_expires
        if self.previous_secret_hash and expires is not None and now < expires:
            return self.previous_secret_hash
        return ""

    def previous_secret_valid_until(self, now: datetime) -> datetime | None:
        """The end of the previous secret's grace window if it runs at ``now``, else ``None``."""
        return self.previous_secret_expires if self.previous_secret_at(now) else None

    @property
    def audiences(self) -> list[str]:
        return self.default_audience.split()

    @property
    def served_resources(self) -> list[str]:
        """Resources this client serves as a resource server (introspection, RFC 7662 §4)."""
        return self.introspection_resources.split()

    @property
    def requestable_resources(self) -> list[str]:
        """Resources this client may request tokens for (RFC 8707 §2); see uaa/oauth/rfc8707.py."""
        return self.allowed_resources.split()

    @property
    def requestable_scopes(self) -> list[str]:
        """Extra (non-OIDC) scopes this client may be granted (RFC 6749 §3.3); see uaa/oauth/scopes.py."""
        return self.allowed_scopes.split()


class AuthorizationCode(AbstractGrant):
    """An authorization code, with the authentication context of the sign-in that produced it."""

    auth_time = models.DateTimeField(null=True, blank=True)
    session_id = models.CharField("sid", max_length=64, blank=True)
    amr = models.JSONField(default=list, blank=True)
    acr = models.CharField(max_length=64, blank=True)

    class Meta(AbstractGrant.Meta):
        swappable = "OAUTH2_PROVIDER_GRANT_MODEL"


class SpentAssertion(models.Model):
    """A client assertion's ``jti`` (its SHA-256), kept until the assertion expires: RFC 7523 §3, one use."""

    client_id = models.CharField(max_length=255)
    jti_sha256 = models.CharField(max_length=64)
    expires = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_id", "jti_sha256"], name="one_use_per_client_assertion")
        ]

    def __str__(self) -> str:
        return f"assertion {self.jti_sha256[:8]} of {self.client_id}"


class ClientAuthenticationTally(models.Model):
    """Failed client authentications from one address for one registered client (``client_id``) or for
    any unknown one (``client_id`` empty), counted over one window: the ledger gets the first failure at
    once and the rest as one summary when the window ends (uaa/oauth/audit.py, docs/audit-ledger.md)."""

    client_id = models.CharField(max_length=255, blank=True)
    ip = models.CharField(max_length=64, blank=True)
    window_started_at = models.DateTimeField(db_index=True)
    last_at = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)  # verified and failed, after the first (recorded)
    throttled = models.PositiveIntegerField(default=0)  # refused with 429 before any verification
    reasons = models.JSONField(default=dict)  # reason -> count (a fixed set of sentences)
    methods = models.JSONField(default=dict)  # authentication method -> count

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_id", "ip"], name="one_tally_per_client_and_address")
        ]

    def __str__(self) -> str:
        return f"failed client authentication of {self.client_id or 'unknown'} from {self.ip}"


class RateLimitCounter(models.Model):
    """One rate-limit counter's current window, when no Redis is configured (uaa/oauth/ratelimit.py): the
    key (endpoint, what it counts, whom), the epoch second its window ends, the requests counted in it."""

    key = models.CharField(max_length=128, primary_key=True)
    window_end = models.BigIntegerField()
    hits = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"rate limit {self.key}: {self.hits} until {self.window_end}"


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
    # OIDC Core §5.5: the claims the authorization request asked for at userinfo (uaa/oauth/claims.py),
    # as granted; they outlive the code, for every access token of the family.
    claims = models.JSONField(default=dict, blank=True)
    redeemed_at = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(db_index=True)

    class Meta:
        # userinfo looks the token's redemption up by its checksum on every request (uaa/oauth/codes.py):
        # a plain B-tree, no pattern-ops twin (equality only, migration 0010's reasoning)
        indexes = [models.Index(fields=["access_token_checksum"], name="redeemed_code_token_checksum")]

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
