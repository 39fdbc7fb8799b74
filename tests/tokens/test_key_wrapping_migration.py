"""Migration tokens/0007: keys wrapped before it (associated data = kid only) move to the bound form
once, under the KEK from the environment, and only after the checks the server makes from now on.

The running server never reads the old form (there is no switch a database attacker could flip), so
the migration must neither lose a genuine key nor launder a row an attacker arranged from genuine
blobs: it stops, naming the kid, and changes nothing.
"""

from __future__ import annotations

import importlib
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.apps import apps as django_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client as HttpClient
from django.utils import timezone
from jwcrypto import jwk

from tests.tokens.forgery import inject_signing_key
from tokens import ledger
from tokens.envelope import configured_keks, unwrap_private_key
from tokens.keys import _generate_private_key, clear_key_cache, proven_key
from tokens.ledger.audit_keys import audit_jwks
from tokens.models import AuditKey, SigningKey
from tokens.signing import verify_jwt

migration = importlib.import_module("tokens.migrations.0007_bind_key_wrapping")
JWKS = "/.well-known/jwks.json"


def old_wrap(der: bytes, kid: str) -> tuple[bytes, bytes, str]:
    """The wrapping UAA wrote before 0007: AES-256-GCM twice, associated data = the kid."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kek = configured_keks()[0]
    data_key = AESGCM.generate_key(bit_length=256)
    nonce, kek_nonce = os.urandom(12), os.urandom(12)
    private = nonce + AESGCM(data_key).encrypt(nonce, der, kid.encode())
    wrapped = kek_nonce + AESGCM(kek.key).encrypt(kek_nonce, data_key, kid.encode())
    return private, wrapped, kek.kek_id


def _der(private: object) -> bytes:
    return private.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def old_signing_key(algorithm: str = "RS256", state: str = SigningKey.State.ACTIVE) -> SigningKey:
    private = _generate_private_key(algorithm)
    public = jwk.JWK.from_pyca(private.public_key())
    kid = public.thumbprint()
    blob, wrapped, kek_id = old_wrap(_der(private), kid)
    return SigningKey.objects.create(
        kid=kid,
        algorithm=algorithm,
        state=state,
        public_jwk={**public.export_public(as_dict=True), "kid": kid, "alg": algorithm, "use": "sig"},
        wrapped_private_key=blob,
        wrapped_data_key=wrapped,
        kek_id=kek_id,
        created_at=timezone.now(),
        activated_at=timezone.now() if state == SigningKey.State.ACTIVE else None,
    )


def old_audit_key(state: str = AuditKey.State.ACTIVE) -> AuditKey:
    private = ed25519.Ed25519PrivateKey.generate()
    public = jwk.JWK.from_pyca(private.public_key())
    kid = public.thumbprint()
    blob, wrapped, kek_id = old_wrap(_der(private), kid)
    return AuditKey.objects.create(
        kid=kid,
        state=state,
        public_jwk={**public.export_public(as_dict=True), "kid": kid, "alg": "EdDSA", "use": "sig"},
        wrapped_private_key=blob,
        wrapped_data_key=wrapped,
        kek_id=kek_id,
        created_at=timezone.now(),
    )


def blobs() -> dict[str, tuple[bytes, bytes]]:
    rows: list[SigningKey | AuditKey] = [*SigningKey.objects.all(), *AuditKey.objects.all()]
    return {row.kid: (bytes(row.wrapped_private_key), bytes(row.wrapped_data_key)) for row in rows}


def bind() -> None:
    migration.bind(django_apps, None)
    clear_key_cache()


@pytest.fixture
def old_keys(db) -> dict[str, SigningKey | AuditKey]:
    keys: dict[str, SigningKey | AuditKey] = {a: old_signing_key(a) for a in ("RS256", "ES256", "EdDSA")}
    keys["next"] = old_signing_key("RS256", state=SigningKey.State.NEXT)
    keys["retired-audit"] = old_audit_key(state=AuditKey.State.RETIRED)
    keys["audit"] = old_audit_key()
    return keys


def test_the_server_never_trusts_the_old_form(old_keys):
    """No downgrade: before the migration ran, old-form keys are neither published nor used."""
    assert all(proven_key(key) is None for key in old_keys.values())
    published = {key["kid"] for key in HttpClient().get(JWKS).json()["keys"]}
    assert not published & {key.kid for key in old_keys.values()}


def test_the_migration_moves_every_genuine_key_to_the_bound_form(old_keys):
    secrets = {
        name: migration._open(key, configured_keks(), key.kid.encode())[2] for name, key in old_keys.items()
    }
    bind()
    for name, key in old_keys.items():
        stored = type(key).objects.get(pk=key.pk)
        assert proven_key(stored) is not None, name
        assert unwrap_private_key(stored) == secrets[name]  # the same private key, re-wrapped
    published = {key["kid"] for key in HttpClient().get(JWKS).json()["keys"]}
    assert published == {key.kid for key in old_keys.values() if isinstance(key, SigningKey)}
    assert [key["kid"] for key in audit_jwks()["keys"]] == [
        old_keys["retired-audit"].kid,
        old_keys["audit"].kid,
    ]


def test_after_the_migration_tokens_are_signed_verified_and_sealed_with_the_same_keys(
    old_keys, service_client
):
    bind()
    from tests.oauth_client import form_post

    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )
    assert response.status_code == 200, response.content
    token = response.json()["access_token"]
    assert verify_jwt(token, typ="at+jwt") is not None
    head = ledger.seal_tree_head(now=timezone.now())
    assert head is not None and head.audit_key_id == old_keys["audit"].kid


def test_the_migration_is_idempotent(old_keys):
    bind()
    before = blobs()
    bind()
    assert blobs() == before


@pytest.mark.parametrize("state", [SigningKey.State.RETIRED, SigningKey.State.NEXT])
def test_an_injected_row_stops_the_migration_naming_it_and_nothing_changes(old_keys, state):
    SigningKey.objects.filter(state=state).delete()
    injected, _ = inject_signing_key(state=state)
    before = blobs()
    with pytest.raises(RuntimeError, match=injected.kid) as failure:
        bind()
    assert "UAA_KEK" in str(failure.value)
    assert blobs() == before  # a migration runs in one transaction; we did not even write


def test_audit_blobs_copied_into_a_signing_row_are_not_laundered(old_keys):
    """Purpose: the old form cannot tell tables apart, so the migration refuses a kid found in both."""
    audit = old_keys["audit"]
    SigningKey.objects.filter(pk=old_keys["EdDSA"].pk).update(state=SigningKey.State.EXPIRED)
    SigningKey.objects.create(
        kid=audit.kid,
        algorithm="EdDSA",
        state=SigningKey.State.ACTIVE,
        public_jwk=dict(audit.public_jwk),
        wrapped_private_key=bytes(audit.wrapped_private_key),
        wrapped_data_key=bytes(audit.wrapped_data_key),
        kek_id=audit.kek_id,
        created_at=timezone.now(),
    )
    with pytest.raises(RuntimeError, match=f"signing key {audit.kid}.*also an audit key"):
        bind()


def test_a_genuine_row_with_another_public_key_is_not_laundered(old_keys):
    """The old form binds only the kid: the migration checks the public key against the private one."""
    from tests.tokens.forgery import attacker_private_jwk, public_members

    victim = old_keys["next"]
    attacker = public_members(attacker_private_jwk("RS256"), "RS256")
    SigningKey.objects.filter(pk=victim.pk).update(public_jwk={**attacker, "kid": victim.kid})
    with pytest.raises(RuntimeError, match=f"{victim.kid}.*not the key its row describes"):
        bind()


def test_a_row_with_another_algorithm_is_not_laundered(old_keys):
    victim = old_keys["ES256"]
    SigningKey.objects.filter(pk=victim.pk).update(algorithm="EdDSA", state=SigningKey.State.RETIRED)
    with pytest.raises(RuntimeError, match=f"{victim.kid}.*not the key its row describes"):
        bind()


def test_expired_and_revoked_keys_that_cannot_be_unwrapped_are_left_alone(old_keys):
    """They never sign or verify again; their rows stay as evidence, and the upgrade goes on."""
    injected, _ = inject_signing_key(state=SigningKey.State.REVOKED)
    bind()
    assert proven_key(SigningKey.objects.get(pk=old_keys["RS256"].pk)) is not None
    assert SigningKey.objects.get(pk=injected.pk).state == SigningKey.State.REVOKED


def test_a_wrong_kek_stops_the_migration(old_keys, settings):
    from tokens.envelope import new_kek

    settings.UAA_KEK = new_kek()
    with pytest.raises(RuntimeError, match="no configured UAA_KEK unwraps it"):
        bind()


def test_a_database_without_keys_needs_no_kek(db, settings):
    settings.UAA_KEK = ""
    settings.UAA_KEK_FILE = ""
    bind()


def test_unbind_returns_to_the_old_form_for_a_rollback(old_keys):
    bind()
    migration.unbind(django_apps, None)
    clear_key_cache()
    for key in old_keys.values():
        stored = type(key).objects.get(pk=key.pk)
        assert proven_key(stored) is None
        assert migration._open(stored, configured_keks(), stored.kid.encode()) is not None


def test_the_frozen_associated_data_is_the_servers(db):
    """The migration's copy of the associated data must equal tokens.envelope's, or converted keys fail."""
    from tokens.envelope import associated_data
    from tokens.keys import create_signing_key

    key = create_signing_key(algorithm="ES256", now=timezone.now())
    assert migration.new_aad("signing", key.kid, "ES256", key.public_jwk) == associated_data(
        purpose="signing", kid=key.kid, algorithm="ES256", public_jwk=key.public_jwk
    )


@pytest.mark.django_db(transaction=True)
def test_manage_py_migrate_converts_a_database_of_the_previous_release():
    """The real path: `migrate` from 0006 with old-form keys in the database."""
    executor = MigrationExecutor(connection)
    target = [("tokens", "0006_ledger_mfa_events")]
    latest = executor.loader.graph.leaf_nodes("tokens")
    executor.migrate(target)
    try:
        executor = MigrationExecutor(connection)
        old = executor.loader.project_state(target[0]).apps
        private = _generate_private_key("ES256")
        public = jwk.JWK.from_pyca(private.public_key())
        kid = public.thumbprint()
        blob, wrapped, kek_id = old_wrap(_der(private), kid)
        old.get_model("tokens", "SigningKey").objects.create(
            kid=kid,
            algorithm="ES256",
            state="active",
            public_jwk={**public.export_public(as_dict=True), "kid": kid, "alg": "ES256", "use": "sig"},
            wrapped_private_key=blob,
            wrapped_data_key=wrapped,
            kek_id=kek_id,
            created_at=timezone.now(),
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    clear_key_cache()
    assert proven_key(SigningKey.objects.get(kid=kid)) is not None
