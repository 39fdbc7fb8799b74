"""E-mail foundation (issue 14 item 1): templates with both parts, escaping, header injection, the sealed task
arguments, idempotency, EMAIL_URL parsing and its checks. The real SMTP server and the real worker are in
test_mail_worker.py.

Attackers: whoever controls a display name or an address (HTML and header injection), whoever reads the
broker (the task's arguments), an SMTP outage (no message lost silently)."""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.mail import BadHeaderError, EmailMultiAlternatives
from django.test import override_settings

from accounts import mail as accounts_mail
from accounts.mail import (
    MailNotConfigured,
    mail_configuration_messages,
    open_sealed_message,
    send_templated_mail,
)
from accounts.models import SentMail
from accounts.tasks import send_mail_task
from tests.uaa import live
from uaa.settings import _email_settings

RESET_LINK = "https://id.example.com/accounts/reset/secret-token-5b1f0c"
CONTEXT = {
    "display_name": "Ada",
    "headline": "Your password was changed",
    "body": "Someone changed your password.",
    "action_url": RESET_LINK,
    "action_label": "Review",
}


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """What would go on the broker: the task's arguments."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(send_mail_task, "delay", lambda *args: calls.append(args))
    yield calls


def _send(django_capture_on_commit_callbacks: Any, to: str = "ada@example.com", **context: Any) -> uuid.UUID:
    with django_capture_on_commit_callbacks(execute=True):
        return send_templated_mail("email/notice", to, {**CONTEXT, **context})


@pytest.mark.django_db
def test_a_message_has_its_plain_text_and_html_parts(queued, django_capture_on_commit_callbacks) -> None:
    message_id = _send(django_capture_on_commit_callbacks)
    assert len(queued) == 1 and queued[0][0] == str(message_id) and queued[0][1] == "email/notice"
    assert send_mail_task.apply(args=queued[0]).get() is True
    (sent,) = mail.outbox
    assert isinstance(sent, EmailMultiAlternatives)
    assert sent.subject == "Your password was changed"
    assert sent.to == ["ada@example.com"]
    assert "Hello Ada," in sent.body and f"Review: {RESET_LINK}" in sent.body and "<p>" not in sent.body
    html, mimetype = sent.alternatives[0]
    assert mimetype == "text/html"
    assert "<p>Hello Ada,</p>" in str(html) and f'<a href="{RESET_LINK}">Review</a>' in str(html)
    assert sent.extra_headers["Message-ID"] == f"<{message_id}@testserver>"  # DEFAULT_FROM_EMAIL's domain
    raw = sent.message().as_string()
    assert "multipart/alternative" in raw and "text/plain" in raw and "text/html" in raw


@pytest.mark.django_db
def test_a_display_name_with_markup_is_escaped_in_html(queued, django_capture_on_commit_callbacks) -> None:
    attacker = '<script>alert(1)</script><a href="https://evil.example">x</a>'
    _send(django_capture_on_commit_callbacks, display_name=attacker)
    send_mail_task.apply(args=queued[0])
    (sent,) = mail.outbox
    assert isinstance(sent, EmailMultiAlternatives)
    html = str(sent.alternatives[0][0])
    assert "<script>" not in html and 'evil.example">' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert attacker in mail.outbox[0].body  # plain text is not HTML: shown as written, inert


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("to", "context"),
    [
        ("ada@example.com\nBcc: victim@example.org", {}),
        ("ada@example.com\r\nSubject: spoofed", {}),
        ("ada@example.com", {"headline": "Hello\nBcc: victim@example.org"}),
        ("ada@example.com", {"headline": "Hello\r\nX-Evil: 1"}),
    ],
)
def test_a_newline_in_an_address_or_the_subject_is_refused_and_nothing_is_queued(
    queued, django_capture_on_commit_callbacks, to: str, context: dict[str, str]
) -> None:
    with pytest.raises(BadHeaderError), django_capture_on_commit_callbacks(execute=True) as callbacks:
        send_templated_mail("email/notice", to, {**CONTEXT, **context})
    assert callbacks == [] and queued == [] and mail.outbox == []


@pytest.mark.django_db
def test_the_task_arguments_hold_no_secret_and_the_seal_is_authenticated(
    queued, django_capture_on_commit_callbacks
) -> None:
    """Whoever reads the broker sees the message id, the template name and ciphertext."""
    _send(django_capture_on_commit_callbacks, display_name="Ada Lovelace")
    arguments = repr(queued[0])
    for secret in (RESET_LINK, "secret-token-5b1f0c", "ada@example.com", "Lovelace", "password was changed"):
        assert secret not in arguments
    assert open_sealed_message(queued[0][2])["to"] == ["ada@example.com"]
    tampered = queued[0][2][:-6] + ("AAAAAA" if not queued[0][2].endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(ValueError):
        open_sealed_message(tampered)
    with override_settings(SECRET_KEY="another-secret-key-" + "y" * 40):
        with pytest.raises(ValueError):
            open_sealed_message(queued[0][2])
    with override_settings(SECRET_KEY="another-secret-key-" + "y" * 40, SECRET_KEY_FALLBACKS=[_secret()]):
        assert open_sealed_message(queued[0][2])["id"] == queued[0][0]


def _secret() -> str:
    from django.conf import settings

    return str(settings.SECRET_KEY)


@pytest.mark.django_db
def test_a_retried_task_does_not_send_a_sent_message_twice(
    queued, django_capture_on_commit_callbacks
) -> None:
    message_id = _send(django_capture_on_commit_callbacks)
    assert send_mail_task.apply(args=queued[0]).get() is True
    assert send_mail_task.apply(args=queued[0]).get() is False
    assert len(mail.outbox) == 1
    assert SentMail.objects.filter(message_id=message_id, template="email/notice").count() == 1


@pytest.mark.django_db
def test_a_task_whose_seal_names_another_message_sends_nothing(
    queued, django_capture_on_commit_callbacks
) -> None:
    _send(django_capture_on_commit_callbacks)
    _, template, sealed = queued[0]
    result = send_mail_task.apply(args=(str(uuid.uuid4()), template, sealed))
    assert isinstance(result.result, ValueError) and mail.outbox == []


@pytest.mark.django_db
def test_without_a_backend_a_message_is_refused_retried_then_logged_as_failed(
    queued, django_capture_on_commit_callbacks, caplog: pytest.LogCaptureFixture
) -> None:
    """Production without EMAIL_URL: never a silent drop. (Eagerly: the retries run at once.)"""
    message_id = _send(django_capture_on_commit_callbacks)
    with (
        override_settings(EMAIL_BACKEND="accounts.mail.RefusingBackend"),
        caplog.at_level(logging.ERROR, logger="accounts.tasks"),
    ):
        result = send_mail_task.apply(args=queued[0])
    assert isinstance(result.result, MailNotConfigured)
    assert mail.outbox == [] and not SentMail.objects.filter(message_id=message_id).exists()
    (failed,) = [r for r in caplog.records if r.getMessage() == "accounts.mail.failed"]
    assert failed.message_id == str(message_id) and failed.template == "email/notice"  # type: ignore[attr-defined]
    assert failed.attempts == send_mail_task.max_retries + 1  # type: ignore[attr-defined]
    assert RESET_LINK not in caplog.text and "ada@example.com" not in caplog.text


# --- EMAIL_URL ---------------------------------------------------------------------------------------------
def test_email_urls_become_djangos_settings() -> None:
    smtp, problem = _email_settings("smtp://mailer%40example.com:p%40ss%3Aword@mail.example.com:587/?tls=1")
    assert problem == ""
    assert smtp == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer@example.com",
        "EMAIL_HOST_PASSWORD": "p@ss:word",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 10.0,
    }
    ssl, _ = _email_settings("smtp+ssl://u:p@mail.example.com")
    assert ssl["EMAIL_PORT"] == 465 and ssl["EMAIL_USE_SSL"] is True and ssl["EMAIL_USE_TLS"] is False
    plain, _ = _email_settings("smtp://127.0.0.1:2525?timeout=3")
    assert plain["EMAIL_PORT"] == 2525 and plain["EMAIL_TIMEOUT"] == 3.0 and plain["EMAIL_HOST_USER"] == ""
    assert (
        _email_settings("console://")[0]["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    )
    assert _email_settings("locmem://")[0]["EMAIL_BACKEND"] == "django.core.mail.backends.locmem.EmailBackend"
    assert _email_settings("") == ({"EMAIL_BACKEND": "accounts.mail.RefusingBackend"}, "")


@pytest.mark.parametrize(
    "url",
    [
        "smtp://u:hunter2@mail.example.com:notaport/",
        "smpt://u:hunter2@mail.example.com",
        "smtp://u:hunter2@:587",
        "smtp://u:hunter2@mail.example.com/?tls=1&ssl=1",
        "smtp+ssl://u:hunter2@mail.example.com/?tls=1",
        "smtp://u:hunter2@mail.example.com/?tls=maybe",
        "smtp://u:hunter2@mail.example.com/?starttls=1",
        "smtp://u:hunter2@mail.example.com/?timeout=0",
        "smtp://u:hunter2@mail.example.com/?timeout=x",
        "hunter2",
    ],
)
def test_an_unreadable_email_url_is_an_error_that_never_repeats_the_password(url: str) -> None:
    found, problem = _email_settings(url)
    assert found == {"EMAIL_BACKEND": "accounts.mail.RefusingBackend"}
    assert problem and "hunter2" not in problem
    with override_settings(UAA_EMAIL_URL_PROBLEM=problem, UAA_EMAIL_CONFIGURED=False, DEBUG=False):
        from django.conf import settings

        messages = mail_configuration_messages(settings)
    assert [m.id for m in messages] == ["accounts.E001"] and messages[0].is_serious()


def test_production_without_email_url_is_a_warning_and_a_bad_sender_an_error() -> None:
    from django.conf import settings

    with override_settings(UAA_EMAIL_URL_PROBLEM="", UAA_EMAIL_CONFIGURED=False, DEBUG=False):
        assert [(m.id, m.is_serious()) for m in mail_configuration_messages(settings)] == [
            ("accounts.W001", False)
        ]
    with override_settings(
        UAA_EMAIL_CONFIGURED=True, DEFAULT_FROM_EMAIL="UAA <a@example.com>\nBcc: x@example.org"
    ):
        assert [m.id for m in mail_configuration_messages(settings)] == ["accounts.E001"]
    with override_settings(UAA_EMAIL_CONFIGURED=True, DEFAULT_FROM_EMAIL="UAA <a@example.com>"):
        assert mail_configuration_messages(settings) == []


def test_the_refusing_backend_refuses() -> None:
    with pytest.raises(MailNotConfigured):
        accounts_mail.RefusingBackend().send_messages([])


def test_a_process_refuses_to_start_on_an_unreadable_email_url(tmp_path: Path) -> None:
    """Every process (here ``manage.py check``) stops at start-up, and the password is not in its output."""
    env = live.base_env(tmp_path)
    bad = subprocess.run(
        [str(live.BIN / "python"), "manage.py", "check"],
        cwd=live.ROOT,
        env={**env, "EMAIL_URL": "smpt://mailer:hunter2@mail.example.com:587"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "accounts.E001" in bad.stderr and "ImproperlyConfigured" in bad.stderr
    assert "hunter2" not in bad.stderr + bad.stdout
    unset = subprocess.run(
        [str(live.BIN / "python"), "manage.py", "check"],
        cwd=live.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unset.returncode == 0 and "accounts.W001" in unset.stderr, unset.stderr[-1500:]
