"""Signing keys at rest: envelope encryption under UAA_KEK, and kid = RFC 7638 thumbprint."""

import base64
import hashlib
import json
from datetime import UTC, datetime
from http import HTTPStatus

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client as HttpClient

from tests.oauth_client import form_post
from tokens.envelope import KeyDecryptionError, configured_keks, new_kek, unwrap_private_key
from tokens.keys import clear_key_cache, create_signing_key
from tokens.models import SigningKey
from tokens.signing import active_signing_key

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ALGORITHMS = ["RS256", "ES256", "EdDSA"]

# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
REQUIRED_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


def rfc7638_thumbprint(public_jwk):
    """RFC 7638 §3.1, written out: required members only, sorted, no whitespace, SHA-256, base64url."""
    members = {name: public_jwk[name] for name in REQUIRED_MEMBERS[public_jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def raw_row(key):
    """The stored row exactly as the database holds it, every column as bytes."""
    table = connection.ops.quote_name(SigningKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [key.pk])
        row = cursor.fetchone()
    return [bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode() for value in row]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_private_key_is_stored_only_wrapped(db, algorithm):
    """DESIGN (keys): the private half is encrypted at rest; neither DER nor PEM is in the row."""
    key = create_signing_key(algorithm=algorithm, now=T0, state=SigningKey.State.ACTIVE)
    der = unwrap_private_key(key)
    private = serialization.load_der_private_key(der, password=None)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    stored = b"".join(raw_row(key))
    assert der not in stored
    assert der[-32:] not in stored  # not even the tail, where the secret scalar sits
    assert pem not in stored
    assert b"PRIVATE KEY" not in stored
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key.public_jwk)


def test_every_key_has_its_own_data_key_and_nonces(db):
    """DESIGN (keys): envelope encryption: a fresh data key per signing key, fresh nonces per wrap."""
    first = create_signing_key(algorithm="RS256", now=T0)
    second = create_signing_key(algorithm="RS256", now=T0, state=SigningKey.State.ACTIVE)
    assert bytes(first.wrapped_data_key) != bytes(second.wrapped_data_key)
    assert bytes(first.wrapped_data_key)[:12] != bytes(second.wrapped_data_key)[:12]
    assert bytes(first.wrapped_private_key)[:12] != bytes(second.wrapped_private_key)[:12]
    assert first.kek_id == second.kek_id == configured_keks()[0].kek_id


def test_a_wrapped_key_cannot_be_moved_to_another_row(db):
    """The kid is the associated data of both encryptions: swapping blobs between rows fails."""
    first = create_signing_key(algorithm="ES256", now=T0)
    second = create_signing_key(algorithm="ES256", now=T0, state=SigningKey.State.ACTIVE)
    first.wrapped_data_key, first.wrapped_private_key = second.wrapped_data_key, second.wrapped_private_key
    with pytest.raises(KeyDecryptionError):
        unwrap_private_key(first)


def test_a_different_kek_cannot_decrypt_and_says_so_clearly(db, settings):
    """DESIGN (keys): a wrong UAA_KEK raises KeyDecryptionError naming the key and the setting."""
    key = create_signing_key(algorithm="RS256", now=T0, state=SigningKey.State.ACTIVE)
    settings.UAA_KEK = new_kek()
    with pytest.raises(KeyDecryptionError) as failure:
        unwrap_private_key(key)
    message = str(failure.value)
    assert key.kid in message
    assert key.kek_id in message
    assert "UAA_KEK" in message


def test_a_wrong_kek_never_makes_uaa_sign_with_a_new_key(db, settings):
    """DESIGN (keys): UAA does not heal a wrong KEK by creating a key nobody has cached."""
    key = create_signing_key(algorithm="RS256", now=T0, state=SigningKey.State.ACTIVE)
    settings.UAA_KEK = new_kek()
    clear_key_cache()
    with pytest.raises(KeyDecryptionError):
        active_signing_key("RS256")
    assert list(SigningKey.objects.for_algorithm("RS256").values_list("kid", "state")) == [
        (key.kid, SigningKey.State.ACTIVE)
    ]


def test_a_token_request_under_a_wrong_kek_is_a_server_error_and_creates_no_key(db, settings, service_client):
    """RFC 6749 §5.2 server_error with a request id; the stored keys stay exactly as they were."""
    for algorithm in ALGORITHMS:
        create_signing_key(algorithm=algorithm, now=T0, state=SigningKey.State.ACTIVE)
    before = set(SigningKey.objects.values_list("kid", "state"))
    settings.UAA_KEK = new_kek()
    clear_key_cache()
    http = HttpClient(raise_request_exception=False)
    response = form_post(
        http, "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    body = response.json()
    assert body["error"] == "server_error"
    assert body["request_id"] == response["X-Request-ID"]
    assert "UAA_KEK" not in response.content.decode()  # operators read the log, clients do not
    assert set(SigningKey.objects.values_list("kid", "state")) == before


def test_under_a_wrong_kek_the_jwks_keeps_only_the_keys_this_process_proved(client, db, settings, caplog):
    """Issue 8 item 4: a key is published only once its private half was unwrapped under the KEK. A
    process that proved its keys keeps publishing them (the proof is cached); a fresh process under a
    wrong KEK publishes none and says so, rather than publishing keys it cannot show are its own."""
    keys = [create_signing_key(algorithm=a, now=T0, state=SigningKey.State.ACTIVE) for a in ALGORITHMS]
    client.get("/.well-known/jwks.json")
    settings.UAA_KEK = new_kek()
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == HTTPStatus.OK
    assert {key["kid"] for key in response.json()["keys"]} == {key.kid for key in keys}
    clear_key_cache()  # a process started under the wrong KEK
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"keys": []}
    assert {record.kid for record in caplog.records if record.getMessage() == "tokens.key_untrusted"} == {
        key.kid for key in keys
    }
    assert set(SigningKey.objects.values_list("kid", flat=True)) == {key.kid for key in keys}


def test_an_older_kek_listed_after_the_current_one_still_decrypts(db, settings):
    """DESIGN (keys): during a KEK rotation, UAA_KEK lists the new key first and the old one after it."""
    key = create_signing_key(algorithm="EdDSA", now=T0)
    secret = unwrap_private_key(key)
    settings.UAA_KEK = f"{new_kek()},{settings.UAA_KEK}"
    assert unwrap_private_key(key) == secret


@pytest.mark.parametrize("value", ["not base64 at all!", "c2hvcnQ", new_kek() + "AAAA", " , "])
def test_a_malformed_kek_is_refused_with_a_clear_message(settings, value):
    """DESIGN (configuration): a bad secret stops UAA rather than being used."""
    settings.UAA_KEK = value
    settings.UAA_KEK_FILE = ""
    with pytest.raises(ImproperlyConfigured, match="UAA_KEK"):
        configured_keks()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_kid_is_the_rfc7638_thumbprint_of_the_public_key(db, algorithm):
    """RFC 7638 §3: the kid is the base64url SHA-256 of the canonical required members."""
    key = create_signing_key(algorithm=algorithm, now=T0)
    assert key.kid == rfc7638_thumbprint(key.public_jwk)
    assert key.public_jwk["kid"] == key.kid
    assert len(key.kid) == 43  # 256 bits, base64url without padding


@pytest.mark.parametrize(
    ("algorithm", "kty", "crv"),
    [("RS256", "RSA", None), ("ES256", "EC", "P-256"), ("EdDSA", "OKP", "Ed25519")],
)
def test_keys_have_the_type_and_curve_their_algorithm_needs(db, algorithm, kty, crv):
    """RFC 7518 §3.1 / RFC 8037 §3.1: RS256 on RSA (≥ 2048 bits), ES256 on P-256, EdDSA on Ed25519."""
    key = create_signing_key(algorithm=algorithm, now=T0)
    assert key.public_jwk["kty"] == kty
    assert key.public_jwk.get("crv") == crv
    assert key.public_jwk["alg"] == algorithm
    assert key.public_jwk["use"] == "sig"
    if kty == "RSA":
        modulus = base64.urlsafe_b64decode(key.public_jwk["n"] + "==")
        assert len(modulus) * 8 >= 2048
