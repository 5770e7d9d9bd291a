"""A standby stops on SIGTERM wherever the signal finds it, even inside a Lease request.

In a container the controller is PID 1, which ignores any signal it has no
handler for; the e2e test (test_high_availability.py) shows the standby
exits on SIGTERM. Here the signal lands while a Lease request is in flight,
inside the `except Exception` that logs a failed request and retries.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from controller.runtime import running


class _Elector:
    """acquire() as LeaderElector runs it: requests whose failures are logged and retried."""

    def __init__(self) -> None:
        self.swallowed = 0

    def acquire(self) -> bool:
        threading.Timer(0.2, os.kill, [os.getpid(), signal.SIGTERM]).start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)  # the Lease request in flight
            except Exception:  # a failed request: logged, then tried again
                self.swallowed += 1
        return True


@pytest.fixture
def _restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("_restore_handlers")
def test_sigterm_in_a_lease_request_stops_the_standby() -> None:
    elector = _Elector()
    began = time.monotonic()
    assert running._stand_by(elector) is False  # type: ignore[arg-type]
    assert time.monotonic() - began < 2 and elector.swallowed == 0


@pytest.mark.usefixtures("_restore_handlers")
def test_a_second_signal_does_not_cut_the_first_ones_cleanup_short() -> None:
    class Leads:
        def acquire(self) -> bool:
            return True

    assert running._stand_by(Leads()) is True  # type: ignore[arg-type]
    with pytest.raises(running._Stopping):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs here, in the main thread
    os.kill(os.getpid(), signal.SIGINT)  # during the cleanup: noted, not raised
    time.sleep(0.2)
