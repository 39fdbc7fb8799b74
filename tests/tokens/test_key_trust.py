"""A database-only attacker cannot publish or plant signing keys (issue 8, item 4).

Attacker: reads and writes every table (a stolen database password, an SQL injection elsewhere, a
restored backup they altered), does not know ``UAA_KEK``. They must not get a key of their own into
the JWKS, make UAA trust tokens they sign, or move genuine wrapped blobs to another key row, another
algorithm or another purpose.

RFC 7517 §4.5 (the ``kid`` names one key), RFC 7638 §3 (the ``kid`` is the key's thumbprint), NIST SP
800-38D §5.2.1.2 (GCM's associated data is authenticated with the ciphertext).
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from django.utils import timezone

from tests.oauth_client import form_post
from tests.tokens.forgery import (
    attacker_private_jwk,
    forge_token,
    inject_signing_key,
    public_members,
    store_access_token,
)
from tokens import ledger
from tokens.envelope import KeyDecryptionError
from tokens.keys import clear_key_cache, create_signing_key, proven_key
from tokens.ledger.audit_keys import audit_jwks, create_audit_key
from tokens.models import AuditKey, LedgerRecord, SigningKey
from tokens.rotation import request_rotation, revoke_signing_key
from tokens.signing import active_signing_key, verify_jwt

JWKS = "/.well-known/jwks.json"


def published_kids(http: HttpClient) -> set[str]:
    response = http.get(JWKS)
    assert response.status_code == HTTPStatus.OK
    return {key["kid"] for key in response.json()["keys"]}


@pytest.fixture
def genuine(db) -> dict[str, SigningKey]:
    """One active key per algorithm, as a running server has them."""
    now = timezone.now()
    return {
        algorithm: create_signing_key(algorithm=algorithm, now=now, state=SigningKey.State.ACTIVE)
        for algorithm in ("RS256", "ES256", "EdDSA")
    }


def copy_row(source: SigningKey | AuditKey, **changes: object) -> SigningKey:
    """A new signing-key row built from another row's columns (blobs included), with ``changes``."""
    fields = {
        "kid": source.kid,
        "algorithm": getattr(source, "algorithm", "EdDSA"),
        "state": SigningKey.State.RETIRED,
        "public_jwk": dict(source.public_jwk),
        "wrapped_private_key": bytes(source.wrapped_private_key),
        "wrapped_data_key": bytes(source.wrapped_data_key),
        "kek_id": source.kek_id,
        "created_at": source.created_at,
        "retired_at": timezone.now(),
    }
    fields.update(changes)
    return SigningKey.objects.create(**fields)


def test_an_injected_key_row_is_not_published(client, genuine):
    """RFC 7517 §5: the JWKS holds UAA's keys; a row whose private half UAA cannot unwrap is not one."""
    injected, _ = inject_signing_key()
    kids = published_kids(client)
    assert injected.kid not in kids
    assert {key.kid for key in genuine.values()} <= kids


@pytest.mark.parametrize("state", [SigningKey.State.RETIRED, SigningKey.State.NEXT])
def test_a_token_signed_by_an_injected_key_is_not_trusted_by_verify_jwt(genuine, state):
    """RFC 9068 §4: the signature must be by the issuer's key; the attacker's key is not one of them."""
    injected, private = inject_signing_key(state=state)
    token = forge_token(private, kid=injected.kid)
    assert verify_jwt(token, typ="at+jwt") is None


def test_a_token_signed_by_an_injected_key_is_inactive_at_introspection(genuine, service_client):
    """RFC 7662 §2.2: a token the server did not issue is {"active": false}, even with a stored record."""
    injected, private = inject_signing_key()
    token = forge_token(private, kid=injected.kid, client_id=service_client.client_id)
    store_access_token(token, application=service_client.client, scope="read")
    response = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=service_client.basic)
    assert response.json() == {"active": False}


