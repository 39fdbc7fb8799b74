"""/metrics (issue 13 item 2): who may read it, what it counts, and that no client can shape its labels.

Attackers: (1) anyone on the internet reading the metrics (client ids, traffic, lockouts: reconnaissance)
from an address outside UAA_METRICS_ALLOWED_NETWORKS, also by writing X-Forwarded-For themselves or through
the trusted proxy; (2) a client with a token for something else; (3) a client flooding the server with
random paths and random client_ids to blow up the label sets (memory and the scraper's series: a
cardinality attack), or hoping its secret or token lands in a label.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client as HttpClient
from django.utils import timezone
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import client_credentials_token
from tests.conftest import LOGIN, RegisteredClient, sign_in
from tests.factories import UserFactory
from tests.oauth_client import basic_auth, form_post
from tests.uaa import live
from tests.uaa.endpoints import token_request
from tests.uaa.live import processes
from tests.uaa.test_database_outage import outage
from tokens.models import LedgerRecord
from uaa.oauth import clientauth
from uaa.oauth.models import Client

OUTSIDE = "203.0.113.7"
__all__ = ["outage", "processes"]  # fixtures
ISSUED = (
    "uaa_tokens_issued_total",
    (("grant_type", "client_credentials"),),
)  # TEST-NET-3: never in the allowed networks


def scrape(**extra: Any) -> Any:
    return HttpClient().get("/metrics", **extra)


def samples_of(families: Iterable[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples_of(text_string_to_metric_families(body.decode()))


def value(name: str, **labels: str) -> float:
    response = scrape()
    assert response.status_code == 200, response.content[:300]
    return samples(response.content).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_client(client_factory: Callable[..., RegisteredClient]) -> Callable[[str], RegisteredClient]:
    def make(scopes: str) -> RegisteredClient:
        return client_factory(
            name="Scraper",
            grant_type=Client.GRANT_CLIENT_CREDENTIALS,
            redirect_uris=[],
            post_logout_redirect_uris=[],
            allowed_scopes=scopes.split(),
        )

    return make


# --- who may read it ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_loopback_reads_the_metrics_in_prometheus_text_format():
    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE uaa_http_requests_total counter" in response.content


@pytest.mark.django_db
def test_an_address_outside_the_allowed_networks_gets_403_and_no_metric_text():
    response = scrape(REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    assert b"uaa_" not in response.content and b"# TYPE" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("forwarded", ["127.0.0.1", "10.0.0.1, 127.0.0.1", "::1"])
def test_x_forwarded_for_from_an_untrusted_peer_does_not_open_it(forwarded):
    response = scrape(REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code == 403
    assert b"uaa_" not in response.content


@pytest.mark.django_db
def test_a_client_behind_the_trusted_proxy_is_its_own_address_not_the_proxys(settings):
    """nginx on the same host connects from 127.0.0.1 for every client: the client is who it forwarded."""
    settings.UAA_TRUSTED_PROXIES = ["127.0.0.1"]
    response = scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"127.0.0.1, {OUTSIDE}")
    assert response.status_code == 403
    assert b"uaa_" not in response.content


@pytest.mark.django_db
def test_the_allowed_networks_are_a_setting(settings):
    settings.UAA_METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert scrape(REMOTE_ADDR=OUTSIDE).status_code == 200
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_a_token_without_the_metrics_scope_is_403(metrics_client):
    token = client_credentials_token(metrics_client("uaa.clients.read"), "uaa.clients.read")
    response = scrape(REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
    assert b"uaa_" not in response.content


@pytest.mark.django_db
def test_a_token_with_the_metrics_scope_reads_them_from_anywhere(metrics_client):
    token = client_credentials_token(metrics_client("uaa.metrics"), "uaa.metrics")
    response = scrape(REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert b"uaa_tokens_issued_total" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer " + "x" * 9000, "Basic dXNlcjpwYXNz"])
def test_a_bad_token_is_401_with_a_challenge(header):
    response = scrape(REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Bearer realm="uaa"')
    assert b"uaa_" not in response.content


@pytest.mark.django_db
def test_a_users_token_never_holds_the_metrics_scope(client_factory):
    """The scope is an admin scope (UAA_ADMIN_SCOPES): an authorization-code client registered for it
    still may not be granted it (uaa/oauth/scopes.py), so no user's token opens /metrics."""
    from uaa.oauth.scopes import scopes_for_client

    registered = client_factory(allowed_scopes=["uaa.metrics"])
    assert "uaa.metrics" not in scopes_for_client(registered.client)


