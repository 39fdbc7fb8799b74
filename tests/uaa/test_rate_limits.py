"""Request rate limits at the token, introspection, revocation and userinfo endpoints (issue 13 item 4).

The attackers, and what they must not achieve:
- one address flooding an endpoint must be refused (429 with Retry-After) after its limit, before any of
  its requests costs a secret hash or a database read of the client;
- a flood naming someone else's client_id (wrong secrets, no secret, a forged assertion, a forged access
  token) from its own address must not use up that client's quota: the client's requests from its own
  address still succeed, up to its own limit, which only its own successes count;
- a peer that is no trusted proxy must not get a fresh address per request by writing X-Forwarded-For,
  nor a fresh IPv6 address inside its /64;
- the counters must not live in a process (every worker and node shares them: the database or Redis);
- Redis down must not take the endpoints down (no 500): the limits fail open, and say so.

Every test that needs Redis runs against ``UAA_TEST_RATELIMIT_REDIS_URL`` (a database these tests flush,
such as ``redis://127.0.0.1:6379/12``) and is skipped without it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from freezegun import freeze_time
from prometheus_client import REGISTRY

from accounts import throttling
from accounts.models import ThrottleCounter
from tests.factories import UserFactory
from tests.oauth_client import basic_auth, form_post
from tests.staff import ledger_records
from tests.uaa.endpoints import introspect, revoke, userinfo
from tests.uaa.test_client_admin import CHANGELIST, client_form
from tests.uaa.test_database_outage import _closed_port
from tokens.models import LedgerRecord
from uaa.oauth import client_cache, ratelimit
from uaa.oauth.models import Client, RateLimitCounter
from uaa.oauth.services import update_client

REDIS_URL = os.environ.get("UAA_TEST_RATELIMIT_REDIS_URL", "")
CLIENT_CREDENTIALS = {"grant_type": "client_credentials"}
VICTIM_ADDRESS = "198.51.100.7"
ATTACKER_ADDRESS = "203.0.113.66"
WINDOW = 1_000_000


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    """No Redis client (nor its retry-later state) carried from one test to the next."""
    ratelimit._stores.clear()
    yield
    ratelimit._stores.clear()


@pytest.fixture(autouse=True)
def _only_volume(settings: Any) -> None:
    """The credential-guessing limits (accounts/throttling.py) out of the way: these tests are about volume,
    and every default rate limit generous, so that each test sets the one it is about. A window of some
    eleven days: a test counting within one window does not see it end under it (the tests of the window
    itself set 10 s, and their clock)."""
    settings.UAA_THROTTLE_CLIENT_FAILURES = 10**6
    settings.UAA_THROTTLE_CLIENT_IP_FAILURES = 10**6
    settings.UAA_RATELIMIT_WINDOW = WINDOW
    for endpoint in ratelimit.Endpoint:
        setattr(settings, f"UAA_RATELIMIT_{endpoint.value.upper()}_CLIENT", 1000)
        setattr(settings, f"UAA_RATELIMIT_{endpoint.value.upper()}_IP", 1000)


@pytest.fixture
def redis_db(settings: Any) -> Iterator[Any]:
    """The Redis database of ``UAA_TEST_RATELIMIT_REDIS_URL``, flushed before and after (only that one)."""
    if not REDIS_URL:
        pytest.skip("UAA_TEST_RATELIMIT_REDIS_URL is not set (a Redis database these tests may flush)")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    client.flushdb()
    settings.UAA_RATELIMIT_REDIS_URL = REDIS_URL
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(params=["database", "redis"])
def backend(request: pytest.FixtureRequest, settings: Any, db: Any) -> str:
    """Each attack against both stores: the database (no Redis configured) and Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_db")
    else:
        settings.UAA_RATELIMIT_REDIS_URL = ""
    return str(request.param)


