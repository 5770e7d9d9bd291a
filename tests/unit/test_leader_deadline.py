"""The leader stops acting before a standby may take its Lease, even when a renewal hangs.

The real apiserver cannot be made to store a write and then go silent on cue,
so this stands in for it: the one renewal it stores is answered slowly, and
every request after it hangs until its timeout. Timings are the defaults
(15/10/2 s) divided by five: at a tenth, a busy two-core machine's thread
scheduling alone could eat the margins.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.runtime.leader import LeaderElector, LeaseTiming

TIMING = LeaseTiming(lease_duration=3.0, renew_deadline=2.0, retry_period=0.4)
SCALE = 5


def _leading(leases: object) -> LeaderElector:
    """An elector whose Lease requests go to `leases`, holding the Lease."""
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    elector = LeaderElector(api, "ns", "l", "me", TIMING)
    elector._leases = leases  # type: ignore[assignment]
    assert elector.try_acquire_or_renew()
    return elector


class StoresThenHangs:
    def __init__(self) -> None:
        self.version = 1
        self.written_at: float | None = None
        self.hung = False

    def get_namespaced_custom_object(self, *_: Any, _request_timeout: float) -> dict[str, Any]:
        if self.hung:
            time.sleep(_request_timeout)
            raise ApiException(status=0, reason="timed out")
        spec = {"holderIdentity": "me", "leaseDurationSeconds": 3}
        return {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}

    def replace_namespaced_custom_object(self, *_: Any, _request_timeout: float) -> None:
        self.version += 1
        self.written_at = time.monotonic()  # a standby can see this renewal from now on
        self.hung = True
        time.sleep(_request_timeout * 0.95)  # and its answer is slow


def test_a_hung_renewal_does_not_keep_the_leader_acting_past_the_lease() -> None:
    leases = StoresThenHangs()
    elector = _leading(leases)
    lost_at: list[float] = []
    lost = threading.Event()
    elector.start_renewing(lambda: (lost_at.append(time.monotonic()), lost.set()))
    try:
        assert lost.wait(20)
    finally:
        elector.stop()
    assert leases.written_at is not None and elector.is_leader is False
    # a standby that saw the stored renewal at once may lead lease_duration later
    assert lost_at[0] - leases.written_at < TIMING.lease_duration


class OneTimeout:
    """Renewals take 2.25 s (at full scale), longer than the retry period; one read
    between two of them times out."""

    def __init__(self) -> None:
        self.version, self.reads = 1, 0

    def get_namespaced_custom_object(self, *_: Any, _request_timeout: float) -> dict[str, Any]:
        self.reads += 1
        if self.reads == 3:
            time.sleep(_request_timeout)
            raise ApiException(status=0, reason="timed out")
        time.sleep(1.125 / SCALE)
        spec = {"holderIdentity": "me", "leaseDurationSeconds": 3}
        return {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}

    def replace_namespaced_custom_object(self, *_: Any, _request_timeout: float) -> None:
        time.sleep(1.125 / SCALE)
        self.version += 1


def test_one_timed_out_request_between_renewals_does_not_cost_the_leadership() -> None:
    """At full scale: renewed at 0 s (answered); the next read starts at once (the
    renewal took more than the 2 s retry period) and times out at 5 s; the renewal
    that follows at once is answered at 7.25 s, inside the 10 s deadline. Waiting a
    retry period before each attempt would have it answered at 11.25 s."""
    leases = OneTimeout()
    elector = _leading(leases)
    lost = threading.Event()
    elector.start_renewing(lost.set)
    try:
        assert not lost.wait(30 / SCALE)  # 30 s at full scale, through the timeout
    finally:
        elector.stop()
    assert leases.reads > 5 and elector.is_leader
