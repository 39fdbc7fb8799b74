"""A database write cannot bring back a revoked or expired signing key (issue 8 follow-up, finding B3).

Attacker: database-only. They write any table with plain SQL, may have copied the database before the
revocation (so they hold the key's wrapped blobs as they were), and do not know ``UAA_KEK``. They must
not get a revoked or expired key published in the JWKS again, trusted for verification again (its
tokens active at introspection, accepted at userinfo), or used for signing again.

The defences: the private half is destroyed when a key is revoked or expires, so the row can never
pass the trust check again (tokens/keys.py: a key is trusted only once its private half unwraps and
matches); and a key's state is checked against what cannot be written back: its own ``retired_at`` /
``expired_at`` / ``revoked_at`` and the append-only, sealed ``key.retired`` / ``key.expired`` /
``key.revoked`` records of the audit ledger.

RFC 7517 §5 (the JWK Set is the issuer's keys), RFC 7662 §2.2 (a token that is no longer valid is
``{"active": false}``), RFC 6750 §3.1 (``invalid_token`` for an invalid access token), RFC 9068 §4
(the signature must verify with the issuer's key).
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client as HttpClient
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from tests.oauth_client import form_post
from tokens import ledger
from tokens.keys import clear_key_cache, generate_signing_key, proven_key
from tokens.models import LedgerRecord, SigningKey
from tokens.rotation import ensure_active_key, revoke_signing_key, rotate_signing_keys
from tokens.signing import verify_jwt

JWKS = "/.well-known/jwks.json"
BLOBS = ("wrapped_private_key", "wrapped_data_key", "kek_id")


@pytest.fixture
def policy(settings):
    settings.UAA_KEY_ROTATION_PERIOD = 3600
    settings.UAA_JWKS_MAX_AGE = 300
    settings.UAA_KEY_PREPUBLISH_SECONDS = 600
    settings.UAA_ACCESS_TOKEN_LIFETIME = 900
    settings.UAA_ID_TOKEN_LIFETIME = 600
    settings.UAA_KEY_RETENTION_MARGIN = 60
    return settings


@pytest.fixture
def keys(db, policy) -> datetime:
    """One active key (and its standby) per algorithm, as a running server has them."""
    now = timezone.now()
    rotate_signing_keys(now=now)
    return now


def header_kid(token: str) -> str:
    encoded = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))["kid"]


def published_kids() -> set[str]:
    response = HttpClient().get(JWKS)
    assert response.status_code == HTTPStatus.OK
    return {key["kid"] for key in response.json()["keys"]}


def copy_of_the_row(kid: str) -> dict[str, Any]:
    """What the attacker saved from an earlier copy of the database."""
    row = SigningKey.objects.filter(kid=kid).values(*BLOBS, "retired_at").get()
    return {name: bytes(value) if isinstance(value, memoryview) else value for name, value in row.items()}


def sql_update(kid: str | None = None, *, where: str = "kid = %s", args: tuple = (), **columns: Any) -> None:
    """``UPDATE tokens_signingkey SET ... WHERE ...`` in plain SQL: no model method, no signal."""
    quote = connection.ops.quote_name
    values = [
        connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for value in columns.values()
    ]
    assignments = ", ".join(f"{quote(name)} = %s" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(SigningKey._meta.db_table)} SET {assignments} WHERE {where}",
            [*values, *((kid,) if kid is not None else args)],
        )


def flip(kid: str, state: str, saved: dict[str, Any] | None, **columns: Any) -> None:
    """Write ``state`` into the key's row; with ``saved``, the blobs from before the revocation too.

    A key that takes the ``active`` or ``next`` slot of its algorithm needs the slot free first (one
    active and one next key per algorithm): the attacker moves the key holding it to ``retired``.
    """
    if state in {SigningKey.State.ACTIVE, SigningKey.State.NEXT}:
        algorithm = SigningKey.objects.filter(kid=kid).values_list("algorithm", flat=True).get()
        sql_update(where="algorithm = %s AND state = %s", args=(algorithm, state), state="retired")
    restored = {name: saved[name] for name in BLOBS} if saved is not None else {}
    sql_update(kid, state=state, **restored, **columns)


def introspect(token: str, registered: Any) -> dict[str, Any]:
    response = form_post(HttpClient(), "/oauth/introspect", {"token": token}, auth=registered.basic)
    assert response.status_code == HTTPStatus.OK
    return response.json()


def userinfo_status(token: str) -> int:
    return HttpClient().get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}").status_code


def new_client_credentials_token(service_client: Any) -> Any:
    return form_post(
        HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=service_client.basic
    )


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def assert_the_key_stays_dead(
    kid: str, old_token: str, *, confidential_client: Any, service_client: Any, caplog: Any
) -> None:
    """Not published, not trusted, not signing; one error line naming the kid and nothing else."""
    with caplog.at_level(logging.INFO):
        assert kid not in published_kids()
        assert verify_jwt(old_token, typ="at+jwt") is None
        assert introspect(old_token, confidential_client) == {"active": False}
        assert userinfo_status(old_token) == HTTPStatus.UNAUTHORIZED
        issued = new_client_credentials_token(service_client)
        assert issued.status_code == HTTPStatus.OK, issued.content
        new_token = issued.json()["access_token"]
        assert header_kid(new_token) != kid
        assert introspect(new_token, service_client)["active"] is True
        assert kid not in published_kids()
    errors = error_records(caplog)
    assert [record.getMessage() for record in errors] == ["tokens.key_state_tampered"], [
        (record.getMessage(), getattr(record, "reason", "")) for record in errors
    ]
    assert errors[0].kid == kid  # type: ignore[attr-defined]
    assert old_token not in caplog.text


REVOKED_ATTACKS = {
    # the finding as reported: one column
    "revoked-to-retired": (SigningKey.State.RETIRED, False),
    "revoked-to-active": (SigningKey.State.ACTIVE, False),
    # with the blobs saved before the revocation, and every timestamp made to agree with the state
    "revoked-to-retired-with-saved-blobs": (SigningKey.State.RETIRED, True),
    "revoked-to-active-with-saved-blobs": (SigningKey.State.ACTIVE, True),
    "revoked-to-next-with-saved-blobs": (SigningKey.State.NEXT, True),
}


@pytest.mark.parametrize("attack", REVOKED_ATTACKS)
@pytest.mark.parametrize("process", ["proof-cached", "fresh"])
def test_a_revoked_key_flipped_back_by_sql_stays_revoked(
    keys, code_flow, confidential_client, service_client, caplog, attack, process
):
    """RFC 7662 §2.2 / RFC 6750 §3.1: after an emergency revocation every token the key signed is
    rejected, and no database write brings the key back into the JWKS or into signing."""
    old_token = code_flow(confidential_client)["tokens"]["access_token"]
    kid = header_kid(old_token)
    assert introspect(old_token, confidential_client)["active"] is True  # this process proved the key
    saved = copy_of_the_row(kid)
    revoke_signing_key(kid=kid, now=timezone.now(), reason="leaked")

    state, restore = REVOKED_ATTACKS[attack]
    if restore:  # the exact row as it stood: timestamps too
        retired_at = timezone.now() if state == SigningKey.State.RETIRED else None
        flip(kid, state, saved, revoked_at=None, retired_at=retired_at)
    else:
        flip(kid, state, None)
    if process == "fresh":
        clear_key_cache()  # another worker, or this one restarted: nothing proven yet
    caplog.clear()

    assert_the_key_stays_dead(
        kid, old_token, confidential_client=confidential_client, service_client=service_client, caplog=caplog
    )


@pytest.mark.parametrize("restore", [False, True], ids=["state-only", "with-saved-blobs"])
@pytest.mark.parametrize("process", ["proof-cached", "fresh"])
def test_an_expired_key_flipped_back_to_retired_stays_expired(
    keys, code_flow, confidential_client, service_client, caplog, restore, process
):
    """RFC 7517 §5: an expired key left the JWK Set for good; its tokens stay invalid even if the
    attacker also extends their stored expiry (RFC 7662 §2.2)."""
    old_token = code_flow(confidential_client)["tokens"]["access_token"]
    kid = header_kid(old_token)
    assert introspect(old_token, confidential_client)["active"] is True
    saved = copy_of_the_row(kid)
    at = keys
    for _ in range(60):  # scheduled rotations, every five minutes, until the key has expired
        at += timedelta(minutes=5)
        rotate_signing_keys(now=at)
        if SigningKey.objects.get(kid=kid).state == SigningKey.State.EXPIRED:
            break
    assert SigningKey.objects.get(kid=kid).state == SigningKey.State.EXPIRED

    if restore:
        flip(kid, SigningKey.State.RETIRED, saved, expired_at=None, retired_at=timezone.now())
    else:
        flip(kid, SigningKey.State.RETIRED, None)
    get_access_token_model().objects.update(expires=timezone.now() + timedelta(hours=1))
    if process == "fresh":
        clear_key_cache()
    caplog.clear()

    assert_the_key_stays_dead(
        kid, old_token, confidential_client=confidential_client, service_client=service_client, caplog=caplog
    )


def test_revocation_destroys_the_private_half_and_keeps_the_public_key(keys):
    """The revoked row keeps its public JWK for the record; nothing in it can be unwrapped any more."""
    key = SigningKey.objects.active().for_algorithm("RS256").get()
    public = dict(key.public_jwk)
    revoke_signing_key(kid=key.kid, now=timezone.now(), reason="leaked")
    stored = SigningKey.objects.get(kid=key.kid)
    assert bytes(stored.wrapped_private_key) == b"" and bytes(stored.wrapped_data_key) == b""
    assert stored.public_jwk == public and stored.revoked_at is not None


def test_expiry_destroys_the_private_half(keys):
    key = SigningKey.objects.active().for_algorithm("RS256").get()
    key.retire(now=keys)
    rotate_signing_keys(now=keys + timedelta(days=1))
    stored = SigningKey.objects.get(kid=key.kid)
    assert stored.state == SigningKey.State.EXPIRED
    assert bytes(stored.wrapped_private_key) == b"" and bytes(stored.wrapped_data_key) == b""


def test_an_unretired_key_does_not_sign_again(keys, service_client, caplog, settings):
    """A retired key made active again by SQL (its ``key.retired`` record stands) signs nothing: its
    row goes back to ``retired`` and another key signs."""
    algorithm = settings.UAA_ACCESS_TOKEN_ALG  # the key that would sign the access token
    key = SigningKey.objects.active().for_algorithm(algorithm).get()
    key.retire(now=keys)  # what a rotation does, with its record
    ledger.append_record(event=LedgerRecord.Event.KEY_RETIRED, at=keys, subject=key.kid)
    replacement = ensure_active_key(algorithm=algorithm, now=keys)
    sql_update(replacement.kid, state="retired")
    sql_update(key.kid, state="active", retired_at=None)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        issued = new_client_credentials_token(service_client)
        assert issued.status_code == HTTPStatus.OK, issued.content
        assert header_kid(issued.json()["access_token"]) != key.kid
    assert [record.getMessage() for record in error_records(caplog)] == ["tokens.key_state_tampered"]
    assert SigningKey.objects.get(kid=key.kid).state == SigningKey.State.RETIRED


def test_a_deleted_revocation_record_is_evident_to_the_audit_verifier(keys):
    """The ledger is what a revocation cannot be written out of: deleting its sealed record (and
    restoring the row) breaks the signed tree (RFC 9162 §2.1.3), which the verifier reports."""
    key = SigningKey.objects.active().for_algorithm("RS256").get()
    revoke_signing_key(kid=key.kid, now=timezone.now(), reason="leaked")
    ledger.seal_tree_head(now=timezone.now(), force=True)
    assert ledger.verify_stored_ledger(now=timezone.now()).ok
    revoked = [r for r in LedgerRecord.objects.filter(event="key.revoked") if key.kid in r.body]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {LedgerRecord._meta.db_table} WHERE id = %s",
                [revoked[0].pk],
            )
    except DatabaseError:
        return  # a trigger refuses it: better still
    assert not ledger.verify_stored_ledger(now=timezone.now()).ok


def test_the_state_check_is_one_query_on_an_index(keys, django_assert_max_num_queries, settings):
    """Verification reads the key row and its ledger records in one query (the partial index on key
    records keeps the ledger side small however many tokens were issued)."""
    token_key = SigningKey.objects.active().for_algorithm(settings.UAA_ACCESS_TOKEN_ALG).get()
    assert proven_key(token_key) is not None
    from tokens.keys import trusted_public_key

    with django_assert_max_num_queries(1):
        assert trusted_public_key(token_key.kid) is not None


# --- a database of the previous release -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migrate_destroys_the_private_halves_of_keys_that_ended_before_it(settings):
    """Keys revoked or expired before this release kept their blobs: the migration wipes them, and
    leaves the public JWK and every key still in use alone."""
    wipe = importlib.import_module("tokens.migrations.0009_destroy_ended_private_keys")
    executor = MigrationExecutor(connection)
    target = [("tokens", wipe.Migration.dependencies[0][1])]
    latest = executor.loader.graph.leaf_nodes("tokens")
    executor.migrate(target)
    rows: dict[str, str] = {}
    try:
        old = MigrationExecutor(connection).loader.project_state(target[0]).apps
        model = old.get_model("tokens", "SigningKey")
        now = timezone.now()
        for state in ("revoked", "expired", "retired", "active"):
            key = generate_signing_key(algorithm="ES256", now=now)
            model.objects.create(
                **{
                    name: getattr(key, name)
                    for name in ("kid", "algorithm", "public_jwk", "created_at", *BLOBS)
                },
                state=state,
                retired_at=now if state in {"retired", "expired"} else None,
                expired_at=now if state == "expired" else None,
                revoked_at=now if state == "revoked" else None,
            )
            rows[state] = key.kid
    finally:
        MigrationExecutor(connection).migrate(latest)
    clear_key_cache()
    for state, kid in rows.items():
        stored = SigningKey.objects.get(kid=kid)
        ended = state in {"revoked", "expired"}
        assert (bytes(stored.wrapped_private_key) == b"") is ended, state
        assert stored.public_jwk["kid"] == kid
        if not ended:
            assert proven_key(stored) is not None