def token_from(address: str, auth: str | None, data: dict[str, str] | None = None, **headers: Any) -> Any:
    http = HttpClient(REMOTE_ADDR=address)
    return form_post(http, "/oauth/token", data or CLIENT_CREDENTIALS, auth=auth, **headers)


def statuses(responses: list[Any]) -> list[int]:
    return [response.status_code for response in responses]


def refused(response: Any) -> None:
    """RFC 6585 §4: 429 with Retry-After (integer seconds, within the window); the RFC 6749 §5.2 body."""
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS, response.content[:300]
    assert 1 <= int(response["Retry-After"]) <= django_settings.UAA_RATELIMIT_WINDOW
    assert response.json() == {"error": "slow_down", "error_description": ratelimit.RateLimited.description}
    assert response["Cache-Control"] == "no-store"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def forged_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{'A' * 86}"


# --- one address --------------------------------------------------------------------------------------
def test_a_flood_from_one_address_is_refused_after_the_limit_before_any_secret_is_checked(
    settings, service_client, backend
):
    """RFC 6585 §4. The 4th request from the address within the window is 429, with a wrong secret as with
    a right one, and no refused request reached client authentication: the address's failures
    (accounts/throttling.py counts every one it checks) stay at the three that were checked."""
    settings.UAA_RATELIMIT_TOKEN_IP = 3
    wrong = basic_auth(service_client.client_id, "wrong")
    before = sample("uaa_rate_limited_total", endpoint="token", limit="ip")
    answers = [token_from(ATTACKER_ADDRESS, wrong) for _ in range(5)]
    answers.append(token_from(ATTACKER_ADDRESS, service_client.basic))
    assert statuses(answers) == [401, 401, 401, 429, 429, 429]
    for answer in answers[3:]:
        refused(answer)
    assert ThrottleCounter.objects.get(key=throttling.client_ip_key(ATTACKER_ADDRESS)).failures == 3
    assert sample("uaa_rate_limited_total", endpoint="token", limit="ip") - before == 3
    assert token_from("192.0.2.10", service_client.basic).status_code == 200  # another address: its own


@pytest.mark.parametrize("endpoint", ["introspection", "revocation"])
def test_introspection_and_revocation_floods_are_refused_too(settings, service_client, endpoint, backend):
    setattr(settings, f"UAA_RATELIMIT_{endpoint.upper()}_IP", 2)
    path = {"introspection": "/oauth/introspect", "revocation": "/oauth/revoke"}[endpoint]
    http = HttpClient(REMOTE_ADDR=ATTACKER_ADDRESS)
    answers = [form_post(http, path, {"token": "x" * 40}, auth=service_client.basic) for _ in range(3)]
    assert statuses(answers) == [200, 200, 429]
    refused(answers[2])


def test_a_userinfo_flood_is_refused_with_the_same_body_and_no_challenge(settings, backend):
    """RFC 6750 §3: WWW-Authenticate is for a request without a valid token; a rate limit is neither (and a
    challenge would send clients for a new token: more load), so a 429 has the JSON body and no challenge."""
    settings.UAA_RATELIMIT_USERINFO_IP = 2
    http = HttpClient(REMOTE_ADDR=ATTACKER_ADDRESS)
    answers = [http.get("/oauth/userinfo", HTTP_AUTHORIZATION="Bearer nonsense") for _ in range(3)]
    assert statuses(answers) == [401, 401, 429]
    refused(answers[2])
    assert "WWW-Authenticate" not in answers[2]


def test_the_window_ends_and_the_address_may_go_on(settings, service_client, backend):
    """The clock starts where the address's next window does (no boundary under the first three requests,
    and Redis's keys expire by its own clock, seconds from now), and moves on by the Retry-After."""
    settings.UAA_RATELIMIT_WINDOW = 10
    settings.UAA_RATELIMIT_TOKEN_IP = 2
    start = ratelimit.counter(ratelimit.Endpoint.TOKEN, "ip", ATTACKER_ADDRESS, now=time.time()).window_end
    with freeze_time(datetime.fromtimestamp(start, UTC)) as clock:
        answers = [token_from(ATTACKER_ADDRESS, service_client.basic) for _ in range(3)]
        assert statuses(answers) == [200, 200, 429]
        clock.tick(timedelta(seconds=int(answers[2]["Retry-After"])))
        assert token_from(ATTACKER_ADDRESS, service_client.basic).status_code == 200


