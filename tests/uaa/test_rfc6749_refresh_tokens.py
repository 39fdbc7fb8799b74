"""RFC 6749 §6 refreshing an access token, with rotation and reuse detection (RFC 9700 §4.14.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from freezegun import freeze_time

from tests.oauth_client import form_post
from tests.uaa.endpoints import introspect, refresh, revoke, unverified_claims, userinfo, verified


@pytest.fixture
def issued(code_flow, confidential_client):
    """The token response of a completed code flow for ``confidential_client``."""
    return code_flow(confidential_client)["tokens"]


def _assert_invalid_grant(response):
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["error"] == "invalid_grant"
    assert "access_token" not in response.json()


def test_refresh_issues_a_new_access_token_and_a_new_refresh_token(confidential_client, issued, user):
    """RFC 6749 §6 and §5.1; RFC 9700 §4.14.2: every refresh rotates the refresh token."""
    response = refresh(confidential_client, issued["refresh_token"])
    assert response.status_code == HTTPStatus.OK, response.content
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"] != issued["refresh_token"]
    assert body["access_token"] != issued["access_token"]
    assert set(body["scope"].split()) == set(issued["scope"].split())
    assert userinfo(body["access_token"]).json()["sub"] == str(user.pk)


def test_refreshed_access_token_keeps_the_subject_client_and_sign_in_time(confidential_client, issued):
    """RFC 9068 §2.2: auth_time is the time of the original authentication, not of the refresh."""
    before = verified(issued["access_token"])[1]
    with freeze_time(datetime.now(UTC) + timedelta(minutes=5)):
        body = refresh(confidential_client, issued["refresh_token"]).json()
    after = verified(body["access_token"])[1]
    assert after["sub"] == before["sub"]
    assert after["client_id"] == before["client_id"]
    assert after["aud"] == before["aud"]
    assert after["auth_time"] == before["auth_time"]
    assert after["amr"] == before["amr"]
    assert after["iat"] >= before["iat"] + 300
    assert after["jti"] != before["jti"]


def test_refresh_response_carries_no_id_token(confidential_client, issued):
    """OIDC Core §12.2: a refresh MAY return an ID token; UAA returns one only from the code exchange."""
    assert "id_token" not in refresh(confidential_client, issued["refresh_token"]).json()


def test_refresh_rotates_the_refresh_token_on_every_use(confidential_client, issued):
    """RFC 9700 §4.14.2: a new refresh token on every refresh, each one accepted exactly once."""
    seen = {issued["refresh_token"]}
    current = issued["refresh_token"]
    for _ in range(3):
        body = refresh(confidential_client, current).json()
        assert body["refresh_token"] not in seen
        seen.add(body["refresh_token"])
        current = body["refresh_token"]
    assert userinfo(body["access_token"]).status_code == HTTPStatus.OK


def test_the_superseded_access_token_stops_working_after_a_refresh(confidential_client, issued):
    """RFC 6749 §6: the server MAY revoke the old refresh token; UAA also revokes its access token."""
    refresh(confidential_client, issued["refresh_token"])
    assert userinfo(issued["access_token"]).status_code == HTTPStatus.UNAUTHORIZED


def test_replayed_refresh_token_is_invalid_grant_and_revokes_the_whole_family(confidential_client, issued):
    """RFC 9700 §4.14.2: on reuse of an invalidated refresh token, revoke the active refresh token too."""
    newest = refresh(confidential_client, issued["refresh_token"]).json()
    newest = refresh(confidential_client, newest["refresh_token"]).json()
    _assert_invalid_grant(refresh(confidential_client, issued["refresh_token"]))
    assert userinfo(newest["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    assert introspect(confidential_client, newest["access_token"]).json() == {"active": False}
    assert introspect(confidential_client, newest["refresh_token"]).json() == {"active": False}
    _assert_invalid_grant(refresh(confidential_client, newest["refresh_token"]))


def test_replay_of_the_immediately_preceding_refresh_token_also_revokes_the_family(
    confidential_client, issued
):
    """RFC 9700 §4.14.2: there is no grace period (REFRESH_TOKEN_GRACE_PERIOD_SECONDS = 0)."""
    newest = refresh(confidential_client, issued["refresh_token"]).json()
    _assert_invalid_grant(refresh(confidential_client, issued["refresh_token"]))
    assert userinfo(newest["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
    _assert_invalid_grant(refresh(confidential_client, newest["refresh_token"]))


def test_a_presentation_in_the_same_instant_as_the_rotation_is_reuse_too(confidential_client, issued):
    """RFC 9700 §4.14.2: the rotated token is invalid from the moment its successor exists — a second
    presentation at the very same instant (a racing thief, a second tab) is reuse, not a retry inside a
    grace period: invalid_grant, and the successor is revoked with the family (docs/security.md)."""
    with freeze_time(datetime.now(UTC)):
        newest = refresh(confidential_client, issued["refresh_token"]).json()
        _assert_invalid_grant(refresh(confidential_client, issued["refresh_token"]))
        assert userinfo(newest["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
        _assert_invalid_grant(refresh(confidential_client, newest["refresh_token"]))


def test_family_revocation_leaves_other_sessions_of_the_same_user_alone(code_flow, confidential_client):
    """RFC 9700 §4.14.2: reuse revokes that refresh token's family, not every grant of the user."""
    first = code_flow(confidential_client)["tokens"]
    other = code_flow(confidential_client)["tokens"]
    refresh(confidential_client, first["refresh_token"])
    _assert_invalid_grant(refresh(confidential_client, first["refresh_token"]))
    assert userinfo(other["access_token"]).status_code == HTTPStatus.OK
    assert refresh(confidential_client, other["refresh_token"]).status_code == HTTPStatus.OK


