"""Migrate vanilla DOT's database and register two client_credentials applications; print them as JSON.

Run by bench/run.py with the throwaway virtualenv's Python: ``plain`` stores its secret as is
(``hash_client_secret=False``), ``hashed`` keeps DOT's default (the secret hashed with Django's default
password hasher, PBKDF2-SHA256 at Django's iteration count, checked on every request).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.dot_project.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from oauth2_provider.models import get_application_model  # noqa: E402


def statements(client_id: str, secret: str) -> int:
    """SQL statements of one warm client_credentials token request (Django's test client)."""
    auth = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()

    def send() -> object:
        http = Client(SERVER_NAME="127.0.0.1")
        body = "grant_type=client_credentials"
        response = http.post("/o/token/", body, "application/x-www-form-urlencoded", HTTP_AUTHORIZATION=auth)
        assert response.status_code == 200, response.content[:300]
        return response

    send()
    with CaptureQueriesContext(connection) as queries:
        send()
    return len(queries.captured_queries)


def main() -> None:
    call_command("migrate", verbosity=0)
    application = get_application_model()
    issued = {}
    for name, hashed in (("plain", False), ("hashed", True)):
        secret = secrets.token_urlsafe(32)
        app = application.objects.create(
            name=f"bench-{name}",
            client_type=application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=application.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret,
            hash_client_secret=hashed,
        )
        issued[name] = {"client_id": app.client_id, "client_secret": secret}
    issued["statements"] = {
        "token": statements(issued["plain"]["client_id"], issued["plain"]["client_secret"])
    }
    print(json.dumps(issued))


if __name__ == "__main__":
    main()
