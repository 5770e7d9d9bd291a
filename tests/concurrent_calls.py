"""Many threads sharing one HTTP client, as the controller's workers do."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest


def dropped_connections(
    call: Callable[[], object], threads: int, caplog: pytest.LogCaptureFixture, rounds: int = 5
) -> list[str]:
    """`threads` threads make `call` together (`rounds` times); urllib3's "pool is full" warnings.

    Each warning is a connection opened for one request and then dropped:
    with a pool smaller than the threads, a new TCP (and TLS) handshake per request.
    """
    barrier = threading.Barrier(threads)

    def run() -> None:
        for _ in range(rounds):
            barrier.wait()
            call()

    with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
        workers = [threading.Thread(target=run) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    return [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]
