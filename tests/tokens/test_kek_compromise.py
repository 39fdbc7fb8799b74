"""After a KEK compromise a rewrap is not enough: every published signing key and the audit key are
replaced (docs/key-rotation.md, "KEK compromise"; issue 8, item 13).

Attacker: holds ``UAA_KEK`` and a copy of the database (a backup), so every private key wrapped under
that KEK. After the procedure they must not be able to sign a token any verifier accepts, nor unwrap
any key the server uses from then on, even with a later copy of the database.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client as HttpClient
from django.utils import timezone
from jwcrypto import jwk

from tests.tokens.forgery import forge_token
from tokens import ledger
from tokens.envelope import KeyDecryptionError, configured_keks, new_kek, unwrap_private_key
from tokens.keys import clear_key_cache, create_signing_key
from tokens.ledger.audit_keys import audit_jwks
from tokens.models import AuditKey, SigningKey
from tokens.signing import verify_jwt

JWKS = "/.well-known/jwks.json"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def compromised(db) -> dict[str, jwk.JWK]:
    """Published keys of every state, an audit key that sealed a head; what the attacker unwrapped."""
    now = timezone.now()
    keys = [
        create_signing_key(algorithm=a, now=now, state=SigningKey.State.ACTIVE)
        for a in ("RS256", "ES256", "EdDSA")
    ]
    keys.append(create_signing_key(algorithm="RS256", now=now))  # next
    retired = create_signing_key(algorithm="ES256", now=now - timedelta(hours=1))
    SigningKey.objects.filter(pk=retired.pk).update(state=SigningKey.State.RETIRED, retired_at=now)
    keys.append(SigningKey.objects.get(pk=retired.pk))
    ledger.append_record(event="token.issued", client_id="c")
    ledger.seal_tree_head(now=now)
    stolen = {}
    for key in keys:
        private = serialization.load_der_private_key(unwrap_private_key(key), password=None)
        stolen[key.kid] = jwk.JWK.from_pyca(private)
    return stolen


def test_the_procedure_leaves_the_attacker_nothing_that_verifies(compromised, settings):
    old_kek = settings.UAA_KEK
    old_audit = AuditKey.objects.get()
    published_before = {key["kid"] for key in HttpClient().get(JWKS).json()["keys"]}
    assert published_before == set(compromised)

    settings.UAA_KEK = f"{new_kek()},{old_kek}"  # 1. a new KEK first, the old one still accepted
    new_kek_id = configured_keks()[0].kek_id
    run("rewrap_signing_keys")  # 2. nothing is wrapped under the old KEK any more
    out = run("revoke_signing_key", "--all-published", "--reason", "KEK compromise")  # 3.
    run("audit", "rotate-key")  # 4.
    settings.UAA_KEK = settings.UAA_KEK.split(",")[0]  # 5. the old KEK goes
    clear_key_cache()  # every process restarts with the new UAA_KEK

    assert all(f"revoked: {kid}" in out for kid in compromised)
    published = {key["kid"] for key in HttpClient().get(JWKS).json()["keys"]}
    assert published and not published & published_before
    for kid, private in compromised.items():
        algorithm = SigningKey.objects.get(kid=kid).algorithm
        assert verify_jwt(forge_token(private, kid=kid, alg=algorithm), typ="at+jwt") is None
    assert set(SigningKey.objects.publishable().values_list("kek_id", flat=True)) == {new_kek_id}

    # the attacker's old KEK opens none of the keys in use now, whatever copy of the database they get
    current_kek, settings.UAA_KEK = settings.UAA_KEK, old_kek
    for key in [*SigningKey.objects.publishable(), AuditKey.objects.active().get()]:
        with pytest.raises(KeyDecryptionError):
            unwrap_private_key(key)
    settings.UAA_KEK = current_kek

    # the ledger keeps its history: the old audit key stays published, retired; a new one seals
    new_audit = AuditKey.objects.active().get()
    assert new_audit.kid != old_audit.kid
    assert AuditKey.objects.get(pk=old_audit.pk).state == AuditKey.State.RETIRED
    assert {key["kid"] for key in audit_jwks()["keys"]} == {old_audit.kid, new_audit.kid}


def test_all_published_signs_with_fresh_keys_at_once(compromised):
    """No compromised `next` key is promoted: the next keys are revoked before the active ones."""
    run("revoke_signing_key", "--all-published", "--reason", "drill")
    active = set(SigningKey.objects.active().values_list("kid", flat=True))
    assert len(active) == 3
    assert not active & set(compromised)


@pytest.mark.parametrize("args", [(), ("somekid", "--all-published")])
def test_the_command_takes_one_kid_or_all_published(db, args):
    with pytest.raises(CommandError, match="--all-published"):
        run("revoke_signing_key", *args)
