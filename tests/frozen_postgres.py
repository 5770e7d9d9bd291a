"""A real PostgreSQL backend frozen mid-query: the server took the statement and goes silent.

SIGSTOP on the backend serving one connection is what a hung server (or a
stuck proxy) looks like from the client: the socket stays open and its
kernel still acknowledges, so neither the server's statement_timeout nor TCP
ever ends the wait.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import psycopg


@contextlib.contextmanager
def frozen_backend(dsn: str, application_name: str, marker: str) -> Iterator[list[int]]:
    """Freeze the first backend of `application_name` seen running a statement naming
    `marker`; thaw (and end) it on exit."""
    frozen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set() and not frozen:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                    " AND state = 'active' AND strpos(query, %s) > 0",
                    [application_name, marker],
                ).fetchone()
                if row is not None:
                    os.kill(int(row[0]), signal.SIGSTOP)
                    frozen.append(int(row[0]))
                time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield frozen
    finally:
        stop.set()
        watcher.join(timeout=10)
        for pid in frozen:
            _thaw_and_end(dsn, pid)


@contextlib.contextmanager
def frozen_pid(dsn: str, pid: int) -> Iterator[None]:
    """Freeze one known backend (`conn.info.backend_pid`) between two statements."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        _thaw_and_end(dsn, pid)


def _thaw_and_end(dsn: str, pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])
