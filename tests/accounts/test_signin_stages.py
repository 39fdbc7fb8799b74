"""accounts/signin.py: which stage of a sign-in may follow which, held server-side in the session."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from accounts import sessions, signin
from accounts.mfa import enrollment
from accounts.signin import Method, Stage
from tests.conftest import ENROLL, LOGIN, MFA
from tests.factories import PASSWORD, UserFactory


@pytest.fixture
def request_with_session(db):
    from django.contrib.auth.models import AnonymousUser

    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.user = AnonymousUser()
    return request


@pytest.mark.parametrize(("mfa", "stage"), [(True, Stage.SECOND_FACTOR), (False, Stage.ENROLL)])
def test_the_password_step_records_the_one_stage_that_may_follow(request_with_session, mfa, stage):
    user = UserFactory(mfa=mfa)
    assert signin.after_password(request=request_with_session, user=user, next_url="/x") is stage
    state = signin.pending.require(request_with_session, stage=stage)
    assert state is not None and state.user == user and state.factors == ("pwd",) and state.next_url == "/x"


@pytest.mark.parametrize(("mfa", "other"), [(True, Stage.ENROLL), (False, Stage.SECOND_FACTOR)])
def test_any_other_stage_is_refused(request_with_session, mfa, other):
    signin.after_password(request=request_with_session, user=UserFactory(mfa=mfa), next_url="/")
    with pytest.raises(PermissionDenied):
        signin.pending.require(request_with_session, stage=other)


def test_nothing_pending_is_none(request_with_session):
    assert signin.pending.require(request_with_session, stage=Stage.ENROLL) is None


def test_a_pending_state_without_a_stage_is_dropped(request_with_session):
    """A sign-in left half-way by an older version (no stage recorded) starts over; it is not guessed."""
    user = UserFactory(mfa=False)
    request_with_session.session[sessions.PENDING] = {"user": str(user.pk), "factors": ["pwd"], "since": 1e12}
    assert signin.pending.require(request_with_session, stage=Stage.ENROLL) is None
    assert sessions.PENDING not in request_with_session.session


def test_policy_off_and_no_factor_signs_in_with_the_password(request_with_session, settings):
    settings.UAA_MFA_REQUIRED = False
    user = UserFactory(mfa=False)
    assert signin.after_password(request=request_with_session, user=user, next_url="/") is Stage.SIGNED_IN
    assert request_with_session.session[SESSION_KEY] == str(user.pk)


def test_a_signed_in_session_is_never_a_pending_stage(request_with_session):
    with pytest.raises(ValueError, match="not a pending"):
        signin.pending.start(
            request_with_session, user=UserFactory(), stage=Stage.SIGNED_IN, factors=["pwd"], next_url="/"
        )


def test_an_unknown_method_is_taken_as_an_app_code():
    assert Method.parse("backup") is Method.BACKUP_CODE
    assert Method.parse("sms") is Method.TOTP
    assert Method.parse(None) is Method.TOTP


def test_the_challenge_page_of_a_user_sent_to_enrollment_is_refused(client, db):
    user = UserFactory(mfa=False)
    assert client.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == ENROLL
    response = client.get(MFA)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert b"not the next step of your sign-in" in response.content
    assert client.get(ENROLL).status_code == HTTPStatus.OK  # the stage itself is untouched


def test_a_challenge_whose_factors_were_reset_meanwhile_starts_over(client, user):
    """An admin's reset between the steps: the challenge cannot be answered; the next sign-in enrolls."""
    assert client.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == MFA
    enrollment.reset_factors(request=None, user=user)
    assert client.get(MFA).status_code == HTTPStatus.BAD_REQUEST
    assert client.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == ENROLL


def test_a_user_who_gets_a_factor_while_at_enrollment_is_sent_back_to_sign_in(client, db):
    """The stage is checked again when the page is shown: no key for a user who has a factor by then."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = UserFactory(mfa=False)
    client.post(LOGIN, {"email": user.email, "password": PASSWORD})
    TOTPDevice.objects.create(user=user, name="elsewhere", confirmed=True)
    assert client.get(ENROLL).status_code == HTTPStatus.FORBIDDEN
    assert not TOTPDevice.objects.filter(user=user, confirmed=False).exists()
    assert client.get(ENROLL).status_code == HTTPStatus.BAD_REQUEST  # that sign-in is over: start again
