"""Signing-key lifecycle: next → active → retired → expired, with controlled time (no sleeps)."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client as HttpClient
from django.utils import timezone
from freezegun import freeze_time

from tokens.envelope import KeyDecryptionError, configured_keks, new_kek, unwrap_private_key
from tokens.keys import create_signing_key
from tokens.models import SigningKey
from tokens.rotation import (
    KeyPolicy,
    ensure_active_key,
    request_rotation,
    revoke_signing_key,
    rotate_signing_keys,
)
from tokens.signing import active_signing_key

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def policy(settings) -> KeyPolicy:
    settings.UAA_KEY_ROTATION_PERIOD = 3600
    settings.UAA_JWKS_MAX_AGE = 300
    settings.UAA_KEY_PREPUBLISH_SECONDS = 600
    settings.UAA_ACCESS_TOKEN_LIFETIME = 900
    settings.UAA_ID_TOKEN_LIFETIME = 600
    settings.UAA_KEY_RETENTION_MARGIN = 60
    return KeyPolicy.from_settings()


@pytest.fixture
def only_rs256_due(db) -> None:
    """ES256 and EdDSA keys and standbys, not due during these tests: reports speak of RS256 alone."""
    later = T0 + timedelta(days=10)
    for algorithm in ("ES256", "EdDSA"):
        ensure_active_key(algorithm=algorithm, now=later)
        standby = create_signing_key(algorithm=algorithm, now=later)
        SigningKey.objects.filter(pk=standby.pk).update(activate_after=later)


def states(algorithm: str = "RS256") -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key in SigningKey.objects.for_algorithm(algorithm).order_by("created_at"):
        result.setdefault(key.state, []).append(key.kid)
    return result


def published_kids(http: HttpClient) -> set[str]:
    return {key["kid"] for key in http.get("/.well-known/jwks.json").json()["keys"]}


def test_a_database_without_keys_gets_one_active_key_per_algorithm(db, policy):
    report = rotate_signing_keys(now=T0)
    activated = {SigningKey.objects.get(kid=kid).algorithm for kid in report.activated}
    assert activated == {"RS256", "ES256", "EdDSA"}
    assert SigningKey.objects.active().count() == 3


def test_the_next_key_is_published_as_soon_as_a_key_signs_and_waits_as_the_standby(
    db, policy, only_rs256_due
):
    """Issue 9, item 9: a standby is always published, so a revocation never needs an unpublished key."""
    active = ensure_active_key(algorithm="RS256", now=T0)  # a key made on demand, with no standby yet
    report = rotate_signing_keys(now=T0, policy=policy)
    assert len(report.published) == 1 and not report.activated
    assert states() == {"active": [active.kid], "next": report.published}
    assert not rotate_signing_keys(now=T0 + policy.period - timedelta(seconds=1), policy=policy).changed


def test_the_next_key_signs_only_after_it_was_published_for_the_jwks_cache_lifetime(
    db, policy, only_rs256_due
):
    active = ensure_active_key(algorithm="RS256", now=T0)
    published_at = T0 + policy.period - policy.prepublish  # the latest a standby can be published in time
    incoming = rotate_signing_keys(now=published_at, policy=policy).published[0]
    # the key is due at T0 + period, and by then it has been published for exactly the prepublish window
    assert not rotate_signing_keys(now=T0 + policy.period - timedelta(seconds=1), policy=policy).activated
    report = rotate_signing_keys(now=T0 + policy.period, policy=policy)
    assert report.activated == [incoming]
    assert report.retired == [active.kid]
    assert len(report.published) == 1  # the next standby, at once
    new = SigningKey.objects.get(kid=incoming)
    assert (new.activated_at - new.created_at).total_seconds() >= policy.prepublish.total_seconds()
    assert policy.prepublish.total_seconds() >= 300  # at least the JWKS max-age


def test_a_retired_key_stays_published_until_its_tokens_expired_plus_one_cache_lifetime(
    db, policy, only_rs256_due, client
):
    old = ensure_active_key(algorithm="RS256", now=T0)
    rotate_signing_keys(now=T0 + policy.period - policy.prepublish, policy=policy)
    rotated_at = T0 + policy.period
    rotate_signing_keys(now=rotated_at, policy=policy)
    assert old.kid in published_kids(client)
    # longest token (900 s) + JWKS max-age (300 s) + margin (60 s)
    assert policy.retention == timedelta(seconds=1260)
    assert not rotate_signing_keys(
        now=rotated_at + policy.retention - timedelta(seconds=1), policy=policy
    ).expired
    report = rotate_signing_keys(now=rotated_at + policy.retention, policy=policy)
    assert report.expired == [old.kid]
    assert old.kid not in published_kids(client)


def test_rotation_is_idempotent(db, policy, only_rs256_due):
    ensure_active_key(algorithm="RS256", now=T0)
    moment = T0 + timedelta(minutes=5)
    first = rotate_signing_keys(now=moment, policy=policy)
    second = rotate_signing_keys(now=moment, policy=policy)
    third = rotate_signing_keys(now=moment + timedelta(seconds=5), policy=policy)
    assert len(first.published) == 1
    assert not second.changed
    assert not third.changed
    assert SigningKey.objects.for_algorithm("RS256").count() == 2


def test_rotate_now_publishes_at_once_and_switches_after_the_prepublication_window(
    db, policy, only_rs256_due
):
    active = ensure_active_key(algorithm="RS256", now=T0)
    report = request_rotation(algorithm="RS256", now=T0 + timedelta(minutes=1))
    assert len(report.published) == 1 and not report.activated
    assert not rotate_signing_keys(now=T0 + timedelta(minutes=5), policy=policy).activated
    switched = rotate_signing_keys(now=T0 + timedelta(minutes=1) + policy.prepublish, policy=policy)
    assert switched.activated == report.published
    assert switched.retired == [active.kid]


def test_es256_and_eddsa_keys_have_lifecycles_of_their_own(db, policy):
    rs = ensure_active_key(algorithm="RS256", now=T0)
    es = ensure_active_key(algorithm="ES256", now=T0 + timedelta(minutes=30))
    ed = ensure_active_key(algorithm="EdDSA", now=T0 + timedelta(minutes=40))
    rotate_signing_keys(now=T0 + policy.period - policy.prepublish, policy=policy)
    report = rotate_signing_keys(now=T0 + policy.period, policy=policy)
    assert report.retired == [rs.kid]
    assert SigningKey.objects.get(kid=es.kid).state == "active"
    assert SigningKey.objects.get(kid=ed.kid).state == "active"
    assert {k.public_jwk["kty"] for k in SigningKey.objects.publishable()} >= {"RSA", "EC", "OKP"}


def test_emergency_revocation_unpublishes_at_once_and_a_fresh_key_signs(db, policy, client):
    old = ensure_active_key(algorithm="RS256", now=T0)
    assert active_signing_key("RS256").kid == old.kid
    revoke_signing_key(kid=old.kid, now=T0 + timedelta(minutes=1), reason="test")
    assert SigningKey.objects.get(kid=old.kid).state == "revoked"
    assert old.kid not in published_kids(client)
    assert active_signing_key("RS256").kid != old.kid
    assert SigningKey.objects.active().for_algorithm("RS256").count() == 1


def test_revocation_promotes_the_already_published_next_key(db, policy):
    old = ensure_active_key(algorithm="RS256", now=T0)
    incoming = request_rotation(algorithm="RS256", now=T0).published[0]
    revoke_signing_key(kid=old.kid, now=T0 + timedelta(seconds=1))
    assert SigningKey.objects.get(kid=incoming).state == "active"


def test_tokens_signed_by_a_revoked_key_fail_introspection_and_userinfo(
    db, code_flow, confidential_client, settings
):
    """The issue's promise: after an emergency revocation, every token the key signed is rejected."""
    tokens = code_flow(confidential_client)["tokens"]
    kid = SigningKey.objects.active().for_algorithm(settings.UAA_ACCESS_TOKEN_ALG).get().kid
    http = HttpClient()
    auth = {"HTTP_AUTHORIZATION": confidential_client.basic}  # RFC 7662 §4: its own token
    from tests.oauth_client import form_post

    assert (
        form_post(http, "/oauth/introspect", {"token": tokens["access_token"]}, **auth).json()["active"]
        is True
    )
    call_command(
        "revoke_signing_key", "--reason", "drill", "--", kid, stdout=io.StringIO()
    )  # kid may start with -
    introspected = form_post(http, "/oauth/introspect", {"token": tokens["access_token"]}, **auth)
    assert introspected.json() == {"active": False}
    userinfo = http.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == HTTPStatus.UNAUTHORIZED


