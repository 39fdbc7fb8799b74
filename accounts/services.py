"""Account services: create users, sign in and out."""

from __future__ import annotations

import logging

from django.contrib.auth import authenticate, login, logout
from django.db import transaction
from django.http import HttpRequest

from accounts import sessions
from accounts.models import User
from tokens import ledger
from tokens.models import LedgerRecord

logger = logging.getLogger(__name__)


def create_user(
    *,
    email: str,
    password: str | None,
    given_name: str = "",
    family_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    return User.objects.create_user(
        email,
        password,
        given_name=given_name,
        family_name=family_name,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )


def authenticate_password(*, request: HttpRequest, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or ``None``; same answer and cost for unknown ones."""
    user = authenticate(request, username=email.strip().lower(), password=password)
    if user is None:
        logger.info("accounts.sign_in_failed", extra={"ip": request.META.get("REMOTE_ADDR")})
        known = (
            User.objects.filter(email=email.strip().lower()) if "\x00" not in email else User.objects.none()
        )
        target = known.values_list("pk", flat=True).first()
        ledger.append_record(
            event=LedgerRecord.Event.SIGN_IN_FAILED,
            sub=str(target or ""),
            amr=["pwd"],
            **ledger.request_metadata(request),
        )
    return user


def sign_in(*, request: HttpRequest, user: User, amr: list[str]) -> None:
    """Start the SSO session: a new session id (``login`` rotates it) and the authentication context."""
    with transaction.atomic():
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        sessions.start(request, amr=amr)
        ledger.append_record(
            event=LedgerRecord.Event.SIGN_IN_SUCCEEDED,
            sub=str(user.pk),
            amr=amr,
            **ledger.request_metadata(request),
        )
    logger.info("accounts.signed_in", extra={"user_id": str(user.pk)})


def sign_out(*, request: HttpRequest) -> None:
    user_id = str(request.user.pk) if request.user.is_authenticated else None
    logout(request)
    if user_id:
        ledger.append_record(
            event=LedgerRecord.Event.SIGNED_OUT, sub=user_id, **ledger.request_metadata(request)
        )
    logger.info("accounts.signed_out", extra={"user_id": user_id})
