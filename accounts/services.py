"""Account services: create users, sign in and out."""

from __future__ import annotations

import logging

from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest

from accounts import sessions
from accounts.models import User

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
    return user


def sign_in(*, request: HttpRequest, user: User, amr: list[str]) -> None:
    """Start the SSO session: a new session id (``login`` rotates it) and the authentication context."""
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    sessions.start(request, amr=amr)
    logger.info("accounts.signed_in", extra={"user_id": str(user.pk)})


def sign_out(*, request: HttpRequest) -> None:
    user_id = str(request.user.pk) if request.user.is_authenticated else None
    logout(request)
    logger.info("accounts.signed_out", extra={"user_id": user_id})
