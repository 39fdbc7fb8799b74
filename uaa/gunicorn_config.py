"""gunicorn configuration for prometheus-client's multiprocess mode (``--config python:uaa.gunicorn_config``).

Every worker is a process of its own, so each writes its metrics into files of ``PROMETHEUS_MULTIPROC_DIR``
and /metrics merges them (uaa/metrics.py). Loaded by the master before any worker exists (and before
``--preload`` imports the app):

- ``PROMETHEUS_MULTIPROC_DIR`` unset: a new private directory is made and set for the workers (they
  inherit the environment), and removed when the master exits;
- set: the master empties it when it starts (an earlier run's counters would otherwise be added in), so it
  must be this deployment's own directory, never shared with another gunicorn;
- a worker that exits has its files marked dead (``mark_process_dead``; its counts stay in the sum).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"

_private: str | None = None
if not os.environ.get(ENV):
    _private = tempfile.mkdtemp(prefix="uaa-metrics-")
    os.environ[ENV] = _private


def on_starting(server: Any) -> None:
    path = Path(os.environ[ENV])
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _private:
        shutil.rmtree(_private, ignore_errors=True)
