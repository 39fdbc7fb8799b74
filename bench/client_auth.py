"""Failed client authentication in process: an unknown client_id, a wrong secret and the right secret.

Run:  DATABASE_URL=postgres://postgres@127.0.0.1:5432/uaa_bench .venv/bin/python bench/client_auth.py
      ... bench/client_auth.py --requests 2000 --profile 15   (and each one's top 15 functions of UAA,
                                                                oauthlib and DOT by cumulative time, cProfile)

Each request goes through the whole Django stack in process (Django's test client: middleware, the
throttle, client authentication, the failure's counting and tally, or the token and its record), the
three interleaved request by request so that drift hits them alike. It prints, per request kind, the
median and 90th percentile of the wall time per request (the database's time included: every round trip
waits), the process CPU time per request, and the SQL statements of one warm request
(CaptureQueriesContext). The throttle's limits are raised (as bench/run.py does for the same figure), so
that every failure takes the path a guesser under the limits sees; the queries are the same.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")
os.environ.setdefault("UAA_VAR_DIR", "/tmp/uaa-bench")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/uaa-bench/client-auth.sqlite3")
os.environ.setdefault("DEBUG", "0")  # Django's debug cursor would log every query
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("UAA_ISSUER", "http://127.0.0.1:8000")
os.environ.setdefault("UAA_ALLOW_HTTP_ISSUER", "1")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("UAA_KEK", "4zCwW7m1tZrJq0q2pQ7y3v8Lk6bV5nX2aS9dF1gH0jE")
os.environ.setdefault("UAA_LOG_LEVEL", "WARNING")
for _name in ("CLIENT_FAILURES", "CLIENT_IP_FAILURES", "IP_FAILURES", "ACCOUNT_FAILURES"):
    os.environ[f"UAA_THROTTLE_{_name}"] = "1000000000"
Path("/tmp/uaa-bench").mkdir(exist_ok=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client as HttpClient  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from tests.oauth_client import form_post  # noqa: E402
from tokens.rotation import ensure_active_key  # noqa: E402
from uaa.oauth.models import Client  # noqa: E402
from uaa.oauth.services import register_client  # noqa: E402

EXPECTED = {"unknown client_id": 401, "wrong secret": 401, "right secret": 200}


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def send(http: HttpClient, auth: str) -> int:
    return int(form_post(http, "/oauth/token", {"grant_type": "client_credentials"}, auth=auth).status_code)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1500, help="requests of each kind")
    parser.add_argument("--profile", type=int, default=0, help="print this many functions of each profile")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    ensure_active_key(algorithm="RS256", now=timezone.now())
    issued = register_client(
        name="bench client auth",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        default_audience=["https://api.example.com"],
    )
    client_id = issued.client.client_id
    kinds = {
        "unknown client_id": basic("no-such-client", "x" * 43),
        "wrong secret": basic(client_id, "x" * 43),
        "right secret": basic(client_id, issued.client_secret or ""),
    }
    http = HttpClient()
    for _ in range(20):  # warm: the client cache, the key, the address's failure tally, connections
        for name, auth in kinds.items():
            if (status := send(http, auth)) != EXPECTED[name]:
                raise SystemExit(f"{name}: {status}, not {EXPECTED[name]}")
    statements = {}
    for name, auth in kinds.items():
        with CaptureQueriesContext(connection) as captured:
            send(http, auth)
        statements[name] = [query["sql"] for query in captured.captured_queries]

    wall: dict[str, list[float]] = {name: [] for name in kinds}
    cpu: dict[str, float] = dict.fromkeys(kinds, 0.0)
    order = list(kinds.items())
    for round_ in range(args.requests):
        for name, auth in order if round_ % 2 == 0 else reversed(order):
            started, cpu_started = time.perf_counter(), time.process_time()
            send(http, auth)
            wall[name].append(time.perf_counter() - started)
            cpu[name] += time.process_time() - cpu_started

    right = statistics.median(wall["right secret"])
    print(f"database: {connection.vendor}; {args.requests} requests of each kind, interleaved, in process")
    for name in kinds:
        times = sorted(wall[name])
        p50, p90 = statistics.median(times), times[int(len(times) * 0.9)]
        print(
            f"  {name:18} p50 {p50 * 1000:6.2f} ms  p90 {p90 * 1000:6.2f} ms  "
            f"cpu {cpu[name] * 1000 / args.requests:5.2f} ms/req  p50 / right secret's {p50 / right:4.2f}  "
            f"SQL statements {len(statements[name])}"
        )
    for name in kinds:
        print(f"\n{name}: the statements of one warm request")
        for sql in statements[name]:
            print(f"    {sql[:150]}")
    if args.profile:
        for name, auth in kinds.items():
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(min(args.requests, 500)):
                send(http, auth)
            profile.disable()
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
            stats.print_stats(r"/(uaa|accounts|tokens)/|oauthlib|oauth2_provider", args.profile)  # UAA's own
            print(f"\n--- {name}: cProfile of {min(args.requests, 500)} requests, by cumulative time")
            print(out.getvalue().split("\n", 6)[-1])


if __name__ == "__main__":
    main()
