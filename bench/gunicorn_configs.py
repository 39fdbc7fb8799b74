"""Which gunicorn configuration to run UAA with (issue 12 item 5): the candidates measured in one run.

Run:  .venv/bin/python bench/gunicorn_configs.py                 (3 interleaved rounds of 10 s, ~8 minutes)
      .venv/bin/python bench/gunicorn_configs.py --smoke         (1 round of 2 s: does each one start?)
      .venv/bin/python bench/gunicorn_configs.py --connections 32 (more clients than workers)

One UAA database (PostgreSQL, seeded as bench/run.py seeds it: migrate, bootstrap, one client_credentials
service), Redis as cache and broker where it answers, then one gunicorn per candidate on it, all started
before the first round and idle while another is measured (an idle sync worker costs nothing). Each
candidate is production's command line (uaa.gunicorn_config for the metrics' multiprocess mode, --timeout
30, no forwarder headers) with its own worker class, count, --preload and --max-requests. wrk drives the
token endpoint (client_credentials, the hottest path); the rounds interleave the candidates, in reverse
order every other round. Printed per candidate: req/s, p50, p99, CPU per token (master and workers,
also the workers --max-requests replaced during the run), and the memory of
master and workers together as PSS (/proc/<pid>/smaps_rollup: shared pages counted once, so --preload's
sharing shows) after the run. docs/performance.md "gunicorn" reads the result.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from run import (
    CLK_TCK,
    SERVICE,
    VENV,
    Bench,
    Postgres,
    Redis,
    Result,
    Server,
    Spec,
    basic,
    children,
    cpu_ticks,
    created_client,
    log,
    manage,
    median_result,
    stopped_on_signals,
    uaa_environment,
)

COMMON = ["--timeout", "30", "--graceful-timeout", "5", "--log-level", "warning", "--forwarder-headers="]
COMMON += ["--config", "python:uaa.gunicorn_config"]

CANDIDATES: dict[str, list[str]] = {
    "sync, 2 workers": ["--workers", "2", "--worker-class", "sync"],
    "sync, 3 workers": ["--workers", "3", "--worker-class", "sync"],
    "sync, 4 workers": ["--workers", "4", "--worker-class", "sync"],
    "sync, 5 workers (2n+1)": ["--workers", "5", "--worker-class", "sync"],
    "sync, 2 workers, --preload": ["--workers", "2", "--worker-class", "sync", "--preload"],
    "gthread, 2 workers x 4 threads": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
    "sync, 2 workers, max-requests 1000±100": [
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--max-requests",
        "1000",
        "--max-requests-jitter",
        "100",
    ],
    "sync, 2 workers, --preload, max-requests 1000±100": [
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--preload",
        "--max-requests",
        "1000",
        "--max-requests-jitter",
        "100",
    ],
}


def pss_kib(pid: int) -> int:
    """Proportional set size: a page shared by n processes counts 1/n in each (0 if it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def group_ticks(server: Server) -> int:
    """CPU ticks of master and workers, including workers that have exited since (a reaped child's time is
    in its parent's cutime/cstime): what --max-requests replaces is still counted."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total + sum(cpu_ticks(pid) for pid in children(server.process.pid))


def group_pss(server: Server) -> int:
    """Master and workers together, in KiB."""
    assert server.process is not None
    return sum(pss_kib(pid) for pid in [server.process.pid, *children(server.process.pid)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="one round of 2 s per candidate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--connections", type=int, default=8, help="wrk connections (default 8, as make bench)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 2.0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="uaa-bench-gunicorn-"))
    pg, redis = Postgres(), Redis()
    bench = Bench(args, work, pg)
    try:
        with stopped_on_signals():
            run(bench, args, work, pg, redis)
    finally:
        for server in bench.servers.values():
            server.stop()
        pg.drop_all()
        redis.release()
        shutil.rmtree(work, ignore_errors=True)


def run(bench: Bench, args: argparse.Namespace, work: Path, pg: Postgres, redis: Redis) -> None:
    database = pg.create(f"bench_gunicorn_{os.getpid()}")
    cache_url = redis.claim()
    # One issuer for every candidate: they share the database, as nodes behind one name would.
    env = uaa_environment(database, 80, work, cache_url) | {"UAA_ISSUER": "http://127.0.0.1"}
    manage(env, "migrate", "--noinput")
    manage(env, "bootstrap", "--no-admin")
    cc = created_client(env, *SERVICE)
    body = {"BENCH_METHOD": "POST", "BENCH_BODY": "grant_type=client_credentials"}
    auth = {"BENCH_AUTH": basic(cc["client_id"], cc["client_secret"])}
    specs: list[Spec] = []
    for index, (name, flags) in enumerate(CANDIDATES.items()):
        key = f"c{index}"
        metrics = work / f"metrics-{key}"
        metrics.mkdir()
        server_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        server = Server(key, VENV, "uaa.wsgi", server_env, database=database, flags=flags + COMMON)
        bench.servers[key] = server
        server.start(work)
        specs.append(Spec(key, key, "/oauth/token", {**body, **auth}, connections=args.connections))
        log(f"{key} = {name}: {' '.join(flags)}")
    for spec in specs:
        status = bench.status(spec)
        if status != 200:
            raise SystemExit(f"{spec.key}: token request answered {status}")
    if not args.smoke:
        log("warm-up: 2 s per candidate")
        for spec in specs:
            bench.wrk(spec, 2.0)
    collected: dict[str, list[Result]] = {spec.key: [] for spec in specs}
    memory: dict[str, list[int]] = {spec.key: [] for spec in specs}
    for round_ in range(args.rounds):
        order = specs if round_ % 2 == 0 else list(reversed(specs))
        for spec in order:
            before = group_ticks(bench.servers[spec.key])
            result, _ = bench.wrk(spec, args.seconds)
            ticks = group_ticks(bench.servers[spec.key]) - before
            result.cpu_ms = ticks * 1000 / CLK_TCK / max(result.requests, 1)
            collected[spec.key].append(result)
            memory[spec.key].append(group_pss(bench.servers[spec.key]))
            note = f"  ({result.errors} errors)" if result.errors else ""
            log(
                f"round {round_ + 1}/{args.rounds} {spec.key} {result.rps:8.1f} req/s"
                f"  p50 {result.p50_ms:7.2f}"
                f" ms  p99 {result.p99_ms:7.2f} ms  cpu {result.cpu_ms:5.2f} ms/req{note}"
            )
    results = {key: median_result(values) for key, values in collected.items()}
    base = results["c0"]
    print()
    print(
        f"token endpoint (client_credentials), wrk -t1 -c{args.connections}, median of {args.rounds} "
        f"interleaved round(s) of {args.seconds:.0f} s; memory: master + workers, PSS, the last round's"
    )
    print("| candidate | req/s | vs sync-2 | p50 ms | p99 ms | worker CPU/token | PSS MiB | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for index, name in enumerate(CANDIDATES):
        key = f"c{index}"
        r = results[key]
        errors = sum(one.errors for one in collected[key])
        print(
            f"| {name} | {r.rps:.1f} | {r.rps / base.rps:.2f}x | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.cpu_ms:.2f} ms | {memory[key][-1] / 1024:.0f} | {errors} |"
        )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    log(f"done in {time.monotonic() - started:.0f} s")