def test_a_wrong_kek_fails_loudly_and_never_creates_an_unpublished_key(db, settings):
    key = ensure_active_key(algorithm="RS256", now=T0)
    settings.UAA_KEK = new_kek()
    with pytest.raises(KeyDecryptionError, match="UAA_KEK"):
        active_signing_key("RS256")
    with pytest.raises(Exception, match="UAA_KEK"):
        call_command("bootstrap", "--no-admin")
    assert list(SigningKey.objects.values_list("kid", flat=True)) == [key.kid]


def test_rewrap_moves_every_key_to_the_new_kek_while_the_old_one_is_still_accepted(db, settings):
    old_kek = settings.UAA_KEK
    keys = [ensure_active_key(algorithm=alg, now=T0) for alg in ("RS256", "ES256", "EdDSA")]
    secrets_before = [unwrap_private_key(k) for k in keys]
    settings.UAA_KEK = f"{new_kek()},{old_kek}"
    current = configured_keks()[0].kek_id
    call_command("rewrap_signing_keys", stdout=io.StringIO())
    assert set(SigningKey.objects.values_list("kek_id", flat=True)) == {current}
    settings.UAA_KEK = settings.UAA_KEK.split(",")[0]  # the old KEK is gone now
    assert [unwrap_private_key(SigningKey.objects.get(pk=k.pk)) for k in keys] == secrets_before


