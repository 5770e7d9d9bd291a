"""Lease-based leader election against the real apiserver: who may lead, and when."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.runtime.leader import LeaderElector, LeaseTiming
from tests.e2e.helpers import wait_for

FAST = LeaseTiming(lease_duration=4, renew_deadline=3, retry_period=0.5)


def _lease(k8s: client.ApiClient, namespace: str) -> client.V1LeaseSpec:
    spec: client.V1LeaseSpec = (
        client.CoordinationV1Api(k8s).read_namespaced_lease("ctl", namespace).spec
    )
    return spec


def _elector(k8s: client.ApiClient, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(k8s, namespace, "ctl", identity, FAST)


def test_one_leader_and_a_standby_that_waits(k8s: client.ApiClient, namespace: str) -> None:
    a, b = _elector(k8s, namespace, "a"), _elector(k8s, namespace, "b")
    assert a.try_acquire_or_renew() is True  # creates the Lease
    assert b.try_acquire_or_renew() is False
    assert (b.is_leader, b.holder) == (False, "a")
    assert a.try_acquire_or_renew() is True  # renewing keeps the acquire time
    spec = _lease(k8s, namespace)
    assert spec.holder_identity == "a" and spec.lease_duration_seconds == 4
    assert spec.renew_time > spec.acquire_time
    assert spec.lease_transitions == 0


def test_the_standby_takes_an_abandoned_lease_only_after_it_expires(
    k8s: client.ApiClient, namespace: str
) -> None:
    a, b = _elector(k8s, namespace, "a"), _elector(k8s, namespace, "b")
    assert a.try_acquire_or_renew()
    last_renewal = _lease(k8s, namespace).renew_time
    assert b.try_acquire_or_renew() is False  # b starts its clock on what it saw
    seen_at = time.monotonic()
    # `a` is gone (no more renewals): b keeps trying and must wait out the lease
    taken = wait_for(b.try_acquire_or_renew, 30, "b to take the lease", interval=0.2)
    waited = time.monotonic() - seen_at
    assert taken and waited >= FAST.lease_duration
    spec = _lease(k8s, namespace)
    assert spec.holder_identity == "b" and spec.lease_transitions == 1
    assert (spec.acquire_time - last_renewal).total_seconds() >= FAST.lease_duration
    assert a.try_acquire_or_renew() is False  # the old leader, back, finds it taken
    assert a.holder == "b"


def test_a_released_lease_is_taken_at_once(k8s: client.ApiClient, namespace: str) -> None:
    a, b = _elector(k8s, namespace, "a"), _elector(k8s, namespace, "b")
    assert a.try_acquire_or_renew()
    assert b.try_acquire_or_renew() is False
    a.release()
    assert _lease(k8s, namespace).holder_identity in (None, "")
    assert b.try_acquire_or_renew() is True  # no waiting for expiry
    assert a.is_leader is False


def test_two_standbys_racing_for_a_free_lease_get_one_leader(
    k8s: client.ApiClient, namespace: str
) -> None:
    electors = [_elector(k8s, namespace, f"r{i}") for i in range(4)]
    results: dict[str, bool] = {}
    start = threading.Barrier(len(electors))

    def race(e: LeaderElector) -> None:
        start.wait()
        results[e.identity] = e.try_acquire_or_renew()

    threads = [threading.Thread(target=race, args=(e,)) for e in electors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [name for name, won in results.items() if won]
    assert len(winners) == 1
    assert _lease(k8s, namespace).holder_identity == winners[0]


def test_a_leader_that_loses_the_lease_is_told_at_once(
    k8s: client.ApiClient, namespace: str
) -> None:
    a = _elector(k8s, namespace, "a")
    assert a.acquire()
    lost = threading.Event()
    a.start_renewing(on_lost=lost.set)
    try:
        time.sleep(2 * FAST.retry_period)
        assert not lost.is_set() and a.is_leader
        # someone overwrites the Lease (as a standby would after an expiry)
        leases = client.CoordinationV1Api(k8s)
        for _ in range(10):  # the leader renews meanwhile: read again on a conflict, as it would
            current = leases.read_namespaced_lease("ctl", namespace)
            current.spec.holder_identity = "intruder"
            current.spec.renew_time = datetime.now(current.spec.renew_time.tzinfo)
            try:
                leases.replace_namespaced_lease("ctl", namespace, current)
                break
            except ApiException as exc:
                if exc.status != 409:
                    raise
        else:
            raise AssertionError("the Lease changed under every attempt to take it")
        assert lost.wait(timeout=FAST.renew_deadline + 5)
        assert a.is_leader is False
    finally:
        a.stop()
