"""Token-endpoint throughput (client credentials) with the audit ledger on and off, in the same run.

Run:  .venv/bin/python bench/token_endpoint.py [--seconds 2] [--rounds 10]
      DATABASE_URL=postgres://postgres@127.0.0.1:5432/uaa_bench .venv/bin/python bench/token_endpoint.py
      ... bench/token_endpoint.py --compare key-lock   (the shared lock on the signing key, on/off)
      ... bench/token_endpoint.py --compare signing    (the access token's algorithm and JOSE library)

Each request goes through the whole Django stack in process (middleware, client authentication, the access
token's signature, the token INSERTs in DOT's transaction). "Off" replaces ``tokens.ledger.append_record``
with a no-op for the measurement only: there is no such switch in the server. Rounds alternate on/off (ABBA)
so that drift on a noisy machine hits both; the figure that matters is the ratio (issue 5 asks for >= 0.90).
A seal runs between rounds, as beat would, outside the timed windows.

``--compare key-lock`` measures the signing key's shared row lock instead (issue 8, item 17): "off" reads
the active kid without ``FOR SHARE``, as before the fix (same query, same round trips; on SQLite the
SQL is the same either way). It also prints the SQL statements one token request makes in each mode.

``--compare signing`` (issue 12 item 3) times four ways of signing the access token, in turns: jwcrypto
with RS256 (UAA before item 3: tokens.signing's former ``sign_jwt``, with its jwcrypto key object cached per
process as it was), jwcrypto with ES256, PyJWT with RS256 and PyJWT with ES256 (UAA now). It prints
requests per second and this process's CPU time per token (``time.process_time``: Django, DOT, the
signature and the database driver; the database server's own CPU is not in it), medians over the rounds,
and each mode's ratio to the first in the same round.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uaa.settings")
os.environ.setdefault("UAA_VAR_DIR", "/tmp/uaa-bench")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/uaa-bench/token-endpoint.sqlite3")
# Production settings (DEBUG off: Django's debug cursor would log every query), with bench-only secrets.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("UAA_ISSUER", "http://localhost:8000")
os.environ.setdefault("UAA_ALLOW_HTTP_ISSUER", "true")  # a loopback issuer over http (uaa.E001)
os.environ.setdefault("ALLOWED_HOSTS", "testserver")  # the test client's host
os.environ.setdefault("UAA_KEK", "4zCwW7m1tZrJq0q2pQ7y3v8Lk6bV5nX2aS9dF1gH0jE")
os.environ.setdefault("UAA_LOG_LEVEL", "WARNING")
Path("/tmp/uaa-bench").mkdir(exist_ok=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client as HttpClient  # noqa: E402
from django.utils import timezone  # noqa: E402

from tests.oauth_client import basic_auth, form_post  # noqa: E402
from tokens import keys, ledger  # noqa: E402
from tokens.models import LedgerRecord  # noqa: E402
from tokens.rotation import ensure_active_key  # noqa: E402
from uaa.oauth.models import Client  # noqa: E402
from uaa.oauth.services import register_client  # noqa: E402


def requests_per_second(http: HttpClient, auth: str, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        response = form_post(http, "/oauth/token", {"grant_type": "client_credentials"}, auth=auth)
        if response.status_code != 200:
            raise SystemExit(f"token endpoint answered {response.status_code}: {response.content[:200]!r}")
        count += 1
    return count / elapsed


def statements_per_request(http: HttpClient, auth: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        form_post(http, "/oauth/token", {"grant_type": "client_credentials"}, auth=auth)
    return len(queries.captured_queries)


def compare_key_lock(http: HttpClient, auth: str, args: argparse.Namespace) -> None:
    locked_sql = keys._active_kid_sql
    plain = locked_sql(django.db.connection.vendor).removesuffix(" FOR SHARE")

    def use(lock: bool) -> None:
        keys._active_kid_sql = locked_sql if lock else (lambda vendor: plain)  # type: ignore[assignment]

    on: list[float] = []
    off: list[float] = []
    statements = {}
    for lock in (True, False):
        use(lock)
        statements[lock] = statements_per_request(http, auth)
    for round_ in range(args.rounds):
        for lock in (True, False) if round_ % 2 == 0 else (False, True):  # ABBA: drift hits both
            use(lock)
            (on if lock else off).append(requests_per_second(http, auth, args.seconds))
        use(True)
        ledger.seal_tree_head(now=timezone.now())
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    engine = django.db.connection.vendor
    rounds = f"{args.rounds} rounds of 2 x {args.seconds:.0f} s"
    print(f"database: {engine}; {rounds}, key lock on/off alternating")
    print(f"SQL statements per token request: lock on {statements[True]}, lock off {statements[False]}")
    print(f"lock on : {' '.join(f'{v:7.1f}' for v in on)}  req/s (median {statistics.median(on):.1f})")
    print(f"lock off: {' '.join(f'{v:7.1f}' for v in off)}  req/s (median {statistics.median(off):.1f})")
    print(f"ratio on/off per round: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"median ratio: {statistics.median(ratios):.3f}")


def jwcrypto_sign_jwt() -> Callable[..., str]:
    """tokens.signing.sign_jwt as it was before issue 12 item 3: jwcrypto, its JWK of the key cached."""
    from jwcrypto import jwk, jwt

    from tokens.signing import active_signing_key

    cached: dict[str, jwk.JWK] = {}

    def sign_jwt(*, claims: dict[str, object], algorithm: str, typ: str) -> str:
        key = active_signing_key(algorithm)
        if key.kid not in cached:
            cached[key.kid] = jwk.JWK.from_pyca(key.private)
        token = jwt.JWT(
            header={"alg": algorithm, "kid": key.kid, "typ": typ}, claims=json.dumps(claims, default=str)
        )
        token.make_signed_token(cached[key.kid])
        return str(token.serialize())

    return sign_jwt


def cpu_per_request(http: HttpClient, auth: str, seconds: float) -> tuple[float, float]:
    """(requests per second, this process's CPU milliseconds per request) over a ``seconds`` window."""
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        response = form_post(http, "/oauth/token", {"grant_type": "client_credentials"}, auth=auth)
        if response.status_code != 200:
            raise SystemExit(f"token endpoint answered {response.status_code}: {response.content[:200]!r}")
        count += 1
    return count / elapsed, (time.process_time() - cpu) * 1000 / count


def compare_signing(http: HttpClient, auth: str, args: argparse.Namespace) -> None:
    from django.conf import settings

    from tokens.formats import rfc9068

    pyjwt_sign, jwcrypto_sign = rfc9068.sign_jwt, jwcrypto_sign_jwt()
    modes = {
        "jwcrypto RS256 (before)": (jwcrypto_sign, "RS256"),
        "jwcrypto ES256": (jwcrypto_sign, "ES256"),
        "PyJWT RS256": (pyjwt_sign, "RS256"),
        "PyJWT ES256 (now)": (pyjwt_sign, "ES256"),
    }

    def use(mode: str) -> None:
        rfc9068.sign_jwt, settings.UAA_ACCESS_TOKEN_ALG = modes[mode]  # type: ignore[assignment]

    for mode in modes:  # warm up each: its key unwrapped and cached, as in a running worker
        use(mode)
        requests_per_second(http, auth, 0.5)
        token = form_post(http, "/oauth/token", {"grant_type": "client_credentials"}, auth=auth).json()
        header = json.loads(base64.urlsafe_b64decode(token["access_token"].split(".")[0] + "=="))
        assert header["alg"] == modes[mode][1], (mode, header)  # the mode signs as it says
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu_ratios: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        order = list(modes) if round_ % 2 == 0 else list(reversed(modes))  # ABBA across the four
        measured: dict[str, float] = {}
        for mode in order:
            use(mode)
            rate, ms = cpu_per_request(http, auth, args.seconds)
            rates[mode].append(rate)
            cpu[mode].append(ms)
            measured[mode] = ms
        for mode in modes:
            cpu_ratios[mode].append(measured[mode] / measured[next(iter(modes))])
        ledger.seal_tree_head(now=timezone.now())
    engine = django.db.connection.vendor
    print(f"database: {engine}; {args.rounds} rounds of 4 x {args.seconds:.0f} s, the modes in turns (ABBA)")
    print(f"{'mode':24} {'req/s':>7} {'CPU ms/token':>13} {'CPU vs before':>14}")
    for mode in modes:
        print(
            f"{mode:24} {statistics.median(rates[mode]):7.1f} {statistics.median(cpu[mode]):13.3f}"
            f" {statistics.median(cpu_ratios[mode]):13.3f}x"
        )
    use("PyJWT ES256 (now)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timed window")
    parser.add_argument("--rounds", type=int, default=10, help="on/off pairs")
    parser.add_argument("--compare", choices=["ledger", "key-lock", "signing"], default="ledger")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    for algorithm in ("RS256", "ES256"):  # UAA_ACCESS_TOKEN_ALG's, and --compare signing's other one
        ensure_active_key(algorithm=algorithm, now=timezone.now())
    issued = register_client(
        name="bench",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        default_audience=["https://api.example.com"],
    )
    auth = basic_auth(issued.client.client_id, issued.client_secret or "")
    http = HttpClient()
    real_append = ledger.append_record
    requests_per_second(http, auth, 1.0)  # warm up: caches, key unwrap, connections
    if args.compare == "key-lock":
        compare_key_lock(http, auth, args)
        return
    if args.compare == "signing":
        compare_signing(http, auth, args)
        return

    on: list[float] = []
    off: list[float] = []
    before = LedgerRecord.objects.count()
    for round_ in range(args.rounds):
        for enabled in (True, False) if round_ % 2 == 0 else (False, True):  # ABBA: drift hits both
            ledger.append_record = real_append if enabled else (lambda **fields: None)  # type: ignore[assignment]
            (on if enabled else off).append(requests_per_second(http, auth, args.seconds))
        ledger.append_record = real_append  # type: ignore[assignment]
        ledger.seal_tree_head(now=timezone.now())
    recorded = LedgerRecord.objects.count() - before
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    engine = django.db.connection.vendor
    print(f"database: {engine}; {args.rounds} rounds of 2 x {args.seconds:.0f} s, ledger on/off alternating")
    print(f"ledger on : {' '.join(f'{v:7.1f}' for v in on)}  req/s (median {statistics.median(on):.1f})")
    print(f"ledger off: {' '.join(f'{v:7.1f}' for v in off)}  req/s (median {statistics.median(off):.1f})")
    print(f"ratio on/off per round: {' '.join(f'{r:.3f}' for r in ratios)}")
    median = statistics.median(ratios)
    print(f"median ratio: {median:.3f} (issue 5 requires >= 0.90); records appended: {recorded}")
    report = ledger.verify_stored_ledger(now=timezone.now())
    print(f"verify after the run: {report.summary()[:120]}")


if __name__ == "__main__":
    main()
