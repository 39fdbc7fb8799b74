"""docs/deployment.md can be followed as written (issue 13 item 5).

Who each test stands for:

- an operator who installs deploy/systemd/*.service: the units must parse, run the commands
  docker-compose.yml runs (gunicorn bound to loopback, never all interfaces), as a dedicated user with the
  hardening options, writable only where UAA writes (the audit witness), and name only settings UAA reads;
- an operator who runs ``docker-compose up``: the file validates, and only the proxy is published, so
  nobody reaches gunicorn's sync workers directly (slowloris) or sends it forwarded headers from outside;
- an operator restoring a backup: the restore drill of docs/deployment.md, performed here on PostgreSQL.
  A UAA that issued tokens and sealed its audit ledger is dumped with ``pg_dump``, restored into a fresh
  database, and ``manage.py audit verify`` passes against the restored one, pinned to the audit keys and the
  tree head saved before the dump; a record changed in the restored copy fails the same command, so the
  drill is not a check that cannot fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.uaa.live import (
    BIN,
    COMPOSE,
    ROOT,
    base_env,
    call,
    compose_command,
    create_service_client,
    free_port,
    healthy,
    manage,
    processes,
    start,
    wait_for,
)
from tests.uaa.test_configuration_table import read_by_code

__all__ = ["processes"]  # a fixture

UNITS = ROOT / "deploy" / "systemd"
UNIT_NAMES = ("uaa-web.service", "uaa-worker.service", "uaa-beat.service")
ENV_EXAMPLE = UNITS / "uaa.env.example"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
RELEASE = "/opt/uaa"  # where the units expect the release (and its .venv)


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys such as ExecStartPre repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
            assert not re.search(r"[\s'\"$`\\]", value), f"not readable alike by systemd and sh: {line}"
            pairs[key] = value
    return pairs


def local(command: str) -> list[str]:
    """An ExecStart line as argv for this checkout: the release directory is the source tree."""
    return [part.replace(RELEASE, str(ROOT)) for part in shlex.split(command)]


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """systemd's ``${NAME}``: the variable's value as one argument."""
    return [re.sub(r"\$\{([A-Z_]+)\}", lambda m: env.get(m.group(1), ""), part) for part in argv]


# --- the unit files ------------------------------------------------------------------------------------


def test_the_units_verify() -> None:
    """systemd's own parser (with the release directory pointed at this checkout, so that the executables
    it checks exist); a structural check where systemd-analyze is not installed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        for name in UNIT_NAMES:
            sections = unit(name)
            assert {"Unit", "Service", "Install"} <= sections.keys(), name
            for command in sections["Service"]["ExecStart"] + sections["Service"].get("ExecStartPre", []):
                assert Path(local(command)[0]).is_file(), command
        return
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"uaa-units-{os.getpid()}"
    work.mkdir(exist_ok=True)
    try:
        for name in UNIT_NAMES:
            (work / name).write_text((UNITS / name).read_text().replace(RELEASE, str(ROOT)))
        result = subprocess.run(
            [analyze, "verify", "--man=no", *(str(work / name) for name in UNIT_NAMES)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(work)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # The same parser refuses a broken unit: the check can fail.
    broken = work.with_name(work.name + "-broken")
    broken.mkdir(exist_ok=True)
    try:
        (broken / "uaa-web.service").write_text(
            (UNITS / "uaa-web.service").read_text().replace(RELEASE, "/nonexistent")
        )
        bad = subprocess.run(
            [analyze, "verify", "--man=no", str(broken / "uaa-web.service")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(broken)
    assert bad.returncode != 0 and "not executable" in bad.stderr


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_each_unit_runs_as_a_dedicated_user_with_hardening(name: str) -> None:
    service = unit(name)["Service"]
    assert service["User"] == ["uaa"] and service["Group"] == ["uaa"]
    assert service["EnvironmentFile"] == ["/etc/uaa/env"]
    assert service["WorkingDirectory"] == [RELEASE]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == [value], (name, key)
    # What UAA writes, and nothing else: the witness (the sealer: web for Seal now and manage.py, worker).
    writable = [Path(p) for line in service["ReadWritePaths"] for p in line.split()]
    witness = Path(env_example()["UAA_AUDIT_WITNESS"])
    assert any(witness.is_relative_to(path) for path in writable), (writable, witness)
    assert all(path.is_relative_to("/var/lib/uaa") for path in writable), writable
    assert all(
        f"/var/lib/{d}".startswith("/var/lib/uaa") for s in service["StateDirectory"] for d in s.split()
    )


def test_the_web_unit_runs_the_compose_command_on_loopback() -> None:
    """The gunicorn command of docker-compose.yml's web service, word for word, except where it listens
    (127.0.0.1, never all interfaces) and the venv's absolute path; migrate and bootstrap before it."""
    service = unit("uaa-web.service")["Service"]
    assert service["ExecStartPre"] == [
        f"{RELEASE}/.venv/bin/python manage.py migrate --noinput",
        f"{RELEASE}/.venv/bin/python manage.py bootstrap --no-admin",
    ]
    (exec_start,) = service["ExecStart"]
    _, _, script = compose_command("web")
    compose_gunicorn = shlex.split(script.split("exec ", 1)[1])
    unit_gunicorn = shlex.split(exec_start)
    assert unit_gunicorn[0] == f"{RELEASE}/.venv/bin/gunicorn"
    expected = [
        "127.0.0.1:8000"
        if word == "0.0.0.0:8000"
        else "${UAA_TRUSTED_PROXIES}"
        if "UAA_TRUSTED" in word
        else word
        for word in compose_gunicorn[1:]
    ]
    assert unit_gunicorn[1:] == expected
    assert "0.0.0.0" not in exec_start and "[::]" not in exec_start


def test_the_beat_unit_runs_the_compose_command() -> None:
    (exec_start,) = unit("uaa-beat.service")["Service"]["ExecStart"]
    assert shlex.split(exec_start) == [f"{RELEASE}/.venv/bin/celery", *compose_command("beat")[1:]]


def test_the_worker_unit_runs_the_compose_command_and_keeps_its_metrics_where_web_reads_them() -> None:
    """The compose worker's ``sh -c "rm -f <its metrics directory>/*.db && exec celery ..."``: the removal is
    the unit's ExecStartPre, the celery command its ExecStart word for word; the directory is the worker's
    PROMETHEUS_MULTIPROC_DIR in both, and what web merges into /metrics (UAA_METRICS_EXTRA_DIRS) in both."""
    service = unit("uaa-worker.service")["Service"]
    shell, flag, script = compose_command("worker")
    assert [shell, flag] == ["sh", "-c"]
    removal, _, celery = script.partition(" && exec ")
    assert service["ExecStartPre"] == [f"/bin/sh -c '{removal}'"]
    (exec_start,) = service["ExecStart"]
    assert shlex.split(exec_start) == [f"{RELEASE}/.venv/bin/celery", *shlex.split(celery)[1:]]
    compose = COMPOSE["services"]
    directory = compose["worker"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert service["Environment"] == [f"PROMETHEUS_MULTIPROC_DIR={directory}"]
    assert shlex.split(removal) == ["rm", "-f", f"{directory}/*.db"]
    assert env_example()["UAA_METRICS_EXTRA_DIRS"] == directory
    assert compose["web"]["environment"]["UAA_METRICS_EXTRA_DIRS"] == directory
    # gunicorn empties its own directory at start: web's must never be the worker's.
    assert "PROMETHEUS_MULTIPROC_DIR" not in env_example()
    assert "PROMETHEUS_MULTIPROC_DIR" not in compose["web"]["environment"]
    assert not [
        line for line in unit("uaa-web.service")["Service"].get("Environment", []) if "PROMETHEUS" in line
    ]
    # docker-compose: one volume, written by the worker, read by web.
    (volume,) = [v.split(":")[0] for v in compose["worker"]["volumes"] if v.split(":")[1] == directory]
    assert f"{volume}:{directory}" in compose["worker"]["volumes"]
    assert f"{volume}:{directory}:ro" in compose["web"]["volumes"]
    assert volume in COMPOSE["volumes"]
    assert not [name for name, s in compose.items() if name not in {"web", "worker"} and volume in str(s)]


def test_every_manage_command_the_units_and_the_doc_run_exists() -> None:
    """``manage.py X`` in the units and in docs/deployment.md's code blocks: X is a command here."""
    listed = subprocess.run(
        [str(BIN / "python"), "manage.py", "help", "--commands"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert "bootstrap" in listed and "audit" in listed
    text = "\n".join(
        [line for name in UNIT_NAMES for line in (UNITS / name).read_text().splitlines()]
        + re.findall(r"```sh\n(.*?)```", DEPLOYMENT.read_text(), flags=re.S)
    )
    code = "\n".join(re.sub(r"(^|\s)#.*", "", line) for line in text.splitlines())  # not comments
    named = set(re.findall(r"(?:manage\.py|uaa-manage) ([a-z_]+)", code))
    assert named >= {"migrate", "bootstrap", "collectstatic", "audit"}, named
    assert named <= set(listed), named - set(listed)


def test_the_units_and_the_environment_file_name_only_settings_uaa_reads() -> None:
    """A variable nothing reads is a setting the operator believes in while it does nothing."""
    named = set(env_example())
    for name in UNIT_NAMES:
        named |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", (UNITS / name).read_text())) - {"MAINPID"}
        named |= {line.split("=", 1)[0] for line in unit(name)["Service"].get("Environment", [])}
    assert named <= read_by_code(), named - read_by_code()
    assert env_example()["UAA_TRUSTED_PROXIES"] == "127.0.0.1"


def test_the_manage_wrapper_reads_the_environment_file(tmp_path: Path) -> None:
    """deploy/systemd/uaa-manage runs manage.py with the units' environment file (here as this user)."""
    env_file = tmp_path / "env"
    env_file.write_text("DEBUG=1\nUAA_VAR_DIR=" + str(tmp_path) + "\nUAA_ISSUER=http://localhost:8123\n")
    result = subprocess.run(
        [
            str(UNITS / "uaa-manage"),
            "shell",
            "-c",
            "from django.conf import settings; print(settings.UAA_ISSUER)",
        ],
        env={
            "PATH": os.environ["PATH"],
            "UAA_ENV_FILE": str(env_file),
            "UAA_HOME": str(ROOT),
            "UAA_USER": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "http://localhost:8123"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_of_the_page_reaches_a_section() -> None:
    """The page links to operations.md and the others instead of repeating them: each link must land."""
    links = re.findall(r"\]\(([a-z-]+\.md)(?:#([a-z0-9-]+))?\)", DEPLOYMENT.read_text())
    assert len(links) > 15
    for page, anchor in links:
        target = ROOT / "docs" / page
        assert target.is_file(), page
        assert not anchor or anchor in _anchors(target), f"{page}#{anchor}"
    for path in re.findall(r"`((?:deploy|docs|tests)/[\w./-]+)`", DEPLOYMENT.read_text()):
        assert (ROOT / path.split("::")[0]).exists(), path


# --- docker-compose ------------------------------------------------------------------------------------


def test_compose_publishes_only_the_proxy_and_trusts_only_its_network(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    env = {
        "PATH": os.environ["PATH"],
        "SECRET_KEY": "s" * 50,
        "UAA_KEK": "k",
        "UAA_ISSUER": "https://id.example.com",
        "POSTGRES_PASSWORD": "p",
        "UAA_SERVER_NAME": "id.example.com",
    }
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}, published
    assert services["web"].get("expose") == ["8000"]
    backend = config["networks"]["backend"]
    assert backend["internal"] is True
    # The only network of web that is not internal is egress, where only web is (outbound jwks_uri fetches).
    assert [n for n, s in services.items() if "egress" in s["networks"]] == ["web"]
    subnet = backend["ipam"]["config"][0]["subnet"]
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["UAA_TRUSTED_PROXIES"] == subnet
    assert "proxy" in services and "backend" in services["proxy"]["networks"]
    # Without a required secret the file refuses to render (so `up` refuses to start).
    missing = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        env={k: v for k, v in env.items() if k != "UAA_KEK"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "UAA_KEK" in missing.stderr


# --- the units, run ------------------------------------------------------------------------------------


def _unit_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "UAA_TRUSTED_PROXIES": "127.0.0.1"}


def _run_web_unit(env: dict[str, str], started: list[subprocess.Popen[bytes]], log: Path) -> str:
    """ExecStartPre, then ExecStart of uaa-web.service, on a free loopback port with two workers."""
    service = unit("uaa-web.service")["Service"]
    for command in service["ExecStartPre"]:
        subprocess.run(
            expand(local(command), env), cwd=ROOT, env=env, check=True, capture_output=True, timeout=120
        )
    port = free_port()
    (exec_start,) = service["ExecStart"]
    argv = expand(local(exec_start), env)
    argv[argv.index("127.0.0.1:8000")] = f"127.0.0.1:{port}"
    argv[argv.index("--workers") + 1] = "2"
    started.append(start(argv, env, log))
    base = f"http://127.0.0.1:{port}"
    wait_for(healthy(base), "the web unit's gunicorn", log)
    return base


@pytest.mark.parametrize("service,ready", [("worker", "ready."), ("beat", "beat: Starting...")])
def test_the_celery_units_start(
    service: str, ready: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    env = _unit_env(base_env(tmp_path))
    manage(env, "migrate", "--noinput")
    unit_service = unit(f"uaa-{service}.service")["Service"]
    state = tmp_path / "state"  # the unit's /var/lib/uaa
    for directory in unit_service["StateDirectory"][0].split():
        (state / directory.removeprefix("uaa").lstrip("/")).mkdir(parents=True, exist_ok=True)
    for line in unit_service.get("Environment", []):
        key, _, value = line.partition("=")
        env[key] = value.replace("/var/lib/uaa", str(state))
    for command in unit_service.get("ExecStartPre", []):
        argv = [part.replace("/var/lib/uaa", str(state)) for part in shlex.split(command)]
        subprocess.run(argv, env=env, cwd=ROOT, check=True, timeout=60)
    (exec_start,) = unit_service["ExecStart"]
    log = tmp_path / f"{service}.log"
    processes.append(start(local(exec_start), env, log))
    wait_for(lambda: ready in log.read_text(errors="replace"), f"celery {service}", log)
    if "PROMETHEUS_MULTIPROC_DIR" in env:  # the worker: its metrics land where web's /metrics reads them
        assert Path(env["PROMETHEUS_MULTIPROC_DIR"]).is_dir()
        assert env_example()["UAA_METRICS_EXTRA_DIRS"] == unit_service["Environment"][0].split("=", 1)[1]


# The units' ProtectSystem=strict + ReadWritePaths=/var/lib/uaa + PrivateTmp, without systemd: a mount
# namespace in which every mount is read-only except the state directory (bound at /mnt, standing for
# /var/lib/uaa) and a fresh tmpfs on /tmp.
SANDBOX = """set -e
state=$1; keep=$2; shift 2
mount --bind "$state" /mnt
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case $m in /mnt|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
if [ -n "$keep" ]; then mkdir -p /mnt/.tmp && mount --bind /tmp /mnt/.tmp; fi
mount -t tmpfs tmpfs /tmp
for p in $keep; do
  mkdir -p "$p" && mount --bind "/mnt/.tmp/${p#/tmp/}" "$p" && mount -o remount,bind,ro "$p"
done
exec "$@"
"""


def _kept_under_tmp() -> str:
    """The checkout and its virtualenv, where they live under /tmp (a CI clone): PrivateTmp's empty /tmp
    would hide them, so the sandbox binds them back, read-only."""
    paths = {ROOT.resolve(), Path(sys.prefix).resolve()}
    under = sorted(str(p) for p in paths if p.is_relative_to("/tmp"))
    return " ".join(p for p in under if not any(p != q and p.startswith(q + "/") for q in under))


def sandboxed(state: Path, argv: list[str]) -> list[str]:
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        SANDBOX,
        "sandbox",
        str(state),
        _kept_under_tmp(),
        *argv,
    ]


def _sandbox_works(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        sandboxed(tmp_path, ["sh", "-c", f"touch /mnt/ok && ! touch {ROOT}/.sandbox-probe 2>/dev/null"]),
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0 and (tmp_path / "ok").exists()


def test_the_web_unit_writes_only_where_its_unit_lets_it(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """The web unit's commands (migrate, bootstrap, gunicorn) issue a token and seal the ledger on a file
    system that is read-only except /var/lib/uaa and a private /tmp, as the hardening makes it; a witness
    outside /var/lib/uaa cannot be written there, so the sandbox is real."""
    state = tmp_path / "state"
    state.mkdir()
    if not _sandbox_works(state):
        pytest.skip("needs unshare and mount namespaces (root) to emulate ProtectSystem=strict")
    (state / "ok").unlink()
    for directory in ("witness", "var/broker/processed"):
        (state / directory).mkdir(parents=True)
    env = _unit_env(base_env(tmp_path))
    env.update(
        DATABASE_URL="sqlite:////mnt/uaa.sqlite3",
        UAA_VAR_DIR="/mnt/var",
        UAA_AUDIT_WITNESS="/mnt/witness/audit-witness.json",
    )
    service = unit("uaa-web.service")["Service"]
    for command in service["ExecStartPre"]:
        done = subprocess.run(
            sandboxed(state, expand(local(command), env)), cwd=ROOT, env=env, capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
    port = free_port()
    (exec_start,) = service["ExecStart"]
    argv = expand(local(exec_start), env)
    argv[argv.index("127.0.0.1:8000")] = f"127.0.0.1:{port}"
    argv[argv.index("--workers") + 1] = "2"
    log = tmp_path / "web.log"
    processes.append(start(sandboxed(state, argv), env, log))
    base = f"http://127.0.0.1:{port}"
    wait_for(healthy(base), "the sandboxed web unit", log)
    client = create_service_client({**env, "DATABASE_URL": f"sqlite:///{state / 'uaa.sqlite3'}"})
    answer = call(f"{base}/oauth/token", data={"grant_type": "client_credentials", **client})
    assert answer.status == 200, answer.body
    audit = [str(BIN / "python"), "manage.py", "audit"]
    sealed = subprocess.run(
        sandboxed(state, [*audit, "seal"]), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    assert json.loads((state / "witness" / "audit-witness.json").read_text())["tree_size"] > 0
    # The same seal with the witness outside /var/lib/uaa: refused by the file system, nothing signed.
    elsewhere = {**env, "UAA_AUDIT_WITNESS": f"{ROOT}/var/elsewhere-witness.json"}
    answer = call(f"{base}/oauth/token", data={"grant_type": "client_credentials", **client})
    refused = subprocess.run(
        sandboxed(state, [*audit, "seal"]), cwd=ROOT, env=elsewhere, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr, refused.stderr
    assert not (ROOT / "var" / "elsewhere-witness.json").exists()


# --- the restore drill ---------------------------------------------------------------------------------


def _postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip(
            "the restore drill dumps and restores a PostgreSQL database with pg_dump/pg_restore: "
            "run with DATABASE_URL=postgres://... (SQLite backups are sqlite3 .backup, docs/operations.md)"
        )
    if not (shutil.which("pg_dump") and shutil.which("pg_restore") and shutil.which("psql")):
        pytest.skip("pg_dump, pg_restore and psql are needed (Debian: postgresql-client)")
    return url


def _database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _psql(url: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


@pytest.fixture
def drill_databases() -> Iterator[tuple[str, str]]:
    """Two databases of the drill's own (deploy_drill_*), created empty and dropped afterwards."""
    url = _postgres_url()
    admin = _database(url, "postgres")
    names = (f"deploy_drill_source_{os.getpid()}", f"deploy_drill_restored_{os.getpid()}")
    for name in names:
        _psql(admin, f'DROP DATABASE IF EXISTS "{name}"')
    _psql(admin, f'CREATE DATABASE "{names[0]}"')
    try:
        yield _database(url, names[0]), _database(url, names[1])
    finally:
        for name in names:
            _psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _audit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "python"), "manage.py", "audit", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.postgres
def test_restore_drill(
    tmp_path: Path, drill_databases: tuple[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    source, restored = drill_databases
    env = _unit_env(base_env(tmp_path))
    env["DATABASE_URL"] = source
    env["UAA_AUDIT_WITNESS"] = str(tmp_path / "witness" / "audit-witness.json")
    (tmp_path / "witness").mkdir()

    # A UAA as the web unit starts it, its first admin created non-interactively, issuing tokens.
    base = _run_web_unit(env, processes, tmp_path / "web.log")
    admin = manage(env, "bootstrap", "--admin-email", "admin@drill.example")
    password = re.search(r"password:\s+(\S+)", admin)
    assert password and "admin user: admin@drill.example" in admin, admin
    client = create_service_client(env)
    for _ in range(5):
        answer = call(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials", **client},
        )
        assert answer.status == 200, answer.body
    keys = call(f"{base}/.well-known/audit-keys.json")
    assert keys.status == 200
    (tmp_path / "audit-keys.json").write_bytes(keys.body)

    # Seal, and save the head and the keys outside the database (what an auditor keeps).
    sealed = _audit(env, "seal")
    assert sealed.returncode == 0, sealed.stderr
    head = _audit(env, "head")
    assert head.returncode == 0, head.stderr
    (tmp_path / "head.json").write_text(head.stdout)
    tree_size = json.loads(head.stdout)["tree_size"]
    tokens = _psql(source, "SELECT count(*) FROM oauth2_provider_accesstoken")
    records = _psql(source, "SELECT count(*) FROM tokens_ledgerrecord")
    assert int(tokens) == 5 and int(records) >= tree_size > 0

    # The witness copied before the dump: never ahead of what the dump holds (the live one moves on).
    drill_witness = tmp_path / "drill-witness.json"
    shutil.copyfile(env["UAA_AUDIT_WITNESS"], drill_witness)

    # The backup: pg_dump's custom format, as docs/deployment.md says.
    dump = tmp_path / "uaa.dump"
    began = time.monotonic()
    subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", source], check=True, timeout=300
    )
    dumped = time.monotonic() - began
    # Production goes on after the backup: another token, sealed.
    assert call(f"{base}/oauth/token", data={"grant_type": "client_credentials", **client}).status == 200
    assert _audit(env, "seal").returncode == 0

    # The restore: a fresh database, then the same server processes pointed at it.
    admin_url = _database(source, "postgres")
    _psql(admin_url, f'CREATE DATABASE "{urlsplit(restored).path[1:]}"')
    began = time.monotonic()
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored}", str(dump)],
        check=True,
        timeout=300,
    )
    restore_seconds = time.monotonic() - began
    env_restored = {**env, "DATABASE_URL": restored, "UAA_AUDIT_WITNESS": str(drill_witness)}
    verify_args = (
        "verify",
        "--keys",
        str(tmp_path / "audit-keys.json"),
        "--trusted-head",
        str(tmp_path / "head.json"),
    )
    began = time.monotonic()
    verified = _audit(env_restored, *verify_args, "--no-seal")
    verify_seconds = time.monotonic() - began
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert _psql(restored, "SELECT count(*) FROM oauth2_provider_accesstoken") == tokens
    assert _psql(restored, "SELECT count(*) FROM tokens_ledgerrecord") == records
    # The restored database's signing keys decrypt with the KEK, and migrations are all applied.
    assert "stored signing keys readable with UAA_KEK" in manage(env_restored, "bootstrap", "--no-admin")
    assert "[ ]" not in manage(env_restored, "showmigrations", "--list")
    # Against the live witness, which remembers a head the backup lacks, the same verify fails: that is what
    # a restore of an older backup looks like to the sealer (docs/operations.md#backups).
    live = _audit({**env_restored, "UAA_AUDIT_WITNESS": env["UAA_AUDIT_WITNESS"]}, *verify_args, "--no-seal")
    assert live.returncode != 0 and "witness" in live.stdout + live.stderr, live.stdout
    # And a sealer goes on from the restored database with the witness copied before the dump.
    assert _audit(env_restored, "seal", "--force").returncode == 0
    assert _audit(env_restored, *verify_args).returncode == 0

    print(
        f"\nrestore drill: {tokens} tokens, {records} ledger records, tree size {tree_size}; "
        f"dump {dump.stat().st_size} bytes in {dumped:.2f} s, restore {restore_seconds:.2f} s, "
        f"audit verify {verify_seconds:.2f} s: {verified.stdout.strip().splitlines()[-1]!r}"
    )

    # The restored ledger is still append-only (its trigger came back with the dump) ...
    tamper = (
        "UPDATE tokens_ledgerrecord SET event = 'tampered',"
        ' body = regexp_replace(body, \'"event":"[^"]*"\', \'"event":"tampered"\')'
        " WHERE id = (SELECT min(id) FROM tokens_ledgerrecord WHERE leaf_index = 0)"
    )
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _psql(restored, tamper)
    assert "append-only" in str(refused.value.stderr)
    # ... and the same verify fails on a copy whose owner switched the trigger off and changed a record: the
    # drill can fail.
    _psql(
        restored,
        "ALTER TABLE tokens_ledgerrecord DISABLE TRIGGER tokens_ledgerrecord_append_only; " + tamper,
    )
    tampered = _audit(env_restored, *verify_args, "--no-seal")
    assert tampered.returncode != 0, tampered.stdout
