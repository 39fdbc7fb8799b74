"""A passkey sign-in keeps the user's own signature in its audit record (issue 5, docs/audit-ledger.md).

Anyone holding the record alone can check it: WebAuthn §6.3.3 and §7.2, the signature covers
``authenticatorData || SHA-256(clientDataJSON)`` under the credential's COSE public key (RFC 9053 §2.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
from http import HTTPStatus

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client as HttpClient

from tests.accounts.authenticator import SoftAuthenticator
from tests.accounts.test_webauthn import options_of
from tests.conftest import ENROLL, LOGIN, MFA
from tests.factories import PASSWORD, UserFactory
from tokens.models import LedgerRecord


@pytest.fixture
def passkey_user(db):
    """A user who enrolled a passkey at their first sign-in, and the authenticator that holds it."""
    user = UserFactory(mfa=False)
    authenticator = SoftAuthenticator()
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    credential = authenticator.create(options_of(http.get(ENROLL)))
    response = http.post(ENROLL, {"method": "webauthn", "credential": credential, "name": "Laptop"})
    assert response.status_code == HTTPStatus.OK  # enrolled: the first backup codes are shown
    assert b'id="backup-codes"' in response.content
    return user, authenticator


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_passkey_sign_in_record_carries_an_assertion_that_verifies_offline(passkey_user):
    user, authenticator = passkey_user
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    response = http.post(
        MFA, {"method": "webauthn", "credential": authenticator.get(options_of(http.get(MFA)))}
    )
    assert response.status_code == HTTPStatus.FOUND
    body = LedgerRecord.objects.filter(event="sign_in.succeeded", actor=str(user.pk)).latest("id").body
    record = json.loads(body)
    proof = record["evidence"]["webauthn_assertion"]
    assert record["amr"] == ["pwd", "hwk", "mfa"]

    cose = cbor2.loads(b64url_decode(proof["public_key"]))
    key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(cose[-2], "big"), int.from_bytes(cose[-3], "big"), ec.SECP256R1()
    ).public_key()
    client_data = b64url_decode(proof["clientDataJSON"])
    signed = b64url_decode(proof["authenticatorData"]) + hashlib.sha256(client_data).digest()
    key.verify(b64url_decode(proof["signature"]), signed, ec.ECDSA(hashes.SHA256()))  # raises if forged
    assert json.loads(client_data)["type"] == "webauthn.get"
    assert json.loads(client_data)["origin"] == "http://testserver"


def test_a_password_or_totp_sign_in_has_no_evidence(db, user):
    """Only a signature by the user's own key is evidence; a password or a TOTP code is a shared secret."""
    from tests.conftest import sign_in

    sign_in(HttpClient(), user)
    record = json.loads(LedgerRecord.objects.filter(event="sign_in.succeeded").latest("id").body)
    assert "evidence" not in record
