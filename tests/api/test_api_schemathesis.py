"""A bounded schemathesis run against a live server: the web command of docker-compose.yml (migrate,
bootstrap, gunicorn with production settings) on a database of its own, the admin API's document loaded
from that server's /api/v1/schema, and `schemathesis run` (its CLI, as CI or an operator runs it) with
the checks not_a_server_error, status_code_conformance, content_type_conformance and
response_schema_conformance over every operation.

The attacker is a schema-driven fuzzer holding a token with every admin scope: no input may get a 5xx,
an undocumented status or media type, or a body the document does not describe. The run writes (it
registers, changes and deletes clients, creates and deactivates users, rotates and revokes keys), so it
gets its own database, and it is kept off the two things that would end it (tests/api/schemathesis_hooks.py):
its own client (deleting it or taking its admin scopes away ends the run's token) and the key that
signed its token (revoking it does): a write to either goes to an id that does not exist. Every
operation stays in the run.

In the suite the run is bounded: the examples, fuzzing and stateful phases, ``MAX_EXAMPLES`` cases per
operation (about 25 s of requests here). The coverage phase (every boundary and wrong-type value the document
implies, ~900 cases, a minute more, and not bounded by ``--max-examples``) runs when asked for. Alone::

    .venv/bin/python -m pytest tests/api/test_api_schemathesis.py -q -s
    SCHEMATHESIS_PHASES=examples,coverage,fuzzing,stateful SCHEMATHESIS_MAX_EXAMPLES=50 \
        .venv/bin/python -m pytest tests/api/test_api_schemathesis.py -q -s
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.uaa.live import (
    BIN,
    ROOT,
    call,
    free_port,
    healthy,
    manage,
    postgres_database,
    postgres_server,
    process_env,
    processes,
    start,
    wait_for,
    web_script,
)
from uaa.api.auth import API_SCOPES

__all__ = ["process_env", "processes"]  # fixtures

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
PHASES = os.environ.get("SCHEMATHESIS_PHASES", "examples,fuzzing,stateful")
SEED = 20261203
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
RUN_TIMEOUT = 240


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A database of the run's own: on the PostgreSQL server DATABASE_URL names, else a SQLite file."""
    server = postgres_server()
    if server is None:
        yield f"sqlite:///{tmp_path / 'schemathesis.sqlite3'}"
        return
    with postgres_database(server, prefix="uaa_schemathesis") as (url, _down, _up):
        yield url


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


SCOPES = ", ".join(f"'--scope', '{scope}'" for scope in API_SCOPES)


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
    database: str, process_env: dict[str, str], processes: list[Any], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**process_env, "DATABASE_URL": database, "UAA_ISSUER": base}
    log = tmp_path / "web.log"
    processes.append(start(web_script(port, workers=2), env, log))
    wait_for(healthy(base), "gunicorn /healthz", log, timeout=120)
    # One process: an admin client for every API scope (its tokens' audience UAA itself), and a signed
    # tree head, so that /audit/head, the proofs and the export answer 200 too.
    script = (
        "from django.core.management import call_command as c;"
        f"c('create_client', '--name', 'schemathesis', '--grant', 'client_credentials', {SCOPES}, '--json');"
        "c('audit', 'seal')"
    )
    output = manage(env, "shell", "-c", script)
    admin = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    answer = call(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials", "scope": " ".join(API_SCOPES), **admin},
    )
    assert answer.status == 200, answer.body
    token = answer.json()["access_token"]

    run_env = {
        **env,
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
        "UAA_SCHEMATHESIS_CLIENT_ID": admin["client_id"],
        "UAA_SCHEMATHESIS_KID": _kid(token),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        str(BIN / "schemathesis"),
        "run",
        f"{base}/api/v1/schema",
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
        "--output-sanitize",
        "true",
    ]
    try:
        result = subprocess.run(
            command, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"schemathesis did not finish in {RUN_TIMEOUT} s: {str(expired.stdout)[-3000:]}")
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.out").write_text(output)
    print(output[-1500:])  # the summary: phases, cases generated, warnings (pytest -s)
    assert result.returncode == 0, output[-12000:]
    assert re.search(r"(\d+) generated, \1 passed", output), output[-3000:]
    server_log = log.read_text(errors="replace")
    assert "Traceback" not in server_log and not re.search(r'" 5\d\d ', server_log), server_log[-4000:]
