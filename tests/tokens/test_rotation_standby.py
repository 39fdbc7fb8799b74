"""The standby key: after bootstrap and after every rotation or revocation, each algorithm has a ``next``
key published, so an emergency revocation promotes a key cached JWKS copies already hold (issue 9,
item 9). Frozen time (freezegun) drives the beat; the JWKS stays bounded."""

from __future__ import annotations

import io
import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client as HttpClient
from django.utils import timezone
from freezegun import freeze_time

from tokens.models import SigningKey
from tokens.rotation import (
    KeyPolicy,
    active_key_cache_gap,
    ensure_active_key,
    request_rotation,
    revoke_published_keys,
    revoke_signing_key,
    rotate_signing_keys,
)
from tokens.tasks import rotate_signing_keys_task

T0 = datetime(2030, 1, 1, tzinfo=UTC)
BEAT = timedelta(minutes=5)  # the default interval of "rotate signing keys"


@pytest.fixture
def policy(settings) -> KeyPolicy:
    settings.UAA_KEY_ROTATION_PERIOD = 3600
    settings.UAA_JWKS_MAX_AGE = 300
    settings.UAA_KEY_PREPUBLISH_SECONDS = 600
    settings.UAA_ACCESS_TOKEN_LIFETIME = 900
    settings.UAA_ID_TOKEN_LIFETIME = 600
    settings.UAA_KEY_RETENTION_MARGIN = 60
    return KeyPolicy.from_settings()


def assert_one_active_and_one_standby_each() -> None:
    for algorithm in SigningKey.Algorithm.values:
        keys = SigningKey.objects.for_algorithm(algorithm)
        assert keys.active().count() == 1, algorithm
        assert keys.next_in_line().count() == 1, algorithm


def assert_jwks_bounded(http: HttpClient, policy: KeyPolicy) -> None:
    """RFC 7517 §5: the JWK Set holds per algorithm the active key, the standby and the retired keys whose
    tokens may still be about, nothing else; retired keys are bounded by retention / pre-publication."""
    now = timezone.now()
    jwks = http.get("/.well-known/jwks.json").json()["keys"]
    for algorithm in SigningKey.Algorithm.values:
        keys = SigningKey.objects.for_algorithm(algorithm)
        recent = keys.filter(state="retired", retired_at__gt=now - policy.retention)
        expected = {
            *keys.active().values_list("kid", flat=True),
            *keys.next_in_line().values_list("kid", flat=True),
            *recent.values_list("kid", flat=True),
        }
        assert {key["kid"] for key in jwks if key["alg"] == algorithm} == expected, algorithm
        assert len(expected) <= 2 + math.ceil(policy.retention / policy.prepublish), algorithm


def test_bootstrap_leaves_an_active_key_and_a_pre_published_standby_per_algorithm(db, policy):
    with freeze_time(T0):
        call_command("bootstrap", "--no-admin", stdout=io.StringIO())
        assert_one_active_and_one_standby_each()
        kids = set(SigningKey.objects.values_list("kid", flat=True))
        out = io.StringIO()
        call_command("bootstrap", "--no-admin", stdout=out)  # idempotent
    assert set(SigningKey.objects.values_list("kid", flat=True)) == kids
    standby = SigningKey.objects.next_in_line().for_algorithm("RS256").get()
    assert f"standby {standby.kid}" in out.getvalue()


