"""An emergency revocation promotes a standby key that every cached JWKS already holds (issue 9, item 9).

Attacker: whoever forces a revocation by leaking (or threatening to leak) the active signing key. The
revocation must not turn into a denial of service: relying parties that cache the JWKS for as long as
``Cache-Control: max-age`` allows, and never refetch early, must keep accepting the tokens issued after
it. So a revocation promotes the pre-published standby (the ``next`` key, always kept waiting) and never
a key generated on the spot; where that is impossible (the standby was revoked too, or is younger than
max-age) the command and the admin say how long the window is.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from http import HTTPStatus

import jwt
import pytest
import requests
from django.core.management import call_command
from django.test import Client as HttpClient
from django.utils import timezone
from freezegun import freeze_time

from tests.conftest import sign_in
from tests.factories import UserFactory
from tests.tokens.test_rotation_drill import CachingVerifier
from tokens.models import SigningKey
from tokens.rotation import revoke_signing_key, rotate_signing_keys

AUDIENCE = "https://api.example.com"
MAX_AGE = 300


@pytest.fixture
def lifecycle(settings):
    settings.UAA_KEY_ROTATION_PERIOD = 3600
    settings.UAA_JWKS_MAX_AGE = MAX_AGE
    settings.UAA_KEY_PREPUBLISH_SECONDS = 2 * MAX_AGE
    settings.UAA_ACCESS_TOKEN_LIFETIME = 600
    settings.UAA_ID_TOKEN_LIFETIME = 600
    settings.UAA_KEY_RETENTION_MARGIN = 60
    return settings


def _token(base: str, service) -> str:
    response = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(service.client_id, service.secret),
        timeout=10,
    )
    assert response.status_code == HTTPStatus.OK, response.text
    return response.json()["access_token"]


def _after_bootstrap(now) -> None:
    with freeze_time(now - timedelta(seconds=2 * MAX_AGE)):
        call_command("bootstrap", "--no-admin", stdout=io.StringIO())


def _after_a_scheduled_rotation(now) -> None:
    """The keys of the last period, then the rotation that replaced them: when no `next` key used to wait."""
    rotated_at = now - timedelta(seconds=2 * MAX_AGE)
    rotate_signing_keys(now=rotated_at - timedelta(seconds=3600))
    rotate_signing_keys(now=rotated_at - timedelta(seconds=2 * MAX_AGE))
    rotate_signing_keys(now=rotated_at)


def _after_an_earlier_revocation(now) -> None:
    """A first revocation long enough ago: the standby it published has been in every cache since."""
    _after_bootstrap(now - timedelta(seconds=2 * MAX_AGE))
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    revoke_signing_key(kid=active.kid, now=now - timedelta(seconds=2 * MAX_AGE), reason="first leak")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "history",
    [_after_bootstrap, _after_a_scheduled_rotation, _after_an_earlier_revocation],
    ids=["after-bootstrap", "after-a-rotation", "after-a-revocation"],
)
def test_a_relying_party_with_a_cached_jwks_accepts_tokens_signed_after_an_emergency_revocation(
    lifecycle, live_server, service_client, history
):
    """RFC 9111 §4.2: a cache reuses a fresh response (max-age) without asking again; OpenID Connect
    Core §10.1.1: the signer begins using a new key and signals it with ``kid``. The new key must then
    already be in every cached JWKS: a revocation promotes the standby, published at least max-age ago."""
    lifecycle.UAA_ISSUER = live_server.url
    history(timezone.now())
    verifier = CachingVerifier(f"{live_server.url}/.well-known/jwks.json")
    before = _token(live_server.url, service_client)
    verifier.verify(before, audience=AUDIENCE, issuer=live_server.url)  # caches the JWKS for max-age
    leaked = jwt.get_unverified_header(before)["kid"]

    revoke_signing_key(kid=leaked, now=timezone.now(), reason="private key leaked")

    after = _token(live_server.url, service_client)
    assert jwt.get_unverified_header(after)["kid"] != leaked
    claims = verifier.verify(after, audience=AUDIENCE, issuer=live_server.url)  # KeyError: the gap
    assert claims["aud"] == AUDIENCE
    assert verifier.fetches == 1  # from its cache, fetched before the revocation


# --- when it is impossible: the window, and its length, said out loud ----------------------------


def _revoke(*args: str, at=None) -> str:
    """``manage.py revoke_signing_key`` at the frozen moment ``at``: the seconds it prints are exact.
    A kid goes after ``--``: a base64url kid may start with ``-``, which argparse takes for an option."""
    out = io.StringIO()
    with freeze_time(at or timezone.now()):
        call_command("revoke_signing_key", *args, stdout=out)
    return out.getvalue()


def test_the_command_says_there_is_no_window_when_the_standby_was_pre_published(db, lifecycle):
    start = timezone.now() - timedelta(seconds=2 * MAX_AGE)
    rotate_signing_keys(now=start)
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    standby = SigningKey.objects.next_in_line().for_algorithm("RS256").get()
    out = _revoke("--reason", "drill", "--", active.kid)
    assert f"active RS256 key: {standby.kid} (pre-published" in out
    assert "may reject" not in out


def test_the_command_names_the_window_when_the_standby_is_younger_than_max_age(db, lifecycle):
    """Right after a rotation the new standby is young: caches fetched before it was published lack it."""
    now = timezone.now()
    rotate_signing_keys(now=now - timedelta(seconds=4000))
    rotate_signing_keys(now=now - timedelta(seconds=100))  # a rotation 100 s ago; its standby is 100 s old
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    standby = SigningKey.objects.next_in_line().for_algorithm("RS256").get()
    out = _revoke("--", active.kid, at=now)
    assert f"active RS256 key: {standby.kid} (published 100 s ago)" in out
    assert "for up to 200 s" in out and f"UAA_JWKS_MAX_AGE={MAX_AGE}" in out


def test_revoking_the_standby_then_the_active_key_names_the_full_max_age_window(db, lifecycle):
    """The standby itself revoked: what replaces the active key is new to every cache."""
    now = timezone.now()
    rotate_signing_keys(now=now - timedelta(seconds=2 * MAX_AGE))
    standby = SigningKey.objects.next_in_line().for_algorithm("RS256").get()
    _revoke("--", standby.kid, at=now)
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    out = _revoke("--", active.kid, at=now)
    assert "(published 0 s ago)" in out and f"for up to {MAX_AGE} s" in out
    assert SigningKey.objects.next_in_line().for_algorithm("RS256").count() == 1  # a standby again


def test_all_published_names_the_window_for_every_algorithm(db, lifecycle):
    """A KEK compromise: every published key goes, the standbys too; no cached JWKS holds the new keys."""
    rotate_signing_keys(now=timezone.now() - timedelta(seconds=2 * MAX_AGE))
    out = _revoke("--all-published", "--reason", "KEK compromise")
    for algorithm in SigningKey.Algorithm.values:
        assert f"active {algorithm} key:" in out
    assert out.count(f"for up to {MAX_AGE} s") == 3
    for algorithm in SigningKey.Algorithm.values:
        keys = SigningKey.objects.for_algorithm(algorithm)
        assert keys.active().count() == 1 and keys.next_in_line().count() == 1


def test_the_admin_says_how_long_relying_parties_may_reject_the_replacement(db, lifecycle):
    staff = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    assert sign_in(http, staff).status_code == HTTPStatus.FOUND
    rotate_signing_keys(now=timezone.now() - timedelta(seconds=2 * MAX_AGE))
    standby = SigningKey.objects.next_in_line().for_algorithm("RS256").get()
    revoke_signing_key(kid=standby.kid, now=timezone.now())  # its successor is brand new
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    response = http.post(
        "/admin/tokens/signingkey/", {"action": "revoke", "_selected_action": [active.pk]}, follow=True
    )
    page = response.content.decode()
    assert f"Revoked {active.kid}" in page  # the admin capitalizes messages
    window = re.search(rf"for up to (\d+) s \(UAA_JWKS_MAX_AGE={MAX_AGE}\)", page)
    assert window is not None and MAX_AGE - 5 <= int(window.group(1)) <= MAX_AGE  # less what the test took


def test_the_admin_says_the_replacement_was_pre_published(db, lifecycle):
    rotate_signing_keys(now=timezone.now() - timedelta(seconds=2 * MAX_AGE))
    active = SigningKey.objects.active().for_algorithm("RS256").get()
    staff = UserFactory(is_staff=True, is_superuser=True)
    http = HttpClient()
    assert sign_in(http, staff).status_code == HTTPStatus.FOUND
    page = http.post(
        "/admin/tokens/signingkey/", {"action": "revoke", "_selected_action": [active.pk]}, follow=True
    ).content.decode()
    assert "pre-published" in page and "may reject" not in page
