"""Two controller processes, one Lease: the leader is killed mid-canary and the standby finishes.

The standby must not act before it holds the Lease, must take over once the
dead leader's Lease expires (and not before), and must carry the release on
from the recorded status: no step repeated, none skipped.
"""

from __future__ import annotations

import re
import signal
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devenv.controller import ControllerProcess
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import Releases, release, wait_for

IMAGE = "registry.example.com/payments:{}"
LEASE_S, RENEW_S, RETRY_S = 8, 5, 1
STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "20s"}},
    {"setWeight": 50},
    {"pause": {"duration": "5s"}},
    {"setWeight": 100},
]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _sample(proc: ControllerProcess, name: str, **labels: str) -> float:
    """One sample from the process's /metrics (0 when absent)."""
    _, body = _get(f"{proc.metrics_url}/metrics")
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        found = re.findall(r'(\w+)="([^"]*)"', series)
        if ",".join(f'{k}="{v}"' for k, v in sorted(found) if k in labels) == wanted:
            return float(value)
    return 0.0


def _lease(k8s: client.ApiClient, namespace: str) -> Any:
    """The Lease's spec; an empty one until it exists (wait_for takes an exception as done)."""
    try:
        lease = client.CoordinationV1Api(k8s).read_namespaced_lease("canary-controller", namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return client.V1LeaseSpec()
    return lease.spec


def _step_events(releases: Releases) -> list[tuple[str, datetime]]:
    return sorted(
        (e.message or "", e.first_timestamp)
        for e in releases.events()
        if e.reason == "StepAdvanced" and e.involved_object.name == "payments"
    )


def test_standby_takes_over_a_killed_leader_and_finishes_the_release(
    releases: Releases,
    namespace: str,
    k8s: client.ApiClient,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    for track in ("stable", "canary"):
        traffic.set_rate(namespace, "payments", track, rps=50, error_ratio=0.002)
    releases.create_deployment("payments", 4, IMAGE.format("v1"))
    releases.create(release("payments", "v1", prometheus.url, steps=STEPS))
    election = {
        "CANARY_LEADER_ELECT": "true",
        "CANARY_LEADER_ELECTION_NAMESPACE": namespace,
        "CANARY_LEASE_DURATION": str(LEASE_S),
        "CANARY_RENEW_DEADLINE": str(RENEW_S),
        "CANARY_RETRY_PERIOD": str(RETRY_S),
    }
    leader = controller(namespace, **election, CANARY_LEADER_ELECTION_IDENTITY="replica-a")
    wait_for(lambda: _lease(k8s, namespace).holder_identity == "replica-a", 60, "a to lead")
    standby = controller(namespace, **election, CANARY_LEADER_ELECTION_IDENTITY="replica-b")
    wait_for(
        lambda: _get(f"{standby.metrics_url}/readyz") == (200, "standby: leader is replica-a\n"),
        60,
        "b Ready as the standby",
    )
    assert _get(f"{leader.metrics_url}/readyz") == (200, "leader\n")
    releases.wait_phase("payments", "Idle", timeout=60)

    releases.set_tag("payments", "v2")
    paused = wait_for(
        lambda: (s := releases.status("payments")).get("currentStepIndex") == 1 and s,
        90,
        "the first pause",
    )
    pause_started = paused["stepStartedAt"]
    assert _sample(standby, "canary_controller_leader") == 0
    assert _sample(standby, "canary_reconcile_duration_seconds_count", result="ok") == 0
    assert '"event": "action"' not in standby.log_tail(10_000)  # the standby never acted

    leader.kill()  # SIGKILL: no release of the Lease, no goodbye
    last_renewal = _lease(k8s, namespace).renew_time
    wait_for(
        lambda: _lease(k8s, namespace).holder_identity == "replica-b",
        LEASE_S * 4,
        "b to take over",
        interval=0.2,
    )
    lease = _lease(k8s, namespace)
    gap = (lease.acquire_time - last_renewal).total_seconds()
    # never two leaders: b waited out the whole lease the dead leader had renewed...
    assert gap >= LEASE_S, gap
    # ...and took over once it expired (a retry period or two later, plus scheduling slack)
    assert gap <= LEASE_S + 2 * RETRY_S + 5, gap
    assert lease.lease_transitions == 1

    wait_for(
        lambda: _sample(standby, "canary_reconcile_duration_seconds_count", result="ok") > 0,
        60,
        "b to reconcile",
    )
    assert _get(f"{standby.metrics_url}/readyz") == (200, "leader\n")
    assert _sample(standby, "canary_controller_leader") == 1
    resumed = releases.status("payments")
    if resumed.get("currentStepIndex") == 1:
        assert resumed["stepStartedAt"] == pause_started  # resumed, not restarted

    done = releases.wait_phase("payments", "Succeeded", timeout=180)
    assert [(h["tag"], h["outcome"]) for h in done["history"]] == [("v2", "Succeeded")]
    assert done["stableTag"] == "v2"
    steps = _step_events(releases)
    assert [m.split(":")[0] for m, _ in steps] == ["step 2/5", "step 3/5", "step 4/5", "step 5/5"]
    left_pause = dict(steps)[next(m for m, _ in steps if m.startswith("step 3/5"))]
    held = (left_pause - datetime.fromisoformat(pause_started)).total_seconds()
    assert held >= 20 - 1, f"the 20s pause was cut short: {held}s"  # events have 1s resolution
    # an Event follows the status write that caused it: wait for the last one
    reasons = releases.wait_events("payments", "ReleaseStarted", "Promoting", "Promoted")
    for once in ("ReleaseStarted", "Promoting", "Promoted"):
        assert reasons.count(once) == 1, (once, reasons)
    assert _sample(standby, "canary_promotions_total", namespace=namespace, release="payments") == 1
    time.sleep(2 * RETRY_S)
    assert _lease(k8s, namespace).holder_identity == "replica-b"


def test_a_standby_stops_at_once_on_sigterm(
    namespace: str, k8s: client.ApiClient, controller: ControllerFactory
) -> None:
    """In a container the standby is PID 1, which ignores a signal it has no handler for."""
    leases = client.CoordinationV1Api(k8s)
    now = datetime.now(UTC)
    held = client.V1Lease(
        metadata=client.V1ObjectMeta(name="canary-controller"),
        spec=client.V1LeaseSpec(
            holder_identity="someone-else",
            lease_duration_seconds=3600,
            acquire_time=now,
            renew_time=now,
        ),
    )
    leases.create_namespaced_lease(namespace, held)
    standby = controller(
        namespace,
        CANARY_LEADER_ELECT="true",
        CANARY_LEADER_ELECTION_NAMESPACE=namespace,
        CANARY_LEADER_ELECTION_IDENTITY="replica-b",
        CANARY_RETRY_PERIOD=str(RETRY_S),
    )
    wait_for(
        lambda: _get(f"{standby.metrics_url}/readyz") == (200, "standby: leader is someone-else\n"),
        60,
        "the standby to be Ready",
    )
    assert standby.process is not None
    began = time.monotonic()
    standby.process.send_signal(signal.SIGTERM)
    assert standby.process.wait(timeout=10) == 0  # a clean exit, not death by the signal
    assert time.monotonic() - began < 5
    assert "stopping while standing by" in standby.log_tail(50)
    assert _lease(k8s, namespace).holder_identity == "someone-else"  # never touched
