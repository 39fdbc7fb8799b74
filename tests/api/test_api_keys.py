"""/api/v1/keys: list (public halves only), rotate now, revoke.

Attackers: a holder of a keys.read token looking for private key material in the answers; a keys.read
token trying to rotate or revoke (a key-revocation is a denial of service for every relying party that
does not refetch the JWKS); a caller sending a kid or algorithm built to break the lookup.
"""

from __future__ import annotations

import base64
import json
from http import HTTPStatus

import pytest
from django.utils import timezone

from tests.api.conftest import call
from tests.staff import ledger_records
from tests.uaa.endpoints import jwks
from tokens.envelope import unwrap_private_key
from tokens.models import LedgerRecord, SigningKey
from tokens.rotation import ensure_active_key

KEYS = "/api/v1/keys"


@pytest.fixture
def reader(admin_token):
    return admin_token("uaa.keys.read")


@pytest.fixture
def admin(admin_client):
    from tests.api.conftest import client_credentials_token

    registered = admin_client("uaa.keys.read uaa.keys.write")
    return registered, client_credentials_token(registered, "uaa.keys.read uaa.keys.write")


def test_the_list_shows_kid_alg_state_and_the_public_jwk_only(reader):
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    response = call("GET", KEYS, reader)
    assert response.status_code == HTTPStatus.OK, response.content
    [shown] = [k for k in response.json()["results"] if k["kid"] == key.kid]
    assert shown["alg"] == "RS256" and shown["state"] == "active"
    assert shown["public_jwk"]["kid"] == key.kid and shown["public_jwk"]["n"]
    text = response.content.decode()
    der = unwrap_private_key(key)
    assert base64.b64encode(der[-64:]).decode()[:40] not in text
    for private in ('"d"', '"p"', '"q"', '"dp"', '"dq"', '"qi"', "wrapped", "PRIVATE"):
        assert private not in text
    assert shown["public_jwk"] in jwks()["keys"]


def test_one_key_and_filters(reader):
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    assert call("GET", f"{KEYS}/{key.kid}", reader).json()["alg"] == "ES256"
    assert call("GET", f"{KEYS}?alg=ES256&state=active", reader).json()["count"] == 1
    assert call("GET", f"{KEYS}?state=gone", reader).status_code == HTTPStatus.BAD_REQUEST
    assert call("GET", f"{KEYS}/no-such-kid", reader).status_code == HTTPStatus.NOT_FOUND
    assert call("GET", f"{KEYS}/%00", reader).status_code == HTTPStatus.NOT_FOUND


def test_a_read_token_cannot_rotate_or_revoke(reader):
    key = ensure_active_key(algorithm="RS256", now=timezone.now())
    for response in (
        call("POST", f"{KEYS}/rotate", reader, {"algorithm": "RS256"}),
        call("POST", f"{KEYS}/{key.kid}/revoke", reader, {"reason": "x"}),
    ):
        assert response.status_code == HTTPStatus.FORBIDDEN
        assert response.json()["scope"] == "uaa.keys.write"
    assert SigningKey.objects.get(pk=key.pk).state == "active"


def test_rotate_now_publishes_a_standby_and_names_the_caller(admin):
    caller, token = admin
    ensure_active_key(algorithm="ES256", now=timezone.now())
    SigningKey.objects.for_algorithm("ES256").next_in_line().delete()
    response = call("POST", f"{KEYS}/rotate", token, {"algorithm": "ES256"})
    assert response.status_code == HTTPStatus.OK, response.content
    body = response.json()
    assert body["active"]["alg"] == "ES256"
    assert SigningKey.objects.for_algorithm("ES256").next_in_line().count() == 1
    records = [r for r in ledger_records(LedgerRecord.Event.KEY_PUBLISHED) if r["detail"]["alg"] == "ES256"]
    assert records and records[-1]["sub"] == caller.client_id


@pytest.mark.parametrize("body", [{}, {"algorithm": "HS256"}, {"algorithm": ["RS256"]}, {"alg": "RS256"}])
def test_rotate_refuses_what_is_not_an_algorithm(admin, body):
    _caller, token = admin
    response = call("POST", f"{KEYS}/rotate", token, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["fields"]


def test_revoke_removes_the_key_from_the_jwks_at_once_and_names_the_caller(admin):
    caller, token = admin
    key = ensure_active_key(algorithm="EdDSA", now=timezone.now())
    response = call("POST", f"{KEYS}/{key.kid}/revoke", token, {"reason": "compromised laptop"})
    assert response.status_code == HTTPStatus.OK, response.content
    body = response.json()
    assert body["revoked"]["state"] == "revoked" and body["active"]["kid"] != key.kid
    assert key.kid not in json.dumps(jwks())
    [record] = [r for r in ledger_records(LedgerRecord.Event.KEY_REVOKED) if r["subject"] == key.kid]
    assert record["sub"] == caller.client_id and record["detail"]["reason"] == "compromised laptop"


def test_revoke_needs_a_reason_and_nothing_else(admin):
    _caller, token = admin
    key = ensure_active_key(algorithm="EdDSA", now=timezone.now())
    for body in ({}, {"reason": 5}, {"reason": "x", "state": "active"}, {"reason": "x" * 201}):
        response = call("POST", f"{KEYS}/{key.kid}/revoke", token, body)
        assert response.status_code == HTTPStatus.BAD_REQUEST, (body, response.content)
    assert SigningKey.objects.get(pk=key.pk).state == "active"


def test_revoking_the_key_that_signed_the_callers_token_ends_that_token(admin):
    """The admin token was signed by the UAA_ACCESS_TOKEN_ALG key its kid names: revoking that key ends it."""
    _caller, token = admin
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    response = call("POST", f"{KEYS}/{header['kid']}/revoke", token, {"reason": "drill"})
    assert response.status_code == HTTPStatus.OK, response.content
    assert call("GET", KEYS, token).status_code == HTTPStatus.UNAUTHORIZED
