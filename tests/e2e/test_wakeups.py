"""With polling turned off, watches and the engine's deadlines alone carry releases.

`CANARY_RECONCILE_INTERVAL` and `CANARY_RESYNC_INTERVAL` are set to an hour,
so every reconcile in these tests was caused either by a watch event (the
release, its Deployments, its canary pods) or by a deadline from
`engine/wakeup.py` (the next analysis, the end of the pause). A missing wake-up
shows as a release stuck for the rest of the hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from kubernetes import client

from bench.scale.faults import FaultyPrometheus
from bench.scale.run import metric_total
from controller.api.spec import GROUP, PLURAL, VERSION
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import CapacityWatch, Releases, adopted, healthy_traffic, release, wait_for

NO_POLLING = {"CANARY_RECONCILE_INTERVAL": "3600", "CANARY_RESYNC_INTERVAL": "3600"}


def test_a_canary_is_promoted_on_watches_and_deadlines_alone(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    healthy_traffic(traffic, namespace)
    body = release("payments", "v1", prometheus.url)
    proc = adopted(releases, body, 10, lambda: controller(namespace, **NO_POLLING))
    with CapacityWatch(releases, "payments") as capacity:
        releases.set_tag("payments", "v2")
        releases.wait_phase("payments", "Paused", timeout=60)  # canary pods Ready: a watch
        done = releases.wait_phase("payments", "Succeeded", timeout=120)  # the pause's end
    assert done["stableTag"] == "v2"
    assert min(capacity.samples) >= 10
    looks = [m for m in done["metrics"] if m["name"] == "error-rate"]
    assert looks and looks[0]["verdict"] == "pass"  # analysed on its 2 s deadlines
    text = requests.get(f"{proc.metrics_url}/metrics", timeout=10).text
    requests_total = "canary_kubernetes_api_requests_total"
    reconciles = metric_total(text, "canary_reconcile_duration_seconds_count")
    deployment_gets = metric_total(text, requests_total, 'method="GET",resource="deployments"')
    release_gets = metric_total(text, requests_total, 'method="GET",resource="canaryreleases"')
    # Reading per reconcile would mean two Deployment GETs each; from the watches,
    # a Deployment is read only just before it is patched, the release only after a 409.
    assert reconciles >= 5
    assert deployment_gets < reconciles / 2, (deployment_gets, reconciles)
    assert release_gets <= 2


def test_a_breach_rolls_back_at_the_next_analysis_deadline(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    healthy_traffic(traffic, namespace)
    steps = [{"setWeight": 25}, {"pause": {"duration": "30m"}}, {"setWeight": 100}]
    body = release("payments", "v1", prometheus.url, steps=steps)
    adopted(releases, body, 4, lambda: controller(namespace, **NO_POLLING))
    releases.set_tag("payments", "v2")
    releases.wait_phase("payments", "Paused", timeout=60)
    traffic.set_rate(namespace, "payments", "canary", rps=50, error_ratio=0.4)
    status = releases.wait_phase("payments", "RolledBack", timeout=60)
    assert status["reason"] == "MetricBreach"


def test_a_command_is_answered_before_an_analysis_that_is_due(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
    k8s: client.ApiClient,
) -> None:
    """`abort` while an analysis is overdue and Prometheus answers in 8 s (past the 5 s timeout).

    Analysing first would spend at least 2 queries x 3 attempts x 5 s before
    the abort; the command is answered in the same pass, without one query.
    """
    healthy_traffic(traffic, namespace)
    slow = FaultyPrometheus(prometheus.url, slow_s=8)
    try:
        steps = [{"setWeight": 50}, {"pause": {"duration": "30m"}}]
        body = release("payments", "v1", slow.url, steps=steps, interval="10m")
        proc = adopted(releases, body, 4, lambda: controller(namespace))
        releases.set_tag("payments", "v2")
        releases.wait_phase("payments", "Paused", timeout=60)
        proc.kill()
        # While the controller is down, the analysis falls due and Prometheus slows down.
        overdue = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        client.CustomObjectsApi(k8s).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "payments", {"status": {"nextAnalysisAt": overdue}}
        )
        slow.mode = "slow"
        releases.patch("payments", {"metadata": {"annotations": {"canary.dev/command": "abort 1"}}})
        controller(namespace)
        status = releases.wait_phase("payments", "RolledBack", timeout=60)
        assert status["reason"] == "Aborted" and status["lastCommand"] == "abort 1"
        assert slow.requests == 0, "the abort waited for an analysis"
    finally:
        slow.stop()


PAUSED_AT_HALF = [{"setWeight": 50}, {"pause": {"duration": "30m"}}]


def _two_metric_release(name: str, prometheus_url: str) -> dict[str, Any]:
    """Analysed every 3 s on two metrics: one analysis is two queries (canary first)."""
    body = release(name, "v1", prometheus_url, steps=PAUSED_AT_HALF, interval="3s")
    metrics = body["spec"]["analysis"]["metrics"]
    metrics.append({**metrics[0], "name": "error-rate-again"})
    return body


def _abort_during_a_slow_analysis(releases: Releases, slow: FaultyPrometheus, name: str) -> int:
    """Slow Prometheus down, abort `name` once an analysis is querying it; queries sent meanwhile.

    Each query that outlives its timeout is tried three times, then its
    metric is unreachable and the next metric is queried: a whole analysis
    is six requests, the one in flight at most three.
    """
    slow.mode = "slow"
    before = slow.requests
    wait_for(lambda: slow.requests > before, 30, "an analysis querying the slow Prometheus")
    releases.patch(name, {"metadata": {"annotations": {"canary.dev/command": "abort"}}})
    status = releases.wait_phase(name, "RolledBack", timeout=60)
    assert status["reason"] == "Aborted"
    return slow.requests - before


def test_a_command_interrupts_an_analysis_in_flight(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    """`abort` while an analysis is querying a Prometheus that answers in 8 s (timeout 5 s).

    The analysis has two metrics; a query that times out three times makes
    its metric unreachable, and the next metric is queried. The abort
    arrives during the first attempt of the first metric's query: that query
    runs out its attempts, the second metric's is never sent, and the next
    pass answers the abort.
    """
    healthy_traffic(traffic, namespace)
    slow = FaultyPrometheus(prometheus.url, slow_s=8)
    try:
        body = _two_metric_release("payments", slow.url)
        adopted(releases, body, 4, lambda: controller(namespace))
        releases.set_tag("payments", "v2")
        releases.wait_phase("payments", "Paused", timeout=60)
        sent = _abort_during_a_slow_analysis(releases, slow, "payments")
        assert sent <= 3, f"{sent} queries after the abort: the analysis did not give way"
    finally:
        slow.stop()


def test_a_command_does_not_wait_for_a_worker_busy_with_a_slow_analysis(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    """One ordinary worker, held by a release analysing against a Prometheus slower than
    its timeout; `abort` on another release goes to the reserved worker.

    The busy release's analysis is two metrics of three 5 s attempts each (six
    requests). Waiting for a free worker would mean waiting for all six; the
    abort is answered while the first metric's query is still being retried.
    """
    healthy_traffic(traffic, namespace)
    slow = FaultyPrometheus(prometheus.url, slow_s=8)
    try:
        busy = _two_metric_release("payments", slow.url)
        adopted(releases, busy, 4, lambda: controller(namespace, CANARY_WORKERS="1"))
        adopted(releases, release("orders", "v1", None, steps=PAUSED_AT_HALF), 4, lambda: None)
        releases.set_tag("payments", "v2")
        releases.set_tag("orders", "v2")
        releases.wait_phase("payments", "Paused", timeout=60)
        releases.wait_phase("orders", "Paused", timeout=60)
        sent = _abort_during_a_slow_analysis(releases, slow, "orders")
        assert sent <= 3, f"the abort waited for the busy worker ({sent} queries went first)"
    finally:
        slow.stop()
