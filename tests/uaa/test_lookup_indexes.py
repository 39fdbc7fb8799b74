"""Lookups that run on every request of an endpoint use an index, however big the table grows.

Attacker: anyone who makes the table grow (every code redeemed adds a row) until each lookup scans it: the
userinfo endpoint read its token's redemption by ``access_token_checksum``, which had no index, so each
request read the whole table (found by the issue 12 profiling). PostgreSQL's planner with sequential
scans priced out shows whether an index can answer the query at all.
"""

from __future__ import annotations

import pytest
from django.db import connection

from uaa.oauth.codes import _claims_request_sql

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the query plan is PostgreSQL's (DATABASE_URL=postgres://...)"
)


def _plan(sql: str, params: list[str]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db
def test_userinfo_finds_a_tokens_redemption_by_an_index():
    plan = _plan(_claims_request_sql("postgresql", refreshed=False), ["0" * 64])
    assert "Seq Scan" not in plan, plan
    assert "redeemed_code_token_checksum" in plan, plan