# --- bounded labels -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_random_paths_and_client_ids_create_no_label_sets(confidential_client):
    """200 requests to random 404 paths and 50 token requests naming random client_ids: the number of
    series stays what it was after one of each, and no random value is in the text."""
    http = HttpClient()
    http.get(f"/{secrets.token_hex(8)}")
    form_post(http, "/oauth/token", {"grant_type": "client_credentials"}, auth=basic_auth("x", "y"))
    before = samples(scrape().content)
    sent = []
    for _ in range(200):
        path = f"/{secrets.token_hex(8)}/{secrets.token_hex(4)}"
        sent.append(path.strip("/").split("/")[0])
        assert http.get(path).status_code == 404
    for _ in range(50):
        client_id = secrets.token_hex(12)
        sent.append(client_id)
        answer = form_post(
            http,
            "/oauth/token",
            {"grant_type": "client_credentials"},
            auth=basic_auth(client_id, "guess"),
            REMOTE_ADDR=f"198.51.100.{len(sent) % 250}",
        )
        assert answer.status_code in (401, 429)
    body = scrape().content
    after = samples(body)
    new_series = set(after) - set(before)
    assert len(new_series) <= 2, sorted(new_series)  # at most a new status class or reason, never per value
    assert not [value for value in sent if value.encode() in body]
    assert after[("uaa_http_requests_total", (("endpoint", "unmatched"), ("status", "4xx")))] >= 201


@pytest.mark.django_db
def test_no_secret_token_or_client_id_is_in_any_label(service_client):
    response = token_request(service_client, {"grant_type": "client_credentials"})
    assert response.status_code == 200
    issued = response.json()["access_token"]
    token_request(
        RegisteredClient(client=service_client.client, secret="wrong-" + secrets.token_hex(8)),
        {"grant_type": "client_credentials"},
    )
    body = scrape().content
    for secret in (issued, issued.split(".")[1], service_client.secret or "", service_client.client_id):
        assert secret.encode() not in body


def test_every_fixed_client_authentication_reason_has_its_own_label():
    from uaa import metrics

    reasons = [
        clientauth.MALFORMED_BASIC,
        clientauth.UNKNOWN_CLIENT,
        clientauth.WRONG_SECRET,
        clientauth.NO_SECRET,
        clientauth.USE_ASSERTION,
        clientauth.OTHER_CLIENT,
    ]
    assert sorted(metrics.AUTH_REASONS) == sorted(reasons)
    assert len(set(metrics.AUTH_REASONS.values())) == len(reasons)


# --- what it counts -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_requests_are_counted_by_url_name_and_status_class(service_client):
    before = value("uaa_http_requests_total", endpoint="oauth:token", status="2xx")
    timed = value("uaa_http_request_duration_seconds_count", endpoint="oauth:token")
    assert token_request(service_client, {"grant_type": "client_credentials"}).status_code == 200
    assert value("uaa_http_requests_total", endpoint="oauth:token", status="2xx") == before + 1
    assert value("uaa_http_request_duration_seconds_count", endpoint="oauth:token") == timed + 1


@pytest.mark.django_db
def test_tokens_issued_are_counted_by_grant_type(service_client):
    before = value("uaa_tokens_issued_total", grant_type="client_credentials")
    for _ in range(3):
        assert token_request(service_client, {"grant_type": "client_credentials"}).status_code == 200
    assert value("uaa_tokens_issued_total", grant_type="client_credentials") == before + 3


@pytest.mark.django_db
def test_failed_client_authentications_are_counted_by_reason(service_client):
    labels = {"method": "client_secret_basic", "reason": "wrong_secret"}
    before = value("uaa_client_authentication_failures_total", **labels)
    unknown = value(
        "uaa_client_authentication_failures_total", method="client_secret_basic", reason="unknown_client"
    )
    wrong = RegisteredClient(client=service_client.client, secret="not-the-secret")
    assert token_request(wrong, {"grant_type": "client_credentials"}).status_code == 401
    nobody = basic_auth("nobody", "x")
    assert (
        form_post(HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, auth=nobody).status_code
        == 401
    )
    assert value("uaa_client_authentication_failures_total", **labels) == before + 1
    assert (
        value(
            "uaa_client_authentication_failures_total", method="client_secret_basic", reason="unknown_client"
        )
        == unknown + 1
    )


