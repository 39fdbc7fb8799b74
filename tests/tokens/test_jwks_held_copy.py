"""The JWKS document a process holds (tokens/jwks.py) is never served once the key rows say otherwise.

Attacker: someone who has just had a signing key revoked (stolen, so revoked), or who writes the key
table or the ledger with plain SQL (no model method, no signal, no cache invalidation). In a process
that has already built and holds the JWKS document, they must not get a revoked, contradicted or
altered key published by the next request (RFC 7517 §5: the set is the issuer's keys as they are now).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tokens import ledger
from tokens.keys import clear_key_cache, create_signing_key
from tokens.models import LedgerRecord, SigningKey
from tokens.rotation import revoke_signing_key

JWKS = "/.well-known/jwks.json"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def published(db):
    """One active key per algorithm and a next RS256 key, and a JWKS document this process holds."""
    for algorithm in ("RS256", "ES256", "EdDSA"):
        create_signing_key(algorithm=algorithm, now=T0, state=SigningKey.State.ACTIVE)
    create_signing_key(algorithm="RS256", now=T0)
    assert published_kids() == set(SigningKey.objects.values_list("kid", flat=True))
    return SigningKey.objects.get(algorithm="RS256", state=SigningKey.State.ACTIVE)


def published_kids() -> set[str]:
    response = HttpClient().get(JWKS)
    assert response.status_code == HTTPStatus.OK
    return {key["kid"] for key in response.json()["keys"]}


def sql(statement: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement.format(table=connection.ops.quote_name(SigningKey._meta.db_table)), params)


def test_a_held_document_is_served_again_with_one_statement(published):
    """What the cache saves: a warm request reads the rows' deciding columns only, and builds nothing."""
    with CaptureQueriesContext(connection) as queries:
        assert published.kid in published_kids()
    assert len(queries.captured_queries) == 1


def test_a_revocation_leaves_the_next_document_at_once(published):
    revoke_signing_key(kid=published.kid, now=timezone.now(), reason="compromised")
    assert published.kid not in published_kids()


def test_a_state_written_by_sql_leaves_the_next_document_at_once(published):
    sql("UPDATE {table} SET state = %s WHERE kid = %s", ["revoked", published.kid])
    assert published.kid not in published_kids()


def test_a_revocation_time_written_by_sql_leaves_the_next_document_at_once(published):
    """The state still says active; the row's own revoked_at contradicts it."""
    sql(
        "UPDATE {table} SET revoked_at = %s WHERE kid = %s",
        [connection.ops.adapt_datetimefield_value(T0), published.kid],
    )
    assert published.kid not in published_kids()


def test_a_ledger_record_alone_leaves_the_next_document_at_once(published):
    """The row is untouched: a key.revoked record of its kid contradicts it (an INSERT into another table)."""
    ledger.append_record(event=LedgerRecord.Event.KEY_REVOKED, at=timezone.now(), subject=published.kid)
    assert published.kid not in published_kids()


def test_a_public_key_altered_by_sql_is_not_published(published):
    """The stored public JWK of the held row replaced by another key's: the row fails the proof now."""
    other = SigningKey.objects.get(algorithm="RS256", state=SigningKey.State.NEXT)
    sql("UPDATE {table} SET public_jwk = %s WHERE kid = %s", [json.dumps(other.public_jwk), published.kid])
    assert published.kid not in published_kids()


def test_a_key_added_is_in_the_next_document(published):
    """A new row appears in the next document, never the held one."""
    added = create_signing_key(algorithm="ES256", now=T0)
    assert added.kid in published_kids()


def test_forgotten_proofs_are_made_again(published):
    """clear_key_cache (a KEK change in place): the held document was built from the proofs it forgot."""
    clear_key_cache()
    sql("UPDATE {table} SET wrapped_data_key = %s WHERE kid = %s", [b"\x00" * 60, published.kid])
    assert published.kid not in published_kids()
