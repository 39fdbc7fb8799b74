"""W3C Web Authentication (Level 2) as a second factor, with the ``webauthn`` package.

The relying party id is the issuer's host and the only accepted origin is the issuer's own origin
(WebAuthn §5.1.3 step 9, §7.1 step 9 and step 13), so a credential works for this UAA only. Every
ceremony's challenge is random, kept in this browser's session, and used once (§13.4.3). A credential
is a proof of possession of a key (RFC 8176 ``hwk``); a synced, backed-up passkey counts as a
software-secured key (``swk``) since its private key leaves the device.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import webauthn
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from webauthn.helpers import bytes_to_base64url, exceptions
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from accounts.models import User, WebAuthnCredential

MAX_CREDENTIAL_JSON = 16 * 1024


class WebAuthnFailed(Exception):
    """A registration or assertion that does not verify (the reason is logged, never shown)."""


def rp_id() -> str:
    return urlsplit(settings.UAA_ISSUER).hostname or "localhost"


def origin() -> str:
    parts = urlsplit(settings.UAA_ISSUER)
    return f"{parts.scheme}://{parts.netloc}"


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(credential.credential_id))
        for credential in WebAuthnCredential.objects.filter(user=user)
    ]


def _parse(credential_json: str) -> dict[str, Any]:
    if not credential_json or len(credential_json) > MAX_CREDENTIAL_JSON:
        raise WebAuthnFailed("missing or oversized credential")
    try:
        parsed = json.loads(credential_json)
    except ValueError as exc:
        raise WebAuthnFailed("credential is not JSON") from exc
    if not isinstance(parsed, dict):
        raise WebAuthnFailed("credential is not a JSON object")
    return parsed


def registration_options(*, user: User) -> tuple[str, bytes]:
    """PublicKeyCredentialCreationOptions (JSON) and the challenge to keep for the response."""
    options = webauthn.generate_registration_options(
        rp_id=rp_id(),
        rp_name=settings.UAA_MFA_ISSUER_NAME,
        user_id=user.id.bytes,
        user_name=user.email,
        user_display_name=user.get_full_name() or user.email,
        exclude_credentials=_descriptors(user),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    return webauthn.options_to_json(options), options.challenge


def register(*, user: User, credential_json: str, challenge: bytes, name: str) -> WebAuthnCredential:
    """WebAuthn §7.1: verify the attestation response and store the credential's public key."""
    credential = _parse(credential_json)
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
        )
    except (
        exceptions.InvalidRegistrationResponse,
        exceptions.InvalidJSONStructure,
        ValueError,
        KeyError,
    ) as exc:
        raise WebAuthnFailed(type(exc).__name__) from exc
    credential_id = bytes_to_base64url(verified.credential_id)
    if WebAuthnCredential.objects.filter(credential_id=credential_id).exists():
        raise WebAuthnFailed("credential already registered")
    transports = credential.get("response", {}).get("transports", [])
    return WebAuthnCredential.objects.create(
        user=user,
        name=(name or "Security key").strip()[:64] or "Security key",
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        backed_up=verified.credential_backed_up,
        transports=[str(t) for t in transports][:8] if isinstance(transports, list) else [],
    )


def authentication_options(*, user: User) -> tuple[str, bytes]:
    """PublicKeyCredentialRequestOptions (JSON) for the user's credentials, and the challenge to keep."""
    options = webauthn.generate_authentication_options(
        rp_id=rp_id(),
        allow_credentials=_descriptors(user),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return webauthn.options_to_json(options), options.challenge


def authenticate(*, user: User, credential_json: str, challenge: bytes) -> WebAuthnCredential:
    """WebAuthn §7.2: verify an assertion by one of the user's credentials; the counter must grow."""
    credential = _parse(credential_json)
    raw_id = credential.get("rawId") or credential.get("id")
    if not isinstance(raw_id, str):
        raise WebAuthnFailed("no credential id")
    with transaction.atomic():
        stored = (
            WebAuthnCredential.objects.select_for_update().filter(user=user, credential_id=raw_id).first()
        )
        if stored is None:
            raise WebAuthnFailed("unknown credential")
        try:
            verified = webauthn.verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id(),
                expected_origin=origin(),
                credential_public_key=bytes(stored.public_key),
                credential_current_sign_count=stored.sign_count,
            )
        except (
            exceptions.InvalidAuthenticationResponse,
            exceptions.InvalidJSONStructure,
            ValueError,
            KeyError,
        ) as exc:
            raise WebAuthnFailed(type(exc).__name__) from exc
        stored.sign_count = verified.new_sign_count
        stored.last_used_at = timezone.now()
        stored.save(update_fields=["sign_count", "last_used_at"])
    return stored


def evidence(*, credential: WebAuthnCredential, credential_json: str) -> dict[str, Any]:
    """The user's own signature over this sign-in, for its audit record (docs/audit-ledger.md).

    WebAuthn §6.3.3/§7.2: ``signature`` signs ``authenticatorData || SHA-256(clientDataJSON)`` with the
    credential's key; the COSE public key is kept alongside, so the record verifies without the database.
    """
    response = _parse(credential_json).get("response") or {}
    names = ("authenticatorData", "clientDataJSON", "signature")
    return {
        "webauthn_assertion": {
            "credential_id": credential.credential_id,
            "public_key": bytes_to_base64url(bytes(credential.public_key)),
            **{name: str(response[name]) for name in names if isinstance(response.get(name), str)},
        }
    }


def amr_of(credential: WebAuthnCredential) -> str:
    return "swk" if credential.backed_up else "hwk"
