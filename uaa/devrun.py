"""`make run`'s supervisor: the development web server and a Celery worker (with beat) started together,
stopped together.

Each child runs in its own session, so a Ctrl-C (SIGINT to the terminal's process group) or a SIGTERM reaches
this process only, once: it then sends SIGTERM to each child's whole group (runserver's autoreloader and its
server, the worker), waits up to ``GRACE`` seconds for a warm shutdown and kills what is left. When either
child ends by itself, the other is stopped the same way and its exit status is ours. A shell ``trap 'kill 0'``
did this before and re-entered itself (the kill reached the trapping shell), ending in a RecursionError and a
segmentation fault with runserver left running.

    python -m uaa.devrun HOST:PORT
"""

from __future__ import annotations

import os
import signal
import subprocess  # starts our own two commands  # nosec B404
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

GRACE = 10.0  # seconds for a warm shutdown before SIGKILL
POLL = 0.2


class _Stop(Exception):
    pass


def commands(address: str) -> list[list[str]]:
    """The worker (beat inside, solo pool: the embedded filesystem broker has one consumer) and runserver."""
    scripts = Path(sys.executable).parent
    return [
        [str(scripts / "celery"), "-A", "uaa", "worker", "--beat", "--pool=solo", "--loglevel=WARNING"],
        [sys.executable, "manage.py", "runserver", address],
    ]


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(child.pid, signum)  # start_new_session: the group id is the child's pid
    except ProcessLookupError:
        pass


def stop(children: Sequence[subprocess.Popen[bytes]], *, grace: float = GRACE) -> None:
    """SIGTERM each running child's group, wait up to ``grace`` seconds in all, then SIGKILL the rest."""
    for child in children:
        if child.poll() is None:
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()
        _signal_group(child, signal.SIGKILL)  # what the child left in its group (a reloader's server)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(each, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the shutdown
    raise _Stop


def run(argv: Sequence[str]) -> int:
    """Start both children; return when either ends (its status) or on SIGINT/SIGTERM/SIGHUP (0)."""
    if len(argv) != 1:
        print("usage: python -m uaa.devrun HOST:PORT", file=sys.stderr)
        return 2
    for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(each, _raise_stop)
    children: list[subprocess.Popen[bytes]] = []
    status = 0
    try:
        for command in commands(argv[0]):
            children.append(subprocess.Popen(command, start_new_session=True))  # noqa: S603 - our own argv  # nosec B603
        while True:
            ended = [child for child in children if child.poll() is not None]
            if ended:
                status = ended[0].returncode
                name = Path(str(commands(argv[0])[children.index(ended[0])][0])).name
                print(f"uaa.devrun: {name} ended ({status}); stopping the rest", file=sys.stderr)
                break
            time.sleep(POLL)
    except _Stop:
        status = 0
    finally:
        for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(each, signal.SIG_IGN)
        stop(children)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
