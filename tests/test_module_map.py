"""docs/architecture.md's module map and the tree agree: every module of uaa/, accounts/ and tokens/ (but
migrations and empty package files) has its line, and every line names a module that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("uaa", "accounts", "tokens")


def mapped_modules() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines() if re.match(r"\s*[a-z]", line)]


def tree_modules() -> set[str]:
    found = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts:
                continue
            if path.name == "__init__.py" and not path.read_text().strip():
                continue
            found.add(relative.as_posix())
    return found


def test_every_module_has_its_line_in_the_map():
    listed = set(mapped_modules())
    package_docs = {m for m in tree_modules() if m.endswith("__init__.py")}
    assert sorted(tree_modules() - listed - package_docs) == []


def test_every_line_of_the_map_names_a_module_that_exists():
    assert [m for m in mapped_modules() if not (ROOT / m).is_file()] == []


def test_no_module_is_listed_twice():
    modules = mapped_modules()
    assert len(modules) == len(set(modules))