def test_a_standby_waits_after_every_lifecycle_step_and_the_jwks_stays_bounded(db, policy):
    """Three rotation periods of the beat, with "rotate now", revocations of the active key and of a
    standby, and a revocation of every published key in between: after each step, one active key and one
    standby per algorithm, a second run at the same instant changes nothing, the JWKS stays bounded."""
    http = HttpClient()
    gaps: dict[int, int] = {}
    revoked = 0
    with freeze_time(T0) as clock:
        call_command("bootstrap", "--no-admin", stdout=io.StringIO())
        for step in range(1, 37):
            clock.tick(BEAT)
            now = timezone.now()
            if step in {3, 4, 8}:  # the active RS256 key leaks
                kid = SigningKey.objects.active().for_algorithm("RS256").get().kid
                revoke_signing_key(kid=kid, now=now, reason="leak")
                revoked += 1
                gaps[step] = active_key_cache_gap(algorithm="RS256", now=now).seconds
            if step == 5:
                request_rotation(algorithm="RS256", now=now)
            if step == 7:  # a leaked standby
                standby = SigningKey.objects.next_in_line().for_algorithm("ES256").get()
                revoke_signing_key(kid=standby.kid, now=now, reason="leak")
                revoked += 1
            if step == 15:
                revoked += len(revoke_published_keys(now=now, reason="KEK compromise"))
                gaps[step] = active_key_cache_gap(algorithm="RS256", now=now).seconds
            rotate_signing_keys_task()
            assert not rotate_signing_keys(now=now).changed, step  # idempotent
            assert_one_active_and_one_standby_each()
            assert_jwks_bounded(http, policy)
    # step 3: the bootstrap's standby (900 s old); step 4: step 3's standby, exactly max-age (300 s) old;
    # step 8: the standby of the rotation "rotate now" asked for at step 5 and the beat did at step 6
    # (a standby must be published for the pre-publication window, 600 s), 600 s old; step 15: every
    # standby was revoked too, the new active keys are new to every cache for the whole max-age
    assert gaps == {3: 0, 4: 0, 8: 0, 15: 300}
    assert revoked >= 4 + 2 * 3
    assert SigningKey.objects.filter(state="revoked").count() == revoked
    assert SigningKey.objects.filter(state="expired").exists()


def test_rotate_now_promotes_a_standby_published_long_enough_at_once(db, policy):
    old = ensure_active_key(algorithm="RS256", now=T0)
    standby = rotate_signing_keys(now=T0, policy=policy).published
    report = request_rotation(algorithm="RS256", now=T0 + policy.prepublish)
    assert report.activated == [k for k in standby if SigningKey.objects.get(kid=k).algorithm == "RS256"]
    assert report.retired == [old.kid]
    assert len(report.published) == 1  # the next standby
    assert_one_active_and_one_standby_each()


def test_a_standby_younger_than_the_prepublication_window_never_signs_by_rotation(db, policy):
    """After a revocation the new standby is brand new: "rotate now" waits for its pre-publication."""
    rotate_signing_keys(now=T0, policy=policy)
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    revoke_signing_key(kid=active.kid, now=T0 + policy.prepublish)
    young = SigningKey.objects.next_in_line().for_algorithm("RS256").get()
    moment = T0 + policy.prepublish + timedelta(seconds=1)
    assert not request_rotation(algorithm="RS256", now=moment).activated
    assert not rotate_signing_keys(now=young.created_at + policy.prepublish - timedelta(seconds=1)).activated
    assert rotate_signing_keys(now=young.created_at + policy.prepublish).activated == [young.kid]


def test_the_cache_gap_is_the_rest_of_max_age_since_the_replacement_was_published(db, policy):
    rotate_signing_keys(now=T0, policy=policy)
    standby = SigningKey.objects.next_in_line().for_algorithm("RS256").get()
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    revoke_signing_key(kid=active.kid, now=T0 + timedelta(seconds=120))
    gap = active_key_cache_gap(algorithm="RS256", now=T0 + timedelta(seconds=120))
    assert (gap.kid, gap.published_seconds, gap.seconds, gap.max_age) == (standby.kid, 120, 180, 300)
    assert "for up to 180 s (UAA_JWKS_MAX_AGE=300)" in gap.message


@pytest.mark.django_db(transaction=True)
def test_concurrent_revocations_and_rotations_leave_one_active_key_and_one_standby(policy):
    """Two admins revoking the leaked key while two beat workers rotate, each on its own connection."""
    rotate_signing_keys(now=T0, policy=policy)
    leaked = SigningKey.objects.active().for_algorithm("RS256").get()
    moment = T0 + policy.period
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run(work) -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    revoke = lambda: revoke_signing_key(kid=leaked.kid, now=moment, reason="leak")  # noqa: E731
    rotate = lambda: rotate_signing_keys(now=moment, policy=policy)  # noqa: E731
    threads = [threading.Thread(target=run, args=(work,)) for work in (revoke, revoke, rotate, rotate)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert SigningKey.objects.get(pk=leaked.pk).state == "revoked"
    assert SigningKey.objects.filter(state="revoked").count() == 1
    assert_one_active_and_one_standby_each()