@pytest.mark.django_db(transaction=True)
def test_concurrent_rotations_yield_exactly_one_new_key(policy):
    """Several workers rotating at the same moment, each on its own database connection: one new key."""
    ensure_active_key(algorithm="RS256", now=T0)
    moment = T0 + policy.period - policy.prepublish
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            rotate_signing_keys(now=moment, policy=policy)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert SigningKey.objects.for_algorithm("RS256").filter(state="next").count() == 1
    assert SigningKey.objects.for_algorithm("RS256").count() == 2
    assert SigningKey.objects.active().count() == 3  # ES256 and EdDSA healed exactly once too


def test_the_jwks_cache_lifetime_matches_the_prepublication_window(client, db, settings):
    settings.UAA_JWKS_MAX_AGE = 120
    response = client.get("/.well-known/jwks.json")
    assert response["Cache-Control"] == "public, max-age=120"
    assert settings.UAA_KEY_PREPUBLISH_SECONDS >= 120


def test_freezegun_time_drives_the_scheduled_task(db, policy, only_rs256_due):
    from tokens.tasks import rotate_signing_keys_task

    with freeze_time(T0):
        first = rotate_signing_keys_task()
        assert len(first["activated"]) == 1 and len(first["published"]) == 1  # RS256 and its standby
    with freeze_time(T0 + policy.period - policy.prepublish):
        assert not any(rotate_signing_keys_task().values())
    with freeze_time(T0 + policy.period):
        report = rotate_signing_keys_task()
        assert len(report["activated"]) == 1 and len(report["published"]) == 1


def _database_url_of_the_test_database() -> str:
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{settings_dict['USER']}@{host}:{port}/{settings_dict['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_concurrent_rotation_processes_yield_exactly_one_new_key(settings):
    """Four `manage.py rotate_signing_keys` processes started together, as several hosts would."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    overdue = timezone.now() - timedelta(seconds=settings.UAA_KEY_ROTATION_PERIOD)
    active = ensure_active_key(algorithm="RS256", now=overdue)
    SigningKey.objects.filter(pk=active.pk).update(activated_at=overdue)
    env = {**os.environ, "DATABASE_URL": _database_url_of_the_test_database(), "UAA_KEK": settings.UAA_KEK}
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "manage.py", "rotate_signing_keys"]
    processes = [
        subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], outputs
    published = [line for out, _ in outputs for line in out.splitlines() if line.startswith("published:")]
    assert len(published) == 3  # one standby per algorithm, by one of the processes
    for algorithm in SigningKey.Algorithm.values:
        assert SigningKey.objects.for_algorithm(algorithm).filter(state="next").count() == 1
    assert SigningKey.objects.for_algorithm("RS256").count() == 2
    assert SigningKey.objects.active().count() == 3