@pytest.mark.django_db
def test_sign_ins_password_failures_and_lockouts_are_counted(settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 3
    user = UserFactory()
    signed_in = value("uaa_sign_ins_total")
    failed = value("uaa_sign_in_failures_total", factor="password")
    locks = value("uaa_lockouts_total", scope="account")
    assert sign_in(HttpClient(), user).status_code == 302
    assert value("uaa_sign_ins_total") == signed_in + 1
    for _ in range(3):
        HttpClient().post(LOGIN, {"email": user.email, "password": "wrong-" + secrets.token_hex(4)})
    assert value("uaa_sign_in_failures_total", factor="password") >= failed + 3
    assert value("uaa_lockouts_total", scope="account") == locks + 1


@pytest.mark.django_db
def test_second_factor_failures_are_counted_by_factor():
    from tests.conftest import MFA
    from tests.factories import PASSWORD

    user = UserFactory(mfa=True)
    before = value("uaa_sign_in_failures_total", factor="otp")
    http = HttpClient()
    step = http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assert step.status_code == 302 and step["Location"] == MFA
    http.post(MFA, {"method": "totp", "code": "000000"})
    assert value("uaa_sign_in_failures_total", factor="otp") == before + 1


@pytest.mark.django_db
def test_signing_key_age_and_next_rotation_are_read_from_the_database_at_scrape_time(settings):
    from tokens.models import SigningKey
    from tokens.rotation import ensure_active_key

    now = timezone.now()
    key = ensure_active_key(algorithm="RS256", now=now)
    SigningKey.objects.filter(pk=key.pk).update(activated_at=now - timedelta(days=10))
    found = samples(scrape().content)
    age = found[("uaa_signing_key_age_seconds", (("algorithm", "RS256"),))]
    assert 10 * 86400 <= age < 10 * 86400 + 60
    due = found[("uaa_signing_key_next_rotation_seconds", (("algorithm", "RS256"),))]
    expected = settings.UAA_KEY_ROTATION_PERIOD - 10 * 86400
    assert expected - 60 < due <= expected


@pytest.mark.django_db(transaction=True)
def test_unsealed_records_and_the_tree_head_age_are_read_at_scrape_time(service_client, settings):
    from tokens.ledger.sealing import seal_tree_head
    from tokens.rotation import ensure_active_key

    ensure_active_key(algorithm=settings.UAA_ACCESS_TOKEN_ALG, now=timezone.now())  # the tokens' key
    seal_tree_head(now=timezone.now(), force=True)
    for _ in range(2):
        assert token_request(service_client, {"grant_type": "client_credentials"}).status_code == 200
    unsealed = LedgerRecord.objects.unsealed().count()
    assert unsealed >= 2
    found = samples(scrape().content)
    assert found[("uaa_audit_unsealed_records", ())] == unsealed
    seal_tree_head(now=timezone.now(), force=True)
    found = samples(scrape().content)
    assert found[("uaa_audit_unsealed_records", ())] == 0
    assert 0 <= found[("uaa_audit_tree_head_age_seconds", ())] < 60


@pytest.mark.django_db
def test_celery_task_outcomes_are_counted_by_task_name():
    """UAA's own tasks by name; any other task as ``other`` (tests/uaa/test_celery_task_metrics.py runs a real
    worker)."""
    from celery import shared_task

    from uaa.oauth.tasks import clear_expired_tokens_task

    @shared_task(name="tests.metrics_probe")
    def probe(outcome: str) -> str:
        if outcome == "fail":
            raise ValueError("boom")
        return outcome

    def count(task: str, outcome: str) -> float:
        return value("uaa_celery_tasks_total", task=task, outcome=outcome)

    cleanup = ("tokens.clear_expired_tokens", "succeeded")
    before = {key: count(*key) for key in (cleanup, ("other", "failed"))}
    clear_expired_tokens_task.apply()
    probe.apply(args=["fail"])
    assert count(*cleanup) == before[cleanup] + 1
    assert count("other", "failed") == before[("other", "failed")] + 1
    assert count("tests.metrics_probe", "failed") == 0


# --- several gunicorn workers ---------------------------------------------------------------------------
def _stale_counter_file(directory: Path) -> None:
    """What an earlier run left: a worker's file holding 1000 token issuances."""
    script = (
        "from prometheus_client import Counter;"
        "Counter('uaa_tokens_issued_total', 'x', ['grant_type']).labels('client_credentials').inc(1000)"
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": ""}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    assert list(directory.glob("counter_*.db"))


def test_two_gunicorn_workers_report_the_sum_of_their_counts(tmp_path, processes):
    """The compose web command with two workers: 40 token requests, spread over both workers by the
    kernel; /metrics (answered by one worker) counts all 40, and nothing of an earlier run's files."""
    env = live.base_env(tmp_path)
    directory = tmp_path / "metrics"
    directory.mkdir()
    _stale_counter_file(directory)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    port = live.free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "web.log"
    live.manage(env, "migrate", "--noinput")
    client = live.create_service_client(env)
    processes.append(live.start(live.web_script(port, workers=2), env, log))
    live.wait_for(live.healthy(base), "gunicorn", log)
    auth = basic_auth(client["client_id"], client["client_secret"])

    def issue(_: int) -> int:
        data = {"grant_type": "client_credentials"}
        return live.call(f"{base}/oauth/token", data=data, Authorization=auth).status

    with ThreadPoolExecutor(max_workers=6) as pool:  # sync workers: concurrent requests reach both
        assert list(pool.map(issue, range(40))) == [200] * 40
    per_worker = [
        samples_of(MultiProcessCollector.merge([str(path)])).get(ISSUED, 0.0)
        for path in sorted(directory.glob("counter_*.db"))
    ]
    assert len(per_worker) == 2 and all(per_worker), per_worker  # each worker issued some
    scraped = live.call(f"{base}/metrics")
    assert scraped.status == 200
    assert samples(scraped.body)[ISSUED] == 40 == sum(per_worker)
    outside = live.call(f"{base}/metrics", **{"X-Forwarded-For": "127.0.0.1"})
    assert outside.status == 200  # loopback itself: the header from an untrusted peer changes nothing


def test_a_database_outage_leaves_the_counters_and_drops_the_gauges(outage):
    """The gauges read the database; when it is unreachable the scrape still answers (no 500)."""
    from tokens.rotation import ensure_active_key

    ensure_active_key(algorithm="RS256", now=timezone.now())
    assert b"uaa_signing_key_age_seconds{" in scrape().content
    outage()
    response = scrape()
    assert response.status_code == 200
    assert b"uaa_http_requests_total" in response.content
    assert b"uaa_signing_key_age_seconds{" not in response.content
    assert b"uaa_audit_unsealed_records " not in response.content


WORKER_SCRIPT = """
import django
django.setup()
from celery import shared_task

@shared_task(name="tokens.seal_audit_ledger")
def probe(fail):
    if fail:
        raise ValueError("boom")

probe.apply(args=[False]); probe.apply(args=[False]); probe.apply(args=[True])
"""
SCRAPE_SCRIPT = """
import sys, django
django.setup()
from uaa import metrics
sys.stdout.write(metrics.exposition().decode())
"""


def test_the_celery_workers_directory_is_merged_into_the_scrape(tmp_path):
    """A Celery worker is another process with its own PROMETHEUS_MULTIPROC_DIR; web's scrape adds its task
    outcomes through UAA_METRICS_EXTRA_DIRS (real processes, real signals)."""
    worker_dir, web_dir = tmp_path / "worker", tmp_path / "web"
    worker_dir.mkdir()
    web_dir.mkdir()
    env = live.base_env(tmp_path)
    env.update(DJANGO_SETTINGS_MODULE="uaa.settings", DEBUG="1")

    def run(script: str, **extra: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=live.ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    run(WORKER_SCRIPT, PROMETHEUS_MULTIPROC_DIR=str(worker_dir))
    alone = samples(run(SCRAPE_SCRIPT, PROMETHEUS_MULTIPROC_DIR=str(web_dir)).encode())
    merged = samples(
        run(
            SCRAPE_SCRIPT, PROMETHEUS_MULTIPROC_DIR=str(web_dir), UAA_METRICS_EXTRA_DIRS=str(worker_dir)
        ).encode()
    )
    success = ("uaa_celery_tasks_total", (("outcome", "succeeded"), ("task", "tokens.seal_audit_ledger")))
    failure = ("uaa_celery_tasks_total", (("outcome", "failed"), ("task", "tokens.seal_audit_ledger")))
    assert success not in alone
    assert merged[success] == 2 and merged[failure] == 1
