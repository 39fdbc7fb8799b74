"""The per-process client cache (uaa/oauth/client_cache.py) across real processes (issue 12 item 2).

Attacker: whoever holds a client secret that an operator has just rotated (it leaked), or the secret of a
client the operator has just deleted or taken a grant from, and who sends it to every web worker of the
deployment in turn, hoping one of them still has the client's old row in memory.

Two gunicorn servers (the compose file's web command, one worker each) share one database; the client is
changed by a third process (``manage.py shell``: the service, ``QuerySet.update()``, a delete) or by plain
SQL. Both servers have just authenticated the client, so each holds a copy; the next request to each after
the change must see the change.
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

from tests.uaa.live import (
    call,
    create_service_client,
    free_port,
    healthy,
    manage,
    process_env,
    processes,
    start,
    wait_for,
    web_script,
)

__all__ = ["process_env", "processes"]  # fixtures


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _token(base: str, client_id: str, secret: str) -> tuple[int, str]:
    answer = call(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        Authorization=_basic(client_id, secret),
    )
    return answer.status, answer.json().get("error", "")


def _shell(env: dict[str, str], code: str) -> str:
    """The last line ``code`` prints in ``manage.py shell`` (log lines may come before it)."""
    lines = manage(env, "shell", "-c", code).strip().splitlines()
    return lines[-1].strip() if lines else ""


def test_a_client_changed_in_another_process_is_seen_by_every_server_at_once(
    process_env, processes, tmp_path
):
    servers = []
    for name in ("a", "b"):
        port = free_port()
        log = tmp_path / f"web-{name}.log"
        processes.append(start(web_script(port, workers=1), {**process_env}, log))
        base = f"http://127.0.0.1:{port}"
        wait_for(healthy(base), f"gunicorn {name} /healthz", log)  # one after the other: one migrates
        servers.append(base)
    credentials = create_service_client(process_env)
    client_id, old_secret = credentials["client_id"], credentials["client_secret"]
    for base in servers * 2:  # each server has the client cached
        assert _token(base, client_id, old_secret) == (200, "")

    # The secret is rotated by the service, in another process: the old one fails everywhere at once.
    new_secret = _shell(
        process_env,
        "from uaa.oauth.models import Client; from uaa.oauth.services import rotate_client_secret; "
        f"print(rotate_client_secret(client=Client.objects.get(client_id={client_id!r})))",
    )
    assert new_secret and new_secret != old_secret
    for base in servers:
        assert _token(base, client_id, old_secret) == (401, "invalid_client")
        assert _token(base, client_id, new_secret) == (200, "")

    # QuerySet.update() sends no signal and does not touch ``updated``: the grant is gone all the same.
    _shell(
        process_env,
        "from uaa.oauth.models import Client; "
        f"Client.objects.filter(client_id={client_id!r}).update(authorization_grant_type='authorization-code')",
    )
    for base in servers:
        assert _token(base, client_id, new_secret) == (400, "unauthorized_client")

    # Plain SQL, as an operator's psql session would: the grant is back, on both servers.
    database = Path(process_env["DATABASE_URL"].removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE oauth_client SET authorization_grant_type = 'client-credentials' WHERE client_id = ?",
            (client_id,),
        )
    for base in servers:
        assert _token(base, client_id, new_secret) == (200, "")

    # Deleted: its secret authenticates nothing, on either server.
    _shell(
        process_env,
        f"from uaa.oauth.models import Client; Client.objects.filter(client_id={client_id!r}).delete()",
    )
    for base in servers:
        assert _token(base, client_id, new_secret) == (401, "invalid_client")
