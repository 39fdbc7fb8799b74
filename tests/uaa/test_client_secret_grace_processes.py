"""The previous secret's grace window across real processes (issue 13 item 1).

Attacker: whoever holds a client's previous secret (it leaked) and sends it to every web worker of the
deployment in turn, after the operator ended the window or after it ran out, hoping one of them still has
the client's row, with its previous hash, in its client cache (uaa/oauth/client_cache.py).

Two gunicorn servers (the compose file's web command, one worker each) share one database; the secret is
rotated and the window ended by a third process (``manage.py shell``: the services), as in
tests/uaa/test_client_cache_processes.py.
"""

from __future__ import annotations

import time

from tests.uaa.live import (
    create_service_client,
    free_port,
    healthy,
    process_env,
    processes,
    start,
    wait_for,
    web_script,
)
from tests.uaa.test_client_cache_processes import _shell, _token

__all__ = ["process_env", "processes"]  # fixtures

WINDOW = 10  # seconds: long enough for four requests, short enough to wait for


def _rotate(env: dict[str, str], client_id: str, grace_seconds: int) -> str:
    return _shell(
        env,
        "from uaa.oauth.models import Client; from uaa.oauth.services import rotate_client_secret; "
        f"print(rotate_client_secret(client=Client.objects.get(client_id={client_id!r}), "
        f"actor='ops', grace_seconds={grace_seconds}))",
    )


def test_the_previous_secret_stops_on_every_server_when_the_window_is_ended_or_runs_out(
    process_env, processes, tmp_path
):
    servers = []
    for name in ("a", "b"):
        port = free_port()
        log = tmp_path / f"web-{name}.log"
        processes.append(start(web_script(port, workers=1), {**process_env}, log))
        base = f"http://127.0.0.1:{port}"
        wait_for(healthy(base), f"gunicorn {name} /healthz", log)
        servers.append(base)
    credentials = create_service_client(process_env)
    client_id, first = credentials["client_id"], credentials["client_secret"]

    # Rotated with a day's window: both servers take both secrets (each caches the row with its window).
    second = _rotate(process_env, client_id, 86400)
    assert second and second != first
    for base in servers * 2:
        assert _token(base, client_id, first) == (200, "")
        assert _token(base, client_id, second) == (200, "")

    # Ended now, in another process: the old secret fails on both at once.
    ended = _shell(
        process_env,
        "from uaa.oauth.models import Client; from uaa.oauth.services import end_client_secret_grace; "
        f"client = Client.objects.get(client_id={client_id!r}); "
        "print(end_client_secret_grace(client=client, actor='ops'))",
    )
    assert ended == "True"
    for base in servers:
        assert _token(base, client_id, first) == (401, "invalid_client")
        assert _token(base, client_id, second) == (200, "")

    # Rotated with a short window that then runs out, nothing writing the row: both servers still hold
    # it in their caches, and both refuse the old secret all the same.
    before = time.monotonic()
    third = _rotate(process_env, client_id, WINDOW)
    after = time.monotonic()  # the window ends between before + WINDOW and after + WINDOW
    for base in servers:
        assert _token(base, client_id, second) == (200, "")
        assert _token(base, client_id, third) == (200, "")
    assert time.monotonic() < before + WINDOW, "too slow to see the window while it ran"
    time.sleep(max(0.0, after + WINDOW + 0.5 - time.monotonic()))
    for base in servers:
        assert _token(base, client_id, second) == (401, "invalid_client")
        assert _token(base, client_id, third) == (200, "")
