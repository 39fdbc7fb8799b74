"""README's first command, `make run`, ends cleanly on Ctrl-C and leaves no process behind.

A terminal's Ctrl-C is SIGINT to its foreground process group: the test starts make as the leader of a new
group and signals the whole group, as the terminal would. Before uaa/devrun.py, the recipe's
``trap 'kill 0'`` re-entered itself: a RecursionError, a segmentation fault, runserver still serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.uaa.live import ROOT, call, free_port, wait_for

FAILURES = ("Traceback", "RecursionError", "Segmentation fault", "Error 1", "Error 2")


def _descendants(pid: int) -> set[int]:
    """Every living process whose parent chain leads to ``pid`` (the children start sessions of their own)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _make_run(tmp_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    stamps = sorted(Path(sys.prefix).glob(".installed-*"))
    if not stamps:
        pytest.skip("the suite is not running in a virtualenv made by `make install`")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "CELERY_", "REDIS_URL", "UAA_", "DEBUG", "CACHE_URL"))
    }
    env["UAA_VAR_DIR"] = str(tmp_path / "var")  # the embedded defaults, away from the checkout's var/
    command = ["make", "--no-print-directory", f"VENV={sys.prefix}", f"PORT={port}", "HOST=127.0.0.1"]
    command += [f"--old-file={stamp}" for stamp in stamps]  # never reinstall from inside the suite
    return [*command, "run"], env


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_on_make_run_stops_the_server_and_the_worker_cleanly(tmp_path: Path) -> None:
    port = free_port()
    command, env = _make_run(tmp_path, port)
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: _serving(port), "make run to serve /healthz", log, timeout=120)
        wait_for(lambda: "ready." in log.read_text() or "celery@" in log.read_text(), "the worker", log)
        started = _descendants(make.pid)
        assert any("runserver" in _cmdline(pid) for pid in started), log.read_text()
        assert any("celery" in _cmdline(pid) for pid in started), log.read_text()

        os.killpg(make.pid, signal.SIGINT)  # the terminal's Ctrl-C
        status = make.wait(timeout=30)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    output = log.read_text()
    left = [pid for pid in started if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after Ctrl-C: {[_cmdline(pid) for pid in left]}\n{output}"
    assert not [line for line in output.splitlines() if any(word in line for word in FAILURES)], output
    # make reports the interrupt of its recipe (status 2 from "Interrupt", or the signal itself): not a crash
    assert status in (0, 2, 130, -signal.SIGINT), (status, output)
    assert not _serving(port)


def _serving(port: int) -> bool:
    try:
        return call(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
