"""SQL round trips per request, for each grant and endpoint (issue 12 items 2 and 4).

A ceiling per endpoint, counted with the real database (``CaptureQueriesContext``, BEGIN and COMMIT
included: each is a round trip) after one warm-up request, as a worker serves it once its caches are
warm. A change that adds a query to the hot path fails here with the statements listed; one that makes a
path cheaper lowers the ceiling in the same commit. The figures hold on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext

from tests.conftest import REDIRECT_URI
from tests.oauth_client import AuthorizationRequest, authorize, exchange_code, form_post
from tests.uaa.endpoints import introspect, refresh, revoke, token_request, userinfo

API = "https://api.example.com"

POSTGRESQL = connection.vendor == "postgresql"
CEILINGS = {
    # PostgreSQL: the counters with the client's version, then the token, its signing key's confirmation
    # and its ledger record in one statement (uaa/oauth/access_tokens.py), in autocommit: no BEGIN and no
    # COMMIT (uaa/oauth/views.py TokenView; was 4 with them). SQLite (no data-modifying WITH): BEGIN,
    # counters + client version, active kid, token, ledger record, COMMIT.
    "client_credentials": 2 if POSTGRESQL else 6,
    "authorization_code": 24,
    # was 29, then 15: rotation by two UPDATEs and an INSERT, no savepoints; the presented token locked and
    # read with its access token and user in one statement, the client not read again, the family's
    # redemption read once (uaa/oauth/refresh_tokens.py locked_for_rotation).
    "refresh_token": 11,
    # The access token with its client and its user (is_active, not_before) in one statement
    # (tokens/stored_tokens.py): was 4 each, the user's not-before time read a second time.
    "introspection": 3,  # counters + client version, signing key, the access token
    "userinfo": 3,  # signing key, the access token, the code's claims request
    "revocation": 9,
    "jwks": 1,
    "discovery": 0,
    # A wrong secret and an unknown client_id alike (tests/uaa/test_client_auth_timing.py): BEGIN, counters +
    # client version, the failure counted (one upsert, accounts/throttling.py), its tally counted or opened
    # (one upsert, uaa/oauth/audit.py; SQLite: the first failure's record apart), COMMIT. Was 13 and 24.
    # On PostgreSQL a client-credentials request has no BEGIN and COMMIT (above): 3.
    "failed_client_authentication": 3 if POSTGRESQL else 5,
}


# uaa/oauth/ratelimit.py on the database store (no Redis configured, as here): one statement checks the
# address's and the client's counters before everything else, and a success adds one after everything else
# that counts it against its client (a failure proves no client). Counted apart from the ceilings above, and
# exactly: a request's total is its ceiling plus these, two for a success and one for a failure (so
# client_credentials is 4 round trips on PostgreSQL, 8 on SQLite). With Redis, none: two Redis round trips
# instead, and no SQL (tests/uaa/test_rate_limits.py).
RATE_LIMIT_TABLE = "oauth_ratelimitcounter"


def rate_limit_statements(name: str, status: int) -> int:
    if name in ("jwks", "discovery"):
        return 0
    return 2 if 200 <= status < 300 else 1


def own(sql: list[str]) -> list[str]:
    """The endpoint's own statements: all but the rate limiter's."""
    return [statement for statement in sql if RATE_LIMIT_TABLE not in statement]


def statements(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    return response, [query["sql"] for query in captured.captured_queries]


def within_ceiling(name: str, call: Callable[[], Any], status: int = 200) -> list[str]:
    call()  # warm-up: the client cache, the unwrapped signing key, the compiled statements
    response, sql = statements(call)
    assert response.status_code == status, response.content[:300]
    limiter = len(sql) - len(own(sql))
    assert limiter == rate_limit_statements(name, status), f"{name}: {limiter} rate-limit statements"
    sql = own(sql)
    listing = "\n".join(f"  {statement[:160]}" for statement in sql)
    assert len(sql) <= CEILINGS[name], f"{name}: {len(sql)} statements > {CEILINGS[name]}:\n{listing}"
    return sql


@pytest.fixture
def resource_server(client_factory):
    return client_factory(
        name="Resource server",
        grant_type="client-credentials",
        redirect_uris=[],
        introspection_resources=[API],
    )


def _client_credentials(service_client):
    return lambda: token_request(service_client, {"grant_type": "client_credentials"})


@pytest.mark.django_db(transaction=True)
def test_client_credentials_token_within_its_ceiling(service_client):
    sql = within_ceiling("client_credentials", _client_credentials(service_client))
    assert not [s for s in sql if s.startswith(("SAVEPOINT", "RELEASE"))], "no savepoint on this path"
    reads = [s for s in sql if s.startswith("SELECT") and "oauth2_provider_accesstoken" in s]
    assert reads == [], "the token just written is not read back"
    assert not [s for s in sql if "django_session" in s], "no session on an API path"


@pytest.mark.django_db(transaction=True)
def test_authorization_code_exchange_within_its_ceiling(browser, client_factory):
    relying_party = client_factory(default_audience=[API])

    def exchange() -> Any:
        request = AuthorizationRequest(client_id=relying_party.client_id, redirect_uri=REDIRECT_URI)
        code = authorize(browser, request)["code"]
        return statements(
            lambda: exchange_code(HttpClient(), code=code, request=request, auth=relying_party.basic)
        )

    exchange()
    response, sql = exchange()
    assert response.status_code == 200, response.content[:300]
    assert len(sql) - len(own(sql)) == rate_limit_statements("authorization_code", 200)
    assert len(own(sql)) <= CEILINGS["authorization_code"], "\n".join(sql)


@pytest.mark.django_db(transaction=True)
def test_refresh_within_its_ceiling(code_flow, confidential_client):
    presented = [code_flow(confidential_client)["tokens"]["refresh_token"]]

    def rotate() -> Any:
        response = refresh(confidential_client, presented[-1])
        presented.append(response.json().get("refresh_token", ""))
        return response

    sql = within_ceiling("refresh_token", rotate)
    assert not [s for s in sql if s.startswith("DELETE")], "a rotation deletes nothing"
    assert not [s for s in sql if s.startswith(("SAVEPOINT", "RELEASE"))], "no savepoint on this path"
    # The rotated token is reuse, and still revokes the family (RFC 9700 §4.14.2).
    assert refresh(confidential_client, presented[-2]).json()["error"] == "invalid_grant"
    assert refresh(confidential_client, presented[-1]).json()["error"] == "invalid_grant"


@pytest.mark.django_db(transaction=True)
def test_introspection_within_its_ceiling(code_flow, client_factory, resource_server):
    access_token = code_flow(client_factory(default_audience=[API]))["tokens"]["access_token"]
    sql = within_ceiling("introspection", lambda: introspect(resource_server, access_token))
    assert not user_read_apart(sql), "the user's row comes with the token's"


def user_read_apart(sql: list[str]) -> list[str]:
    """Statements that read the user's table without the access token's (a second look at the user)."""
    return [s for s in sql if "accounts_user" in s and "oauth2_provider_accesstoken" not in s]


@pytest.mark.django_db(transaction=True)
def test_userinfo_within_its_ceiling(code_flow, confidential_client):
    access_token = code_flow(confidential_client)["tokens"]["access_token"]
    sql = within_ceiling("userinfo", lambda: userinfo(access_token))
    assert not [s for s in sql if "django_session" in s], "no session on an API path"
    assert not user_read_apart(sql), "the user's row comes with the token's"


@pytest.mark.django_db(transaction=True)
def test_revocation_within_its_ceiling(service_client):
    issued = [_client_credentials(service_client)().json()["access_token"] for _ in range(2)]
    within_ceiling("revocation", lambda: revoke(service_client, issued.pop()))


@pytest.mark.django_db(transaction=True)
def test_jwks_and_discovery_within_their_ceilings(service_client):
    _client_credentials(service_client)()  # an active key exists
    within_ceiling("jwks", lambda: HttpClient().get("/.well-known/jwks.json"))
    within_ceiling("discovery", lambda: HttpClient().get("/.well-known/openid-configuration"))


@pytest.mark.django_db(transaction=True)
def test_a_failed_client_authentication_reads_the_client_as_a_success_does(service_client):
    """The counters and the client's version are one query for a wrong secret and an unknown client too;
    what a failure adds is its counting (accounts/throttling.py) and its tally (uaa/oauth/audit.py)."""
    wrong = "Basic " + base64.b64encode(f"{service_client.client_id}:wrong".encode()).decode()
    unknown = "Basic " + base64.b64encode(b"nobody:wrong").decode()
    for auth in (wrong, unknown):

        def attempt(auth: str = auth) -> Any:
            return form_post(HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=auth)

        sql = within_ceiling("failed_client_authentication", attempt, status=401)
        assert sum("oauth_client" in s and "accounts_throttlecounter" in s for s in sql) == 1
        assert not [s for s in sql if s.startswith(("SAVEPOINT", "RELEASE"))], "no savepoint on this path"