def test_a_token_signed_by_an_injected_key_is_refused_at_userinfo(genuine, confidential_client, user):
    """RFC 6750 §3.1: invalid_token; the forged token with a forged record yields no personal data."""
    injected, private = inject_signing_key()
    token = forge_token(private, kid=injected.kid, sub=str(user.pk))
    store_access_token(token, application=confidential_client.client, user=user)
    response = HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert user.email.encode() not in response.content


def test_an_audit_keys_blobs_copied_into_a_signing_key_row_fail(client, genuine):
    """Purpose is bound: the audit key's wrapped private half never becomes a token-signing key."""
    ledger.append_record(event="token.issued", client_id="c")
    ledger.seal_tree_head(now=timezone.now())
    audit = AuditKey.objects.get()
    SigningKey.objects.filter(pk=genuine["EdDSA"].pk).update(state=SigningKey.State.EXPIRED)
    copy_row(audit, algorithm="EdDSA", state=SigningKey.State.ACTIVE, retired_at=None)
    clear_key_cache()
    assert audit.kid not in published_kids(client)
    with pytest.raises(KeyDecryptionError):
        active_signing_key("EdDSA")


@pytest.mark.parametrize("change", ["kid", "algorithm"])
def test_a_signing_keys_blobs_under_another_kid_or_algorithm_fail(client, genuine, change):
    """The kid and the algorithm are bound: moving a wrapped key to another identity fails."""
    source = genuine["ES256"]
    attacker = public_members(attacker_private_jwk("ES256"), "ES256")
    if change == "kid":
        moved = copy_row(source, kid=attacker["kid"])
    else:
        SigningKey.objects.filter(pk=source.pk).delete()
        moved = copy_row(source, algorithm="EdDSA", public_jwk={**source.public_jwk, "alg": "EdDSA"})
    published = client.get(JWKS).json()["keys"]
    assert moved.kid not in {key["kid"] for key in published}
    # the moved row publishes nothing, not even under the kid its public_jwk still names
    others = SigningKey.objects.publishable().exclude(pk=moved.pk).values_list("kid", flat=True)
    assert sorted(key["kid"] for key in published) == sorted(others)


@pytest.mark.parametrize("kid", ["genuine", "attacker"])
def test_a_genuine_row_with_the_attackers_public_key_fails(client, genuine, kid):
    """The public key is bound: swapping ``public_jwk`` next to genuine blobs publishes nothing and
    trusts nothing, whether the row keeps its kid or takes the attacker key's thumbprint."""
    victim = create_signing_key(algorithm="RS256", now=timezone.now())  # a next key
    private = attacker_private_jwk("RS256")
    public = public_members(private, "RS256")
    new_kid = victim.kid if kid == "genuine" else public["kid"]
    SigningKey.objects.filter(pk=victim.pk).update(public_jwk={**public, "kid": new_kid}, kid=new_kid)
    assert new_kid not in published_kids(client)
    assert verify_jwt(forge_token(private, kid=new_kid), typ="at+jwt") is None


def test_a_key_that_fails_is_logged_once_at_error_level_with_its_kid(client, genuine, caplog):
    """STYLE (logging): a surprise is an error, once; the record names the kid and nothing secret."""
    injected, private = inject_signing_key()
    token = forge_token(private, kid=injected.kid)
    with caplog.at_level(logging.ERROR, logger="tokens.keys"):
        for _ in range(3):
            published_kids(client)
            verify_jwt(token, typ="at+jwt")
    failures = [record for record in caplog.records if record.getMessage() == "tokens.key_untrusted"]
    assert len(failures) == 1
    assert failures[0].kid == injected.kid
    assert failures[0].levelno == logging.ERROR


def test_each_key_is_proven_once_per_process(client, genuine, monkeypatch):
    """DESIGN (scale-out): keys are checked once and cached per process, not on every request."""
    from tokens import keys

    clear_key_cache()
    calls: list[str] = []
    real = keys.unwrap_private_key
    monkeypatch.setattr(keys, "unwrap_private_key", lambda key: calls.append(key.kid) or real(key))
    for _ in range(3):
        published_kids(client)
    assert sorted(calls) == sorted(key.kid for key in genuine.values())


