"""A token has one spelling and one meaning, and a stored token names rows that exist (issue 12 red team).

Attackers: (1) anyone holding a genuine token, who re-spells it (a trailing ``=``, the unused low bits of
the last base64url character flipped) to get a second string that verifies: a token's checksum is its
name in the database, so a second spelling must not be a token at all (RFC 7515 §2: base64url without
padding); (2) whoever can write the tables with the foreign keys deferred or dropped, who points a
stored token at a client or a user that is not there, so that it is checked as a token of no client or
of no user. (3) JSON's numbers only (RFC 8259 §6): a payload with ``NaN`` is not JSON.
"""

from __future__ import annotations

import string
from http import HTTPStatus

import pytest
from django.db import transaction
from django.test import Client as HttpClient
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from tests.oauth_client import form_post
from tokens.checksum import sha256_hex
from tokens.formats.rfc9068 import TYP
from tokens.rotation import ensure_active_key
from tokens.signing import sign_jwt, verify_jwt

ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def _token(service_client) -> str:
    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )
    assert response.status_code == HTTPStatus.OK
    return response.json()["access_token"]


def _respelt(token: str) -> str:
    """The same bytes, spelt otherwise: the last character's unused low bit flipped."""
    last = ALPHABET.index(token[-1])
    return token[:-1] + ALPHABET[last ^ 1]


def _active(service_client, token: str) -> bool:
    response = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=service_client.basic)
    assert response.status_code == HTTPStatus.OK
    return response.json()["active"]


@pytest.mark.parametrize("spelling", ["padded", "stray bits", "padded header"])
def test_a_second_spelling_of_a_token_is_no_token(service_client, spelling):
    token = _token(service_client)
    assert verify_jwt(token, typ=TYP) is not None
    header, payload, signature = token.split(".")
    other = {
        "padded": f"{token}==",
        "stray bits": _respelt(token),
        "padded header": f"{header}{'=' * (-len(header) % 4) or '=='}.{payload}.{signature}",
    }[spelling]
    assert other != token
    assert verify_jwt(other, typ=TYP) is None
    assert not _active(service_client, other)


def test_a_payload_with_nan_is_not_json(db):
    ensure_active_key(algorithm="ES256", now=timezone.now())
    with transaction.atomic():
        token = sign_jwt(claims={"sub": "x", "n": float("nan")}, algorithm="ES256", typ=TYP)
        fine = sign_jwt(claims={"sub": "x", "n": 1.5}, algorithm="ES256", typ=TYP)
    assert "NaN" not in token  # the JSON is inside the base64url payload
    assert verify_jwt(fine, typ=TYP) is not None
    assert verify_jwt(token, typ=TYP) is None


@pytest.mark.parametrize("column", ["application_id", "user_id"])
def test_a_token_pointing_at_a_row_that_is_not_there_is_no_token(code_flow, confidential_client, column):
    """Foreign keys are deferred until commit (Django makes them so): inside this transaction the token
    row names a client, or a user, that does not exist, as it would with the constraints dropped."""
    token = code_flow(confidential_client)["tokens"]["access_token"]
    model = get_access_token_model()
    row = model.objects.filter(token_checksum=sha256_hex(token))
    assert HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    original = row.values_list(column, flat=True).get()
    row.update(**{column: 2_000_000_000})
    try:
        response = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == HTTPStatus.UNAUTHORIZED
        introspection = form_post(
            HttpClient(), "/oauth/introspect", {"token": token}, auth=confidential_client.basic
        )
        assert introspection.json() == {"active": False}
    finally:
        row.update(**{column: original})  # the test's transaction is checked for dangling keys at its end
