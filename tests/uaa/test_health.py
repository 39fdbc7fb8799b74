"""/healthz (alive) and /readyz (able to issue tokens): issue 13 item 3, uaa/health.py.

Attacker: anyone who can reach /readyz (it is unauthenticated, like every orchestrator's probe). They must
not learn internals from it (the database's host or path, exception text, SQL), nor make it do work per
request. Faults are real here: the database connection pointed at a file that cannot be opened (or a
closed port), a broker URL nobody listens on, a key row that does not open under our KEK.
"""

from __future__ import annotations

import os
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.uaa.test_database_outage import _closed_port, outage  # noqa: F401 (a fixture)
from tokens.ledger import append_record
from tokens.models import LedgerRecord, SigningKey
from tokens.rotation import ensure_active_key
from uaa import health


@pytest.fixture(autouse=True)
def fresh(settings):
    settings.UAA_READY_CACHE_SECONDS = 0
    health._last = None
    health._migrated = False
    yield
    health._last = None
    health._migrated = False


@pytest.fixture(autouse=True)
def broker(settings, tmp_path):
    """The embedded filesystem broker's folders, as `make run` makes them (a fresh clone has no var/)."""
    folders = {name: tmp_path / "broker" for name in ("data_folder_in", "data_folder_out")}
    (tmp_path / "broker").mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {name: str(path) for name, path in folders.items()}


@pytest.fixture
def keys(db, settings):
    now = timezone.now()
    return [ensure_active_key(algorithm=choice, now=now) for choice, _ in SigningKey.Algorithm.choices]


def readyz(client):
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    return response.status_code, response.json()


def test_healthz_is_alive_without_looking_at_anything(client):
    response = client.get("/healthz")
    assert response.status_code == HTTPStatus.OK
    assert response.content == b"ok"


def test_a_ready_node_says_so_and_names_every_check(client, keys):
    status, body = readyz(client)
    assert status == HTTPStatus.OK, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "migrations", "signing_keys", "broker", "sealing"}
    assert all(check["ok"] for check in body["checks"].values()), body
    assert body["checks"]["database"]["critical"] is True
    assert body["checks"]["broker"]["critical"] is False


def test_without_an_active_signing_key_the_node_is_not_ready(client, db):
    status, body = readyz(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert body["status"] == "not ready"
    assert body["checks"]["signing_keys"]["ok"] is False
    assert "bootstrap" in body["checks"]["signing_keys"]["detail"]


def test_an_active_key_that_does_not_open_under_our_kek_is_not_ready(client, keys, settings):
    """A node started with the wrong UAA_KEK (or a key row written by someone without it) cannot sign."""
    key = SigningKey.objects.get(state=SigningKey.State.ACTIVE, algorithm=settings.UAA_ACCESS_TOKEN_ALG)
    SigningKey.objects.filter(pk=key.pk).update(wrapped_data_key=bytes(len(key.wrapped_data_key)))
    status, body = readyz(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert body["checks"]["signing_keys"]["ok"] is False
    assert settings.UAA_ACCESS_TOKEN_ALG in body["checks"]["signing_keys"]["detail"]


def test_unapplied_migrations_make_the_node_not_ready(client, keys):
    last = MigrationRecorder.Migration.objects.filter(app="oauth").order_by("-id").first()
    assert last is not None
    MigrationRecorder.Migration.objects.filter(pk=last.pk).delete()
    status, body = readyz(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert body["checks"]["migrations"] == {
        "ok": False,
        "critical": True,
        "detail": "1 migrations not applied",
    }


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_is_not_ready_and_leaks_nothing(client, keys, outage):  # noqa: F811
    outage()
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == {"ok": False, "critical": True, "detail": "unreachable"}
    assert body["checks"]["signing_keys"]["detail"] == "database unreachable"
    text = response.content.decode()
    for secret in ("nonexistent", "sqlite3", "127.0.0.1", "Error", "Traceback", "SELECT"):
        assert secret not in text, text
    outage.stop()
    health._last = None
    assert client.get("/readyz").status_code == HTTPStatus.OK


def test_a_broker_outage_degrades_readiness_but_tokens_are_still_issued(
    client, keys, settings, service_client
):
    """The broker carries only the sealer's and the rotation's schedule: token issuance does not need it,
    so a broker outage must not take every node out of the load balancer."""
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    status, body = readyz(client)
    assert status == HTTPStatus.OK
    assert body["status"] == "degraded"
    assert body["checks"]["broker"] == {"ok": False, "critical": False, "detail": "unreachable"}
    assert str(settings.CELERY_BROKER_URL.rsplit(":", 1)[1]) not in response_text(client)
    token = client.post(
        "/oauth/token",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=service_client.basic,
    )
    assert token.status_code == HTTPStatus.OK, token.content


def response_text(client) -> str:
    health._last = None
    return client.get("/readyz").content.decode()


@pytest.mark.services
@pytest.mark.skipif(not os.environ.get("UAA_TEST_BROKER_URL"), reason="needs UAA_TEST_BROKER_URL (Redis)")
def test_a_reachable_real_broker_is_ready(client, keys, settings):
    settings.CELERY_BROKER_URL = os.environ["UAA_TEST_BROKER_URL"]
    status, body = readyz(client)
    assert body["checks"]["broker"]["ok"] is True, body
    assert status == HTTPStatus.OK


def test_a_missing_filesystem_broker_directory_is_degraded(client, keys, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(tmp_path / "missing"),
        "data_folder_out": str(tmp_path / "missing"),
    }
    status, body = readyz(client)
    assert status == HTTPStatus.OK
    assert body["checks"]["broker"]["ok"] is False


def test_a_stalled_sealer_degrades_readiness(client, keys, settings):
    settings.UAA_READY_SEAL_LAG = 60
    append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="x", at=timezone.now())
    assert readyz(client)[1]["checks"]["sealing"]["ok"] is True  # just written: the sealer has time
    append_record(
        event=LedgerRecord.Event.TOKEN_ISSUED, client_id="x", at=timezone.now() - timedelta(seconds=61)
    )
    status, body = readyz(client)
    assert status == HTTPStatus.OK
    assert body["status"] == "degraded"
    assert body["checks"]["sealing"]["ok"] is False
    assert "60 s" in body["checks"]["sealing"]["detail"]


def test_a_record_the_sealer_refuses_degrades_readiness(client, keys):
    """A row written outside UAA stops the sealer (docs/audit-ledger.md): an operator must hear of it."""
    LedgerRecord.objects.create(event="token.issued", client_id="x", actor="", body="{}", at=timezone.now())
    status, body = readyz(client)
    assert status == HTTPStatus.OK
    assert body["checks"]["sealing"]["ok"] is False
    assert "refused" in body["checks"]["sealing"]["detail"]


def test_the_answer_is_reused_within_the_cache_window(client, keys, settings):
    """Hammering /readyz runs the checks once per window per process, not once per request."""
    settings.UAA_READY_CACHE_SECONDS = 60
    assert readyz(client)[0] == HTTPStatus.OK
    with CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            assert readyz(client)[0] == HTTPStatus.OK
    assert len(queries) == 0, [q["sql"] for q in queries]


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_probes_take_get_and_head_only(client, keys, method):
    for path in ("/healthz", "/readyz"):
        assert getattr(client, method)(path).status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert client.head("/readyz").status_code == HTTPStatus.OK