def test_an_injected_audit_key_is_not_published(db):
    """Audit keys alike: the audit JWK Set lists only keys whose private half UAA holds."""
    genuine_audit = create_audit_key(now=timezone.now())
    genuine_audit.state = AuditKey.State.RETIRED
    genuine_audit.save()
    private = attacker_private_jwk("EdDSA")
    public = public_members(private, "EdDSA")
    AuditKey.objects.create(
        kid=public["kid"],
        public_jwk=public,
        wrapped_private_key=b"\0" * 60,
        wrapped_data_key=b"\0" * 60,
        kek_id=genuine_audit.kek_id,
        created_at=timezone.now(),
    )
    assert [key["kid"] for key in audit_jwks()["keys"]] == [genuine_audit.kid]


def test_a_signing_keys_blobs_copied_into_an_audit_key_row_fail(genuine):
    """Purpose is bound the other way too: an EdDSA token key never signs tree heads."""
    source = genuine["EdDSA"]
    AuditKey.objects.create(
        kid=source.kid,
        public_jwk=dict(source.public_jwk),
        wrapped_private_key=bytes(source.wrapped_private_key),
        wrapped_data_key=bytes(source.wrapped_data_key),
        kek_id=source.kek_id,
        created_at=timezone.now(),
    )
    assert audit_jwks()["keys"] == []
    ledger.append_record(event="token.issued", client_id="c")
    with pytest.raises(KeyDecryptionError):
        ledger.seal_tree_head(now=timezone.now())


def test_the_audit_jwks_holds_public_members_only(db):
    """RFC 7517 §9.2 / RFC 8037 §2: ``d`` is private; whatever a row holds, only public members go out."""
    key = create_audit_key(now=timezone.now())
    AuditKey.objects.filter(pk=key.pk).update(
        public_jwk={**key.public_jwk, "d": "c2VjcmV0", "x5u": "https://evil.example/"}
    )
    (published,) = audit_jwks()["keys"]
    assert set(published) <= {"kty", "crv", "x", "kid", "alg", "use"}
    assert published["kid"] == key.kid


@pytest.mark.parametrize("path", ["revocation", "rotation", "first token"])
def test_a_planted_standby_never_becomes_the_signing_key(genuine, service_client, path, settings):
    """A red team's find: the attacker plants a ``next`` row (their public key, blobs UAA cannot unwrap)
    and waits for the active key to go (a revocation, a scheduled rotation, a series left without an
    active key). Promoted, it would be the active key nobody can sign with: every token request fails.
    The standby is proven first; one that fails is revoked (recorded) and a fresh key signs instead."""
    algorithm = settings.UAA_ACCESS_TOKEN_ALG
    active = genuine[algorithm]
    planted, _ = inject_signing_key(algorithm=algorithm, state=SigningKey.State.NEXT)
    now = timezone.now()
    if path == "revocation":
        revoke_signing_key(kid=active.kid, now=now, reason="test")
    elif path == "rotation":
        SigningKey.objects.filter(pk=planted.pk).update(created_at=now - timedelta(days=400))
        SigningKey.objects.filter(pk=active.pk).update(activated_at=now - timedelta(days=400))
        request_rotation(algorithm=algorithm, now=now)
    else:
        active.revoke(now=now)  # the series has no active key: the first token makes one
    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content
    planted.refresh_from_db()
    assert planted.state == SigningKey.State.REVOKED
    signing = SigningKey.objects.active().for_algorithm(algorithm).get()
    if path == "rotation":  # nothing proven to rotate to: the active key signs on, a fresh standby waits
        assert signing.kid == active.kid
        standby = SigningKey.objects.for_algorithm(algorithm).next_in_line().get()
        assert standby.kid != planted.kid
    else:
        assert signing.kid not in {planted.kid, active.kid}
    assert verify_jwt(response.json()["access_token"], typ="at+jwt") is not None
    assert (
        LedgerRecord.objects.filter(event=LedgerRecord.Event.KEY_REVOKED, body__contains=planted.kid).count()
        == 1
    )


