"""/healthz and /readyz for a leader, a standby and a single replica, over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client

from controller.runtime.health import Health
from controller.runtime.leader import LeaderElector, LeaseTiming
from controller.runtime.serving import serve


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _elector(clock: Clock) -> LeaderElector:
    # Never contacts an apiserver here: the tests set what it would have observed.
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    return LeaderElector(api, "ns", "lease", "me", LeaseTiming(15, 10, 2), clock=clock)


def test_a_standby_in_touch_with_the_apiserver_is_ready() -> None:
    clock = Clock()
    elector = _elector(clock)
    health = Health(elector, clock=clock)
    assert health.readiness()[0] is False  # has not reached the apiserver yet
    elector.last_attempt = elector.last_contact = clock.now
    elector.holder = "other-pod"
    ok, detail = health.readiness()
    assert ok and detail == "standby: leader is other-pod"
    clock.now += 16  # no answer from the apiserver for longer than a lease
    elector.last_attempt = clock.now
    assert health.readiness() == (
        False,
        "standby: cannot reach the apiserver to watch the lease",
    )
    assert health.liveness()[0] is True  # a restart would not bring the apiserver back


def test_a_leader_is_ready_once_kopf_has_started() -> None:
    clock = Clock()
    elector = _elector(clock)
    elector.is_leader, elector.last_attempt = True, clock.now
    health = Health(elector, clock=clock)
    assert health.readiness()[0] is False
    health.kopf_ready.set()
    assert health.readiness() == (True, "leader")


def test_without_leader_election_readiness_is_kopf_startup() -> None:
    health = Health(None)
    assert health.readiness()[0] is False
    health.kopf_ready.set()
    assert health.readiness() == (True, "running (leader election disabled)")


def test_a_stalled_election_loop_fails_liveness() -> None:
    clock = Clock()
    elector = _elector(clock)
    elector.last_attempt = clock.now
    health = Health(elector, clock=clock)
    assert health.liveness()[0] is True
    clock.now += 15 + 2 * elector.timing.request_timeout + 1
    assert health.liveness() == (False, "leader election loop stalled")


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def test_a_blocked_kopf_loop_fails_liveness(running_loop: asyncio.AbstractEventLoop) -> None:
    health = Health(None)
    health.loop = running_loop
    assert health.liveness() == (True, "ok")
    release = threading.Event()
    running_loop.call_soon_threadsafe(release.wait, 10)  # blocks the loop, as a bug would
    try:
        ok, detail = health.liveness()
    finally:
        release.set()
    assert not ok and "did not answer" in detail


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_endpoint_serves_probes_and_metrics() -> None:
    health = Health(None)
    server = serve("127.0.0.1", 0, health)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert _get(f"{base}/readyz") == (503, "starting: kopf has not finished its startup\n")
        health.kopf_ready.set()
        assert _get(f"{base}/readyz")[0] == 200
        assert _get(f"{base}/healthz") == (200, "ok\n")
        code, body = _get(f"{base}/metrics")
        assert code == 200
        assert 'canary_releases{phase="Paused"}' in body
        assert "# TYPE canary_reconcile_duration_seconds histogram" in body
        assert "canary_controller_leader 0.0" in body
        assert _get(f"{base}/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_lease_timing_must_leave_room_to_stop_before_takeover() -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        LeaseTiming(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        LeaseTiming(lease_duration=15, renew_deadline=2, retry_period=2)
    timing = LeaseTiming(15, 10, 2)
    assert timing.request_timeout == 5  # a hung request cannot outlive the renew deadline
