"""The rotation drill: tokens keep verifying across forced rotations for a verifier that caches the JWKS
exactly as long as Cache-Control allows (and never refetches early, not even on an unknown kid)."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import jwt
import pytest
import requests
from django.db import connection
from django.utils import timezone

from tokens.models import SigningKey
from tokens.rotation import request_rotation, revoke_signing_key, rotate_signing_keys

DRILL_SECONDS = 12


class CachingVerifier:
    """A resource server that honours the JWKS response's max-age to the letter."""

    def __init__(self, jwks_uri: str) -> None:
        self.jwks_uri = jwks_uri
        self.keys: dict[str, Any] = {}
        self.expires = 0.0
        self.fetches = 0

    def _keyset(self) -> dict[str, Any]:
        if time.monotonic() >= self.expires:
            response = requests.get(self.jwks_uri, timeout=5)
            match = re.search(r"max-age=(\d+)", response.headers["Cache-Control"])
            assert match is not None
            max_age = int(match.group(1))
            self.expires = time.monotonic() + max_age
            self.keys = {jwk["kid"]: jwt.PyJWK(jwk) for jwk in response.json()["keys"]}
            self.fetches += 1
        return self.keys

    def verify(self, token: str, *, audience: str, issuer: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        key = self._keyset()[header["kid"]]  # KeyError = the guarantee is broken
        return jwt.decode(token, key=key, algorithms=[header["alg"]], audience=audience, issuer=issuer)


@pytest.fixture
def short_lifecycle(settings, live_server):
    settings.UAA_ISSUER = live_server.url
    settings.UAA_JWKS_MAX_AGE = 1
    settings.UAA_KEY_PREPUBLISH_SECONDS = 1
    settings.UAA_KEY_ROTATION_PERIOD = 3
    settings.UAA_ACCESS_TOKEN_LIFETIME = 2
    settings.UAA_ID_TOKEN_LIFETIME = 2
    settings.UAA_KEY_RETENTION_MARGIN = 0
    return live_server


@pytest.mark.django_db(transaction=True)
def test_rotation_drill_zero_verification_failures_then_revocation_rejects_tokens(
    short_lifecycle, client_factory
):
    from uaa.oauth.models import Client

    base = short_lifecycle.url
    service = client_factory(
        name="drill",
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        redirect_uris=[],
        post_logout_redirect_uris=[],
        default_audience=["https://api.example.com"],
    )
    rotate_signing_keys(now=timezone.now())
    verifier = CachingVerifier(f"{base}/.well-known/jwks.json")
    stop = threading.Event()
    rotator_errors: list[BaseException] = []

    def beat() -> None:  # plays the beat schedule, and an operator who keeps pressing "rotate now"
        try:
            while not stop.is_set():
                rotate_signing_keys(now=timezone.now())
                request_rotation(algorithm="RS256", now=timezone.now())
                time.sleep(0.2)
        except BaseException as exc:  # reported below
            rotator_errors.append(exc)
        finally:
            connection.close()

    rotator = threading.Thread(target=beat)
    rotator.start()
    issued: list[str] = []
    failures: list[str] = []
    deadline = time.monotonic() + DRILL_SECONDS
    try:
        while time.monotonic() < deadline:
            response = requests.post(
                f"{base}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(service.client_id, service.secret),
                timeout=5,
            )
            assert response.status_code == 200, response.text
            token = response.json()["access_token"]
            issued.append(token)
            try:
                verifier.verify(token, audience="https://api.example.com", issuer=base)
            except Exception as exc:  # any failure is counted, not raised, to report them all
                failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)
    finally:
        stop.set()
        rotator.join()
    assert rotator_errors == []
    kids = {jwt.get_unverified_header(token)["kid"] for token in issued}
    assert len(kids) >= 3, "the drill must span several rotations"
    assert failures == []
    assert SigningKey.objects.filter(state__in=["expired"]).exists(), (
        "retired keys must age out during the drill"
    )

    # Emergency revocation: a token that is active right now stops being active at once.
    auth = (service.client_id, service.secret)
    fresh = requests.post(
        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=auth, timeout=5
    ).json()["access_token"]
    introspect = {"token": fresh}
    assert (
        requests.post(f"{base}/oauth/introspect", data=introspect, auth=auth, timeout=5).json()["active"]
        is True
    )
    kid = jwt.get_unverified_header(fresh)["kid"]
    revoke_signing_key(kid=kid, now=timezone.now(), reason="drill")
    assert requests.post(f"{base}/oauth/introspect", data=introspect, auth=auth, timeout=5).json() == {
        "active": False
    }
    published = {
        key["kid"] for key in requests.get(f"{base}/.well-known/jwks.json", timeout=5).json()["keys"]
    }
    assert kid not in published