def jwt_kid(token: str) -> str:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def _flip_a_byte(key: SigningKey) -> bytes:
    original = bytes(SigningKey.objects.get(pk=key.pk).wrapped_private_key)
    tampered = bytearray(original)
    tampered[20] ^= 1
    SigningKey.objects.filter(pk=key.pk).update(wrapped_private_key=bytes(tampered))
    return original


def _token_works(service_client) -> str:
    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert verify_jwt(response.json()["access_token"], typ="at+jwt") is not None
    return response.json()["access_token"]


@pytest.mark.parametrize("how", ["revocation", "rotation"])
def test_a_standby_tampered_after_this_process_proved_it_is_not_promoted(
    genuine, service_client, settings, how
):
    """Red team, second round: the proof a long-lived process remembers (a web worker that served the
    JWKS, the beat worker after a rotation) is of the row's identity, not its blobs. The attacker flips a
    byte of the standby's wrapped key after that proof; the next revocation or rotation in that process
    promoted it, and every token request failed (500) until an operator revoked it from a fresh process."""
    algorithm = settings.UAA_ACCESS_TOKEN_ALG
    active = genuine[algorithm]
    standby = create_signing_key(algorithm=algorithm, now=timezone.now(), state=SigningKey.State.NEXT)
    assert proven_key(standby) is not None  # remembered by this process
    _flip_a_byte(standby)
    now = timezone.now()
    if how == "revocation":
        revoke_signing_key(kid=active.kid, now=now, reason="test")
    else:
        SigningKey.objects.filter(pk=standby.pk).update(created_at=now - timedelta(days=400))
        SigningKey.objects.filter(pk=active.pk).update(activated_at=now - timedelta(days=400))
        request_rotation(algorithm=algorithm, now=now)
    standby.refresh_from_db()
    assert standby.state == SigningKey.State.REVOKED
    _token_works(service_client)


def test_a_standby_put_back_after_a_failed_proof_is_promoted_not_destroyed(genuine, service_client, settings):
    """The other way: a byte flipped, a proof failed and remembered, the byte put back. The standby is
    intact when the active key is revoked: it is promoted, not destroyed for what it was a moment ago."""
    algorithm = settings.UAA_ACCESS_TOKEN_ALG
    active = genuine[algorithm]
    standby = create_signing_key(algorithm=algorithm, now=timezone.now(), state=SigningKey.State.NEXT)
    original = _flip_a_byte(standby)
    standby.refresh_from_db()
    assert proven_key(standby) is None  # the failure is remembered
    SigningKey.objects.filter(pk=standby.pk).update(wrapped_private_key=original)
    revoke_signing_key(kid=active.kid, now=timezone.now(), reason="test")
    standby.refresh_from_db()
    assert standby.state == SigningKey.State.ACTIVE
    token = _token_works(service_client)
    assert jwt_kid(token) == standby.kid


def test_a_series_repaired_on_the_token_path_has_a_standby_again(genuine, service_client, settings):
    """Red team, second round: a token request that finds no active key promotes (or, failing its proof,
    revokes) the standby and left the series with none until the next scheduled rotation; a revocation
    meanwhile then had no pre-published key to switch to."""
    algorithm = settings.UAA_ACCESS_TOKEN_ALG
    planted, _ = inject_signing_key(algorithm=algorithm, state=SigningKey.State.NEXT)
    genuine[algorithm].revoke(now=timezone.now())
    _token_works(service_client)
    standby = SigningKey.objects.for_algorithm(algorithm).next_in_line().get()
    assert standby.kid != planted.kid
    assert proven_key(standby) is not None