def test_public_client_refreshes_with_its_client_id_and_rotation(code_flow, public_client):
    """RFC 6749 §6 and RFC 9700 §4.14.2: public clients identify themselves and get rotated refresh tokens."""
    issued_tokens = code_flow(public_client)["tokens"]
    body = refresh(public_client, issued_tokens["refresh_token"]).json()
    assert body["refresh_token"] != issued_tokens["refresh_token"]
    _assert_invalid_grant(refresh(public_client, issued_tokens["refresh_token"]))
    assert userinfo(body["access_token"]).status_code == HTTPStatus.UNAUTHORIZED


def test_confidential_client_must_authenticate_to_refresh(confidential_client, issued):
    """RFC 6749 §6: the client MUST authenticate if it is confidential."""
    data = {
        "grant_type": "refresh_token",
        "refresh_token": issued["refresh_token"],
        "client_id": confidential_client.client_id,
    }
    response = form_post(HttpClient(), "/oauth/token", data)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "invalid_client"
    assert refresh(confidential_client, issued["refresh_token"]).status_code == HTTPStatus.OK


def test_refresh_token_of_another_client_is_invalid_grant(client_factory, confidential_client, issued):
    """RFC 6749 §6: the server MUST validate that the refresh token was issued to the authenticated client."""
    thief = client_factory(name="Thief")
    _assert_invalid_grant(refresh(thief, issued["refresh_token"]))


def test_refresh_may_narrow_the_scope(confidential_client, issued):
    """RFC 6749 §6: the requested scope MUST NOT include any scope not originally granted; less is fine."""
    body = refresh(confidential_client, issued["refresh_token"], scope="openid").json()
    assert body["scope"] == "openid"
    assert verified(body["access_token"])[1]["scope"] == "openid"
    assert set(userinfo(body["access_token"]).json()) == {"sub"}


def test_refresh_cannot_widen_the_scope(code_flow, confidential_client):
    """RFC 6749 §6 and §5.2: a scope beyond the original grant is invalid_scope."""
    issued_tokens = code_flow(confidential_client, scope="openid")["tokens"]
    response = refresh(confidential_client, issued_tokens["refresh_token"], scope="openid email")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("token", ["", "garbage", "a" * 4096])
def test_unknown_refresh_token_is_invalid_grant(confidential_client, db, token):
    """RFC 6749 §5.2: invalid_grant when the refresh token is invalid."""
    _assert_invalid_grant(refresh(confidential_client, token))


def test_missing_refresh_token_is_invalid_request(confidential_client, db):
    """RFC 6749 §6 and §5.2: refresh_token is REQUIRED; a missing parameter is invalid_request."""
    response = form_post(
        HttpClient(), "/oauth/token", {"grant_type": "refresh_token"}, auth=confidential_client.basic
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_request"


def test_access_token_is_not_a_refresh_token(confidential_client, issued):
    """RFC 6749 §1.5 and §5.2: only a refresh token refreshes; an access token there is invalid_grant."""
    _assert_invalid_grant(refresh(confidential_client, issued["access_token"]))
    assert userinfo(issued["access_token"]).status_code == HTTPStatus.OK


def test_revoked_refresh_token_is_invalid_grant(confidential_client, issued):
    """RFC 7009 §2.1: a revoked token cannot be used again."""
    assert revoke(confidential_client, issued["refresh_token"]).status_code == HTTPStatus.OK
    _assert_invalid_grant(refresh(confidential_client, issued["refresh_token"]))


def test_refresh_token_expires_after_its_lifetime(confidential_client, issued, settings):
    """RFC 6749 §5.2: a refresh token UAA_REFRESH_TOKEN_LIFETIME past its access token is invalid_grant."""
    lifetime = timedelta(seconds=settings.UAA_REFRESH_TOKEN_LIFETIME)
    access_expiry = datetime.fromtimestamp(unverified_claims(issued["access_token"])["exp"], UTC)
    with freeze_time(access_expiry + lifetime + timedelta(seconds=1)):
        _assert_invalid_grant(refresh(confidential_client, issued["refresh_token"]))


def test_refresh_token_still_works_after_its_access_token_expired(confidential_client, issued):
    """RFC 6749 §1.5: refresh tokens obtain new access tokens when the current one expires."""
    with freeze_time(datetime.now(UTC) + timedelta(hours=1)):
        assert userinfo(issued["access_token"]).status_code == HTTPStatus.UNAUTHORIZED
        response = refresh(confidential_client, issued["refresh_token"])
        assert response.status_code == HTTPStatus.OK, response.content
        assert userinfo(response.json()["access_token"]).status_code == HTTPStatus.OK


def test_refresh_is_refused_once_the_user_is_deactivated(confidential_client, issued, user):
    """RFC 6749 §10.4 and §5.2: the grant ends with the account; invalid_grant once the user is inactive."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    _assert_invalid_grant(refresh(confidential_client, issued["refresh_token"]))
