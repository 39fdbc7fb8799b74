"""E-mail through a real Celery worker to a real SMTP server (issue 14 item 1).

The SMTP server is a small socketserver sink speaking enough of RFC 5321 for smtplib (Django's SMTP
backend); it answers ``451`` (a transient failure) to the first transaction, and always to one recipient (an
outage that outlasts the retries). The worker is ``celery -A uaa worker`` on the embedded filesystem broker,
with web's settings from the environment (``EMAIL_URL``) as in production; messages are queued by
``manage.py shell`` as a web process queues them.

Attackers: someone reading the broker (the queued message is on disk before the worker runs: no secret in
it); an SMTP outage (retried with backoff, and after the last retry logged as failed, never dropped)."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.uaa import live
from tests.uaa.live import processes

__all__ = ["processes"]  # a fixture

SECRET_LINK = "https://id.example.com/accounts/reset/secret-token-9d2e71"
OUTAGE = "outage@example.com"


class SMTPSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.transactions = 0
        self.refused = 0
        self.received: list[EmailMessage] = []
        self.lock = threading.Lock()


class _Session(socketserver.StreamRequestHandler):
    server: SMTPSink

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self._reply("220 sink ESMTP")
        refuse = False
        while line := self.rfile.readline():
            command = line.decode(errors="replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in {"EHLO", "HELO"}:
                self._reply("250 sink")
            elif verb == "MAIL":
                with self.server.lock:
                    self.server.transactions += 1
                    refuse = self.server.transactions == 1
                self._reply("250 OK")
            elif verb == "RCPT":
                refuse = refuse or OUTAGE in command
                self._reply("250 OK")
            elif verb == "DATA":
                if refuse:
                    with self.server.lock:
                        self.server.refused += 1
                    self._reply("451 4.3.0 try again later")
                    continue
                self._reply("354 go ahead")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                message = email.message_from_bytes(data, policy=email.policy.default)
                with self.server.lock:
                    self.server.received.append(message)  # type: ignore[arg-type]
                self._reply("250 OK queued")
            elif verb == "RSET" or verb == "NOOP":
                refuse = False
                self._reply("250 OK")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 not implemented")


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    server = SMTPSink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


QUEUE = """
from django.db import transaction
from accounts.mail import send_templated_mail
context = {"display_name": "<script>alert(1)</script>", "headline": "Reset your password",
           "body": "Use the link below.", "action_url": %(link)r, "action_label": "Reset"}
with transaction.atomic():
    print(send_templated_mail("email/notice", %(to)r, context))
"""


def _queue(env: dict[str, str], to: str) -> str:
    return live.manage(env, "shell", "-c", QUEUE % {"link": SECRET_LINK, "to": to}).strip().splitlines()[-1]


def test_a_real_worker_retries_an_smtp_failure_then_sends_once(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], sink: SMTPSink
) -> None:
    env = {
        **live.base_env(tmp_path),
        "EMAIL_URL": f"smtp://mailer:smtp-password-77@127.0.0.1:{sink.server_address[1]}/?timeout=5",
        "DEFAULT_FROM_EMAIL": "UAA <no-reply@id.example.com>",
        "UAA_EMAIL_MAX_RETRIES": "2",
        "UAA_EMAIL_RETRY_BACKOFF_MAX": "2",
        # The embedded broker, whatever UAA_TEST_BROKER_URL says (.ci/run's PostgreSQL step: Redis): what the
        # broker holds is read from its files below. The sealing does not depend on the broker.
        "CELERY_BROKER_URL": "filesystem://",
    }
    env.pop("DEBUG", None)
    live.manage(env, "migrate", "--noinput", timeout=120)
    message_id = _queue(env, "ada@example.com")
    outage_id = _queue(env, OUTAGE)

    # Someone reading the broker: both messages wait on disk, and neither link, address nor name is there.
    broker = Path(env["UAA_VAR_DIR"]) / "broker"
    files = [json.loads(p.read_bytes()) for p in broker.iterdir() if p.is_file()]
    queued = b"".join(json.dumps(f).encode() + base64.b64decode(f["body"]) for f in files)  # body is base64
    assert message_id.encode() in queued and outage_id.encode() in queued
    for secret in (SECRET_LINK, "secret-token-9d2e71", "ada@example.com", OUTAGE, "alert(1)", "Reset your"):
        assert secret.encode() not in queued

    # The SMTP server does not ask for AUTH here, so no login is tried; the password appears in no log.
    env["EMAIL_URL"] = f"smtp://127.0.0.1:{sink.server_address[1]}/?timeout=5"
    log = tmp_path / "worker.log"
    command = [str(live.BIN / "celery"), "-A", "uaa", "worker", "--pool=solo", "--loglevel=INFO"]
    processes.append(live.start(command, env, log))
    live.wait_for(
        lambda: len(sink.received) == 1, "the first message to arrive after a retry", log, timeout=90
    )
    live.wait_for(
        lambda: "accounts.mail.failed" in log.read_text(errors="replace"),
        "the outage's last retry",
        log,
        timeout=90,
    )

    (message,) = sink.received
    assert message["Message-ID"] == f"<{message_id}@id.example.com>"
    assert message["Subject"] == "Reset your password" and message["To"] == "ada@example.com"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert f"Reset: {SECRET_LINK}" in text.get_content()
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in html.get_content() and "<script>" not in html.get_content()
    )

    worker_log = log.read_text(errors="replace")
    assert worker_log.count("accounts.mail.sent") == 1 and "Retry in" in worker_log
    # the outage's message: first try and 2 retries refused, then failed; 1 refusal for the other message
    assert sink.refused == 1 + 3
    assert "accounts.mail.failed" in worker_log and SECRET_LINK not in worker_log
    assert "smtp-password-77" not in worker_log
