"""What /healthz and /readyz answer, for a leader, a standby, or a single replica.

Liveness asks "would a restart help?": yes if kopf's event loop stops
answering, or if the leader-election loop has stalled. An unreachable
apiserver is *not* a liveness failure: restarting would not bring it back.

Readiness asks "is this replica doing its job?". A standby's job is to stand
by, so it is Ready while it can reach the apiserver to watch the Lease. This
matters: with maxUnavailable 0 a rolling update waits for the new pod to be
Ready, and a PodDisruptionBudget counts Ready pods, so a never-Ready standby
would stall upgrades and block node drains. Who leads is published on
`canary_controller_leader` and in the /readyz body, not in readiness.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

from controller.runtime.leader import LeaderElector

LOOP_PING_TIMEOUT_S = 3.0  # below the chart probe timeout (5s)


async def _pong() -> None:
    return None


class Health:
    def __init__(
        self, elector: LeaderElector | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.elector = elector
        self.kopf_ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._clock = clock

    def _loop_answers(self) -> bool:
        loop = self.loop
        if loop is None or not loop.is_running():
            return True  # not started yet (standby) or already stopping
        future = asyncio.run_coroutine_threadsafe(_pong(), loop)
        try:
            future.result(timeout=LOOP_PING_TIMEOUT_S)
        except FutureTimeout:
            future.cancel()
            return False
        return True

    def liveness(self) -> tuple[bool, str]:
        elector = self.elector
        if elector is not None and elector.last_attempt is not None:
            timing = elector.timing
            stalled_after = timing.lease_duration + 2 * timing.request_timeout
            if self._clock() - elector.last_attempt > stalled_after:
                return False, "leader election loop stalled"
        if not self._loop_answers():
            return False, f"kopf event loop did not answer within {LOOP_PING_TIMEOUT_S}s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        elector = self.elector
        if elector is not None and not elector.is_leader:
            seen = elector.last_contact
            if seen is None or self._clock() - seen > elector.timing.lease_duration:
                return False, "standby: cannot reach the apiserver to watch the lease"
            return True, f"standby: leader is {elector.holder or 'nobody (lease free)'}"
        if not self.kopf_ready.is_set():
            return False, "starting: kopf has not finished its startup"
        return True, "leader" if elector is not None else "running (leader election disabled)"
