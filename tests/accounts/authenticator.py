"""A software WebAuthn authenticator for HTTP tests: real P-256 keys, real CBOR, real signatures.

It builds what a browser and an authenticator would send (W3C WebAuthn Level 2 §6.1 authenticator data,
§6.5 attestation object with the "none" format, §5.8.1 client data), so the server's verification runs
unchanged. The real-browser tests (tests/e2e) use Chromium's virtual authenticator instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class SoftAuthenticator:
    def __init__(self, *, rp_id: str = "testserver", origin: str = "http://testserver", synced: bool = False):
        self.rp_id, self.origin, self.synced = rp_id, origin, synced
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    def _flags(self, extra: int = 0) -> int:
        return UP | UV | extra | ((BE | BS) if self.synced else 0)

    def _client_data(self, kind: str, options: dict[str, Any], origin: str | None) -> bytes:
        data = {"type": kind, "challenge": options["challenge"], "origin": origin or self.origin}
        return json.dumps({**data, "crossOrigin": False}).encode()

    def create(self, options_json: str, *, origin: str | None = None) -> str:
        options = json.loads(options_json)
        numbers = self.key.public_key().public_numbers()
        cose_key = cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self._flags(AT)])
            + struct.pack(">I", self.sign_count)
            + bytes(16)
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + cose_key
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options, origin)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
            }
        )

    def get(self, options_json: str, *, origin: str | None = None) -> str:
        options = json.loads(options_json)
        self.sign_count += 1
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self._flags()])
            + struct.pack(">I", self.sign_count)
        )
        client_data = self._client_data("webauthn.get", options, origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                },
            }
        )
