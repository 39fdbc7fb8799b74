"""Every environment variable the code reads is a row of docs/operations.md's configuration tables, and
every row names a variable the code reads (issue 13 item 5).

Who this guards against: an operator who configures UAA from the table alone. A variable the code reads
that the table lacks is a setting they cannot know about (a default they never chose); a row that nothing
reads is a setting they set and believe in while it does nothing. Both directions fail here.

The readers are found, not listed: uaa/settings.py's ``env(...)``/``env.<cast>(...)`` calls (parsed with
``ast``, so a new setting is picked up the day it is added), and every module of the three apps that reads
``os.environ``/``os.getenv`` directly (also parsed, so a new direct read is caught too). The Dockerfile's
command reads ``UAA_BIND`` itself (a shell expansion), and that is a reader as well.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "uaa" / "settings.py"
OPERATIONS = ROOT / "docs" / "operations.md"
APPS = ("uaa", "accounts", "tokens")
ENV_METHODS = frozenset(
    {
        "str",
        "int",
        "bool",
        "float",
        "list",
        "tuple",
        "dict",
        "json",
        "url",
        "db",
        "db_url",
        "cache",
        "cache_url",
        "email",
        "email_url",
        "search_url",
        "path",
        "parse_value",
        "get_value",
    }
)
# Variables a process sets for itself and that are no setting of the operator's: Django's own module name.
NOT_SETTINGS = frozenset({"DJANGO_SETTINGS_MODULE"})
VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _string(node: ast.AST | None, constants: dict[str, str] | None = None) -> str | None:
    """A variable name given as a literal, or as a module-level constant (``ENV = "NAME"``)."""
    if isinstance(node, ast.Name) and constants and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.match(node.value):
        return node.value
    return None


def _constants(tree: ast.AST) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and (value := _string(node.value)):
            found.update({target.id: value for target in node.targets if isinstance(target, ast.Name)})
    return found


def _environ_reads(tree: ast.AST) -> set[str]:
    """Names read through ``os.environ[...]``, ``os.environ.get/setdefault(...)``, ``"X" in os.environ``
    and ``os.getenv(...)``."""

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr in {"environ", "ENVIRON"}) or (
            isinstance(node, ast.Name) and node.id == "environ"
        )

    constants = _constants(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_environ(node.value):
            names.add(_string(node.slice, constants) or "")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if (is_environ(func.value) and func.attr in {"get", "setdefault", "pop"}) or (
                func.attr == "getenv"
            ):
                names.add((_string(node.args[0], constants) if node.args else None) or "")
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            names.add(_string(node.left, constants) or "")
    return names - {""}


def _removed_variables(tree: ast.AST) -> set[str]:
    """Keys of a module-level ``REMOVED_VARIABLES = {...}`` (uaa/checks.py: names refused at start-up)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "REMOVED_VARIABLES" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return {name for key in node.value.keys if (name := _string(key))}
    return set()


def settings_reads() -> set[str]:
    """Every ``env(NAME, ...)`` / ``env.<cast>(NAME, ...)`` call in uaa/settings.py, and ``"NAME" in
    env.ENVIRON``."""
    tree = ast.parse(SETTINGS.read_text(), filename=str(SETTINGS))
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        direct = isinstance(func, ast.Name) and func.id == "env"
        method = (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "env"
            and func.attr in ENV_METHODS
        )
        if (direct or method) and (name := _string(node.args[0])):
            names.add(name)
    return names | _environ_reads(tree)


def direct_reads() -> dict[str, set[str]]:
    """Modules of the three apps (and manage.py) reading the environment directly, with what they read."""
    found: dict[str, set[str]] = {}
    files = [ROOT / "manage.py", *(p for app in APPS for p in (ROOT / app).rglob("*.py"))]
    for path in files:
        if "migrations" in path.parts or path == SETTINGS:
            continue
        source = path.read_text()
        if "environ" not in source and "getenv" not in source:
            continue
        tree = ast.parse(source, filename=str(path))
        names = _environ_reads(tree) - NOT_SETTINGS
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def dockerfile_reads() -> set[str]:
    """``${NAME...}`` expansions in the Dockerfile's CMD (the image's own settings, such as ``UAA_BIND``)."""
    cmd = "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", cmd))


def documented() -> dict[str, int]:
    """The first column of every table under "## Configuration" whose header starts with ``variable``,
    with the line each row is on."""
    lines = OPERATIONS.read_text().splitlines()
    start = lines.index("## Configuration")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    rows: dict[str, int] = {}
    in_table = False
    for number, line in enumerate(lines[start:end], start=start + 1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == "variable":
            in_table = True
            continue
        if in_table and not set(cells[0]) <= set("-: "):
            match = re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cells[0])
            assert match, (
                f"docs/operations.md:{number}: a variable row must name one `VARIABLE`: {cells[0]!r}"
            )
            assert match.group(1) not in rows, f"docs/operations.md:{number}: {match.group(1)} twice"
            rows[match.group(1)] = number
    return rows


def removed_variables() -> set[str]:
    """Names uaa/checks.py refuses at start-up (``REMOVED_VARIABLES``): read, but only to refuse them."""
    return _removed_variables(ast.parse((ROOT / "uaa" / "checks.py").read_text()))


def read_by_code() -> set[str]:
    """What the code reads as a setting; a removed variable is read only to be refused, so it has no row."""
    reads = settings_reads() | set().union(*direct_reads().values()) | dockerfile_reads()
    return reads - removed_variables()


def test_the_extraction_finds_what_it_must() -> None:
    """The parser is not vacuous: it sees the settings of each kind of call and the direct readers."""
    reads = settings_reads()
    # env(), env.str, .bool, .int, .float, .list, .db, .cache, .dict, "..." in env.ENVIRON
    for name in (
        "SECRET_KEY",
        "UAA_VAR_DIR",
        "DEBUG",
        "CONN_MAX_AGE",
        "UAA_DB_STATEMENT_TIMEOUT",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "CACHE_URL",
        "UAA_EXTRA_SCOPES",
        "UAA_KEK_FILE",
        "REDIS_URL",
    ):
        assert name in reads, name
    assert len(reads) > 60
    assert "UAA_BEHIND_PROXY" in removed_variables()
    assert "UAA_PROCESS" in direct_reads()["uaa/wsgi.py"]
    assert "PROMETHEUS_MULTIPROC_DIR" in direct_reads()["uaa/gunicorn_config.py"]  # through ENV = "..."
    assert dockerfile_reads() >= {"UAA_BIND", "UAA_TRUSTED_PROXIES"}
    assert len(documented()) > 60


def test_every_variable_the_code_reads_is_in_the_table() -> None:
    missing = sorted(read_by_code() - documented().keys())
    assert not missing, f"read by the code, missing from docs/operations.md's configuration tables: {missing}"


def test_every_variable_in_the_table_is_read_by_the_code() -> None:
    reads = read_by_code()
    unread = {name: line for name, line in documented().items() if name not in reads}
    assert not unread, f"documented in docs/operations.md (line) but read by nothing: {unread}"


def test_every_removed_variable_is_named_with_its_check() -> None:
    """An operator still setting a removed variable finds it in the check table (``uaa.E006``), no row."""
    lines = OPERATIONS.read_text().splitlines()
    check_rows = [line for line in lines if line.startswith("| `uaa.E")]
    for name in removed_variables():
        assert name not in documented(), f"{name} is removed: no configuration row"
        assert any(f"`{name}`" in row for row in check_rows), f"{name}: not in the check table"