def test_x_forwarded_for_from_a_peer_that_is_no_trusted_proxy_is_no_fresh_address(
    settings, service_client, backend
):
    """tokens/clientip.py: only UAA_TRUSTED_PROXIES are believed. A client writing its own header shares
    its real address's counter; behind the trusted proxy, each client is its own address."""
    settings.UAA_RATELIMIT_TOKEN_IP = 3
    spoofed = [
        token_from(ATTACKER_ADDRESS, service_client.basic, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
        for n in range(5)
    ]
    assert statuses(spoofed) == [200, 200, 200, 429, 429]
    proxied = [
        token_from("127.0.0.1", service_client.basic, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}") for n in range(5)
    ]
    assert statuses(proxied) == [200] * 5


def test_an_ipv6_client_rotating_addresses_inside_its_64_shares_one_counter(
    settings, service_client, backend
):
    """RFC 6177: a /64 is one subscriber's, rotating its low bits is free (throttling.address_bucket)."""
    settings.UAA_RATELIMIT_TOKEN_IP = 3
    rotated = [token_from(f"2001:db8:1:2::{n:x}", service_client.basic) for n in range(1, 6)]
    assert statuses(rotated) == [200, 200, 200, 429, 429]
    assert token_from("2001:db8:1:3::1", service_client.basic).status_code == 200  # the next /64


# --- one client -----------------------------------------------------------------------------------------
def test_a_flood_naming_a_client_does_not_use_up_its_quota(settings, service_client, backend):
    """The attacker knows the victim's client_id and sends it every way a request can name a client: Basic
    with a wrong secret, client_secret_post, client_id alone, a forged assertion (iss = the victim), from
    its own address. None of it counts against the victim, whose own requests then get its full quota of
    3, and the 4th is refused: only the victim's successes counted."""
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 3
    victim = service_client.client_id
    assertion = forged_jwt({"iss": victim, "sub": victim, "aud": "http://testserver", "jti": "j"})
    for _ in range(10):
        answers = [
            token_from(ATTACKER_ADDRESS, basic_auth(victim, "guess")),
            token_from(
                ATTACKER_ADDRESS, None, {**CLIENT_CREDENTIALS, "client_id": victim, "client_secret": "g"}
            ),
            token_from(ATTACKER_ADDRESS, None, {**CLIENT_CREDENTIALS, "client_id": victim}),
            token_from(
                ATTACKER_ADDRESS,
                None,
                {
                    **CLIENT_CREDENTIALS,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": assertion,
                },
            ),
        ]
        assert all(response.status_code in (400, 401) for response in answers), statuses(answers)
    mine = [token_from(VICTIM_ADDRESS, service_client.basic) for _ in range(4)]
    assert statuses(mine) == [200, 200, 200, 429]
    refused(mine[3])


def test_a_clients_limit_holds_across_its_addresses(settings, service_client, backend):
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 3
    answers = [token_from(f"192.0.2.{n}", service_client.basic) for n in range(1, 5)]
    assert statuses(answers) == [200, 200, 200, 429]
    assert sample("uaa_rate_limited_total", endpoint="token", limit="client") >= 1


def test_revocations_naming_a_public_client_cost_it_nothing(settings, public_client, backend):
    """RFC 7009 §2.1: a public client revokes with its client_id alone, and revoking an unknown token is 200
    (§2.2): such a success proves nothing about who sent it, so it counts against the address only."""
    settings.UAA_RATELIMIT_REVOCATION_CLIENT = 2
    http = HttpClient(REMOTE_ADDR=ATTACKER_ADDRESS)
    data = {"client_id": public_client.client_id, "token": "unknown-token"}
    answers = [form_post(http, "/oauth/revoke", data) for _ in range(6)]
    assert statuses(answers) == [200] * 6


def test_forged_access_tokens_naming_a_client_do_not_count_at_userinfo(
    settings, code_flow, confidential_client, backend
):
    """Userinfo counts against the access token's client (RFC 9068 §2.2 client_id), and only for a token
    that verified: forged tokens naming the client are 401 and cost it nothing."""
    settings.UAA_RATELIMIT_USERINFO_CLIENT = 2
    access_token = code_flow(confidential_client)["tokens"]["access_token"]
    forged = forged_jwt({"client_id": confidential_client.client_id, "sub": "x"})
    assert statuses([userinfo(forged) for _ in range(5)]) == [401] * 5
    answers = [userinfo(access_token) for _ in range(3)]
    assert statuses(answers) == [200, 200, 429]
    refused(answers[2])


def test_a_clients_own_lower_limit_is_honoured(settings, service_client, backend):
    """Client.rate_limit below the default. The first request in a worker reads the client (its cache), so
    the limit is known from then on; a success is counted either way."""
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 10
    Client.objects.filter(pk=service_client.client.pk).update(rate_limit=2)
    answers = [token_from(VICTIM_ADDRESS, service_client.basic) for _ in range(4)]
    assert statuses(answers) == [200, 200, 429, 429]


def test_a_clients_own_higher_limit_is_honoured(settings, service_client, backend):
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 2
    Client.objects.filter(pk=service_client.client.pk).update(rate_limit=5)
    answers = [token_from(VICTIM_ADDRESS, service_client.basic) for _ in range(6)]
    assert statuses(answers) == [200] * 5 + [429]


def test_a_client_limit_of_zero_is_no_limit_for_that_client(settings, service_client, backend):
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 2
    Client.objects.filter(pk=service_client.client.pk).update(rate_limit=0)
    token_from(VICTIM_ADDRESS, service_client.basic)  # the worker reads the client
    assert statuses([token_from(VICTIM_ADDRESS, service_client.basic) for _ in range(5)]) == [200] * 5


def test_a_changed_limit_applies_once_the_client_was_read_again(settings, service_client, backend):
    """A change (the admin, the API) moves the row's generation: the worker's next authentication of the
    client reads it, and the request after that is measured by the new limit."""
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 10
    assert statuses([token_from(VICTIM_ADDRESS, service_client.basic) for _ in range(3)]) == [200] * 3
    update_client(client=service_client.client, changes={"rate_limit": 3}, actor="admin")
    answers = [token_from(VICTIM_ADDRESS, service_client.basic) for _ in range(2)]
    assert statuses(answers) == [200, 429]  # the first read the new limit (and was the 4th of 3: counted)


# --- where the counters live ----------------------------------------------------------------------------
def test_the_counts_outlive_every_cache_of_the_process(settings, service_client, backend):
    """What a second process sees: with the client cache and the Redis client of this one dropped, the
    counts are still there (the database's rows or Redis's keys), so nothing is kept in process memory."""
    settings.UAA_RATELIMIT_TOKEN_IP = 3
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 3
    assert statuses([token_from(ATTACKER_ADDRESS, service_client.basic) for _ in range(2)]) == [200, 200]
    client_cache.clear()
    ratelimit._stores.clear()
    assert statuses([token_from(ATTACKER_ADDRESS, service_client.basic) for _ in range(2)]) == [200, 429]


def test_an_empty_secret_does_not_make_a_public_clients_revocations_count_against_it(
    settings, public_client, backend
):
    """Red team, row 4: ``client_secret=`` (empty) passed for proof, and a public client authenticates with
    it, so anyone's revocations naming the client used up its quota, and every revocation naming it, a
    real user's from elsewhere included, was refused: logout stopped for the whole application."""
    settings.UAA_RATELIMIT_REVOCATION_CLIENT = 2
    attacker = HttpClient(REMOTE_ADDR=ATTACKER_ADDRESS)
    data = {"client_id": public_client.client_id, "client_secret": "", "token": "unknown-token"}
    assert statuses([form_post(attacker, "/oauth/revoke", data) for _ in range(5)]) == [200] * 5
    user = HttpClient(REMOTE_ADDR=VICTIM_ADDRESS)
    answer = form_post(user, "/oauth/revoke", {"client_id": public_client.client_id, "token": "mine"})
    assert answer.status_code == HTTPStatus.OK


def test_invented_client_ids_leave_no_counter_rows(settings, service_client):
    """Red team, row 14: the check's read of the client's count was an upsert adding 0, so every invented
    client_id left a row: one address could write a row per request, beyond what the cleanup bounds."""
    settings.UAA_RATELIMIT_REDIS_URL = ""
    http = HttpClient(REMOTE_ADDR=ATTACKER_ADDRESS)
    for n in range(5):
        data = {"client_id": f"invented-{n}", "client_secret": "x", "token": "t"}
        assert form_post(http, "/oauth/introspect", data).status_code == HTTPStatus.UNAUTHORIZED
    keys = set(RateLimitCounter.objects.values_list("key", flat=True))
    assert keys == {f"introspection:ip:{ATTACKER_ADDRESS}"}


def test_on_the_database_the_counters_are_rows(settings, service_client):
    settings.UAA_RATELIMIT_REDIS_URL = ""
    token_from(ATTACKER_ADDRESS, service_client.basic)
    rows = dict(RateLimitCounter.objects.values_list("key", "hits"))
    address = f"token:ip:{ATTACKER_ADDRESS}"
    client = f"token:client:{ratelimit.client_subject(service_client.client_id)}"
    assert rows == {address: 1, client: 1}


def test_with_redis_the_counters_are_keys_that_expire(settings, service_client, redis_db):
    token_from(ATTACKER_ADDRESS, service_client.basic)
    token_from(ATTACKER_ADDRESS, service_client.basic)  # its check carries the first success's count
    keys = sorted(key.decode() for key in redis_db.keys("uaa:rl:*"))
    assert [key.rsplit(":", 1)[0] for key in keys] == sorted(
        [
            f"uaa:rl:token:ip:{ATTACKER_ADDRESS}",
            f"uaa:rl:token:client:{ratelimit.client_subject(service_client.client_id)}",
        ]
    )
    assert all(0 < redis_db.ttl(key) <= WINDOW + 1 for key in keys)
    assert not RateLimitCounter.objects.exists()


def test_on_the_database_a_check_is_one_statement_and_a_success_one_more(settings, service_client):
    """An upsert with RETURNING (PostgreSQL and SQLite), before the request's transaction; a success's count
    after it. A failure (no client proved) costs the one statement only."""
    settings.UAA_RATELIMIT_REDIS_URL = ""
    token_from(ATTACKER_ADDRESS, service_client.basic)  # warm-up
    with CaptureQueriesContext(connection) as queries:
        assert token_from(ATTACKER_ADDRESS, service_client.basic).status_code == 200
    sql = [query["sql"] for query in queries.captured_queries]
    mine = [index for index, statement in enumerate(sql) if "oauth_ratelimitcounter" in statement]
    assert mine == [0, len(sql) - 1], sql
    assert sql[0].startswith("INSERT") and "ON CONFLICT" in sql[0] and "RETURNING" in sql[0]
    with CaptureQueriesContext(connection) as queries:
        assert token_from(ATTACKER_ADDRESS, basic_auth(service_client.client_id, "x")).status_code == 401
    assert sum("oauth_ratelimitcounter" in query["sql"] for query in queries.captured_queries) == 1


def test_with_redis_a_check_is_one_round_trip_and_no_sql(service_client, redis_db, monkeypatch):
    """One pipeline per request: the previous success's count (INCRBY, EXPIREAT) and the check (INCR and
    EXPIREAT of the address, GET of the client); nothing after the answer, no statement on the counter
    table (issue 12: it was two round trips, a sixth of the token endpoint's worker CPU)."""
    import redis.client

    pipelines: list[int] = []
    execute = redis.client.Pipeline.execute

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        pipelines.append(len(self.command_stack))
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    token_from(ATTACKER_ADDRESS, service_client.basic)  # warm-up
    pipelines.clear()
    with CaptureQueriesContext(connection) as queries:
        assert token_from(ATTACKER_ADDRESS, service_client.basic).status_code == 200
    assert pipelines == [2 + 3]
    assert not [q for q in queries.captured_queries if "oauth_ratelimitcounter" in q["sql"]]


def test_with_redis_a_processs_successes_reach_the_others_with_its_next_check(redis_db):
    """What the single round trip costs, and no more: two processes (two stores on one Redis), limit 3.
    Each process's own successes are always in what it checks; another's are once that one has checked
    again. The client gets at most one success per other process past its limit."""
    now = time.time()
    key = ratelimit.counter(ratelimit.Endpoint.TOKEN, "client", "c", now=now)
    first, second = (ratelimit.RedisStore(REDIS_URL, 1.0) for _ in range(2))
    for _ in range(3):
        assert first.hit(add=None, read=key)[1] < 3
        first.count(key)
    assert first.hit(add=None, read=key)[1] == 3  # its own three: refused
    assert second.hit(add=None, read=key)[1] == 3  # sent with first's check above
    second.count(key)
    assert first.hit(add=None, read=key)[1] == 3  # second's success not sent yet
    assert second.hit(add=None, read=key)[1] == 4


def test_limits_of_zero_are_off_and_cost_nothing(settings, service_client):
    settings.UAA_RATELIMIT_REDIS_URL = ""
    settings.UAA_RATELIMIT_TOKEN_IP = settings.UAA_RATELIMIT_TOKEN_CLIENT = 0
    with CaptureQueriesContext(connection) as queries:
        answers = [token_from(ATTACKER_ADDRESS, service_client.basic) for _ in range(5)]
    assert statuses(answers) == [200] * 5
    assert not [q for q in queries.captured_queries if "oauth_ratelimitcounter" in q["sql"]]


def test_the_cleanup_deletes_the_counters_of_ended_windows(settings, service_client):
    settings.UAA_RATELIMIT_REDIS_URL = ""
    token_from(ATTACKER_ADDRESS, service_client.basic)
    assert RateLimitCounter.objects.count() == 2
    assert ratelimit.prune() == 0  # the windows still run
    ended = max(RateLimitCounter.objects.values_list("window_end", flat=True))
    assert ratelimit.prune(now=ended + 1) == 2
    assert not RateLimitCounter.objects.exists()


# --- Redis down -----------------------------------------------------------------------------------------
def test_with_redis_down_every_endpoint_answers_unlimited_and_says_so(
    settings, service_client, code_flow, confidential_client, caplog
):
    """Fail open (docs/operations.md, "Rate limits"): no 500, no limit, a warning once per retry interval
    (not per request), every request counted as unchecked, and no fallback to the database."""
    access_token = code_flow(confidential_client)["tokens"]["access_token"]
    settings.UAA_RATELIMIT_REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    for endpoint in ratelimit.Endpoint:
        setattr(settings, f"UAA_RATELIMIT_{endpoint.value.upper()}_IP", 1)
    before = {e: sample("uaa_ratelimit_unavailable_total", endpoint=e.value) for e in ratelimit.Endpoint}
    with caplog.at_level(logging.WARNING, logger="uaa.oauth.ratelimit"):
        with CaptureQueriesContext(connection) as queries:
            tokens = [token_from(ATTACKER_ADDRESS, service_client.basic) for _ in range(3)]
            issued = tokens[0].json()["access_token"]
            others = [
                introspect(service_client, issued),
                introspect(service_client, issued),
                userinfo(access_token),
                userinfo(access_token),
                revoke(service_client, issued),
                revoke(service_client, issued),
            ]
    assert statuses(tokens + others) == [200] * 9
    warnings = [record for record in caplog.records if record.getMessage() == "oauth.ratelimit_unavailable"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    unchecked = {
        e: sample("uaa_ratelimit_unavailable_total", endpoint=e.value) - before[e] for e in ratelimit.Endpoint
    }
    assert unchecked == {
        ratelimit.Endpoint.TOKEN: 3,
        ratelimit.Endpoint.INTROSPECTION: 2,
        ratelimit.Endpoint.USERINFO: 2,
        ratelimit.Endpoint.REVOCATION: 2,
    }
    assert not [q for q in queries.captured_queries if "oauth_ratelimitcounter" in q["sql"]]


def test_redis_is_tried_again_after_the_retry_interval(settings, service_client, caplog):
    settings.UAA_RATELIMIT_REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    with (
        freeze_time(datetime.now(UTC)) as clock,
        caplog.at_level(logging.WARNING, logger="uaa.oauth.ratelimit"),
    ):
        assert token_from(ATTACKER_ADDRESS, service_client.basic).status_code == 200
        clock.tick(timedelta(seconds=ratelimit.REDIS_RETRY_SECONDS + 1))
        assert token_from(ATTACKER_ADDRESS, service_client.basic).status_code == 200
    assert [r.getMessage() for r in caplog.records].count("oauth.ratelimit_unavailable") == 2


# --- the window ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("now", [0.0, 9.999, 10.0, 1_764_000_000.5])
def test_a_windows_end_is_after_now_and_at_most_one_window_away(settings, now):
    settings.UAA_RATELIMIT_WINDOW = 10
    for subject in ("192.0.2.1", "192.0.2.2", "abc"):
        found = ratelimit.counter(ratelimit.Endpoint.TOKEN, "ip", subject, now=now)
        assert now < found.window_end <= now + 10
        assert 1 <= found.retry_after(now) <= 10


def test_windows_of_different_keys_end_at_different_seconds(settings):
    settings.UAA_RATELIMIT_WINDOW = 10
    ends = {
        ratelimit.counter(ratelimit.Endpoint.TOKEN, "ip", f"192.0.2.{n}", now=0).window_end for n in range(50)
    }
    assert len(ends) > 5  # not one herd at the same second


# --- the Django admin -----------------------------------------------------------------------------------
@pytest.fixture
def admin_browser(db: Any) -> HttpClient:
    staff: Any = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    http.force_login(staff)
    return http


def test_the_admin_sets_a_clients_limit_and_the_change_is_recorded(admin_browser, service_client):
    pk = service_client.client.pk
    page = admin_browser.get(f"{CHANGELIST}{pk}/change/")
    assert page.status_code == 200 and b'name="rate_limit"' in page.content
    form = client_form(
        name="Service",
        default_audience="https://api.example.com",
        allowed_resources="https://api.example.com",
        rate_limit="25",
    )
    response = admin_browser.post(f"{CHANGELIST}{pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    assert Client.objects.get(pk=pk).rate_limit == 25
    [record] = [
        r for r in ledger_records(LedgerRecord.Event.ADMIN_CHANGE) if r["subject"] == f"oauth.client:{pk}"
    ]
    assert record["detail"]["fields"] == ["Rate limit"], record  # Django's change message names the label
    assert admin_browser.post(f"{CHANGELIST}{pk}/change/", {**form, "rate_limit": "-1"}).status_code == 200
    assert Client.objects.get(pk=pk).rate_limit == 25  # a negative limit is refused by the form
