"""The controller as a process with the Gateway API router, against the real HTTPRoute CRD.

A sampler reads the canary Deployment, the HTTPRoute and the canary
Deployment again, many times a second, so the promises are checked on what
the cluster showed at every moment, not only at the end:

- the route gives the canary a share only while enough canary pods are Ready
  (the first read proves the canary existed before the route was read, the
  second that its pods were Ready after);
- stable keeps its full size until promotion;
- the weights go exactly through the steps: 10%, then 50% (at 4 replicas,
  where pod counts could only give 25% and 50%), then back to stable.

Where a gateway reports on the route (played here by a thread writing the
HTTPRoute's status as a gateway controller does), a step counts only once the
gateway serves it, and the canary goes only after the gateway has processed
the reset.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.adapters.kubernetes import ROUTE_FINALIZER
from controller.adapters.routers.applying import FIELD_MANAGER, HTTP_ROUTE, SERVICE
from controller.api.spec import GROUP, PLURAL, VERSION
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import Releases, Sampler, error_rate_query, wait_for
from tests.routing_objects import Cluster, http_route, stable_service

IMAGE = "registry.example.com/payments:{}"
REPLICAS = 4
HEADER = {"match": [{"name": "X-Canary", "value": "always"}]}


def _release(steps: list[dict[str, Any]], prometheus_url: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"name": "payments"},
        "release": {"tag": "v1", "image": "registry.example.com/payments:{tag}"},
        "steps": steps,
        "trafficRouting": {
            "stableService": "payments",
            "gatewayAPI": {"httpRoute": "payments"},
            "headerRoute": HEADER,
        },
    }
    if prometheus_url:
        spec["analysis"] = {
            "interval": "2s",
            "prometheus": {"address": prometheus_url},
            "metrics": [
                {
                    "name": "error-rate",
                    "query": error_rate_query("payments"),
                    "threshold": {"max": 0.05},
                }
            ],
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryRelease",
        "metadata": {"name": "payments"},
        "spec": spec,
    }


def _route_state(route: dict[str, Any] | None) -> tuple[int, bool]:
    """(the canary's weight on the "api" rule, whether a header rule exists)."""
    if route is None:
        return 0, False
    rules = route["spec"].get("rules") or []
    api = next(r for r in rules if r.get("name") == "api")
    weights = {ref["name"]: ref.get("weight", 1) for ref in api["backendRefs"]}
    canary = weights.get("payments-canary", 0)
    total = canary + weights.get("payments", 0)
    header = any(str(r.get("name", "")).startswith("canary-header-") for r in rules)
    return (round(100 * canary / total) if total else 0), header


class RouteWatch:
    """Samples (canary before, route, canary after, stable size) in the background."""

    def __init__(self, objects: Cluster) -> None:
        self.objects = objects
        self.samples: list[tuple[int | None, tuple[int, bool], int | None, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RouteWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _canary_ready(self) -> int | None:
        try:
            dep = self.objects.apps.read_namespaced_deployment(
                "payments-canary", self.objects.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return (dep.status.ready_replicas or 0) if dep.status else 0

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(ApiException):
                before = self._canary_ready()
                route = _route_state(self.objects.get(HTTP_ROUTE, "payments"))
                after = self._canary_ready()
                stable = self.objects.apps.read_namespaced_deployment(
                    "payments", self.objects.namespace
                )
                self.samples.append((before, route, after, stable.spec.replicas))
            self._stop.wait(0.05)

    def weights(self) -> list[int]:
        """The route's weights in the order they were seen, repeats folded."""
        seen: list[int] = []
        for _, (weight, _), _, _ in self.samples:
            if not seen or seen[-1] != weight:
                seen.append(weight)
        return seen

    def violations(self) -> list[str]:
        found = []
        for before, (weight, header), after, _ in self.samples:
            need = max(1, math.ceil(REPLICAS * weight / 100)) if weight or header else 0
            if need and (before is None or (after or 0) < need):
                found.append(f"route {weight}% header={header}: canary Ready {before}->{after}")
        return found


@pytest.fixture
def objects(
    k8s: client.ApiClient, namespace: str, router_crds: list[str], releases: Releases
) -> Cluster:
    """payments at v1 on 4 pods (labelled as the stable track) and its stable Service."""
    cluster = Cluster(k8s, namespace)
    cluster.create_deployment("payments", REPLICAS, IMAGE.format("v1"))
    cluster.apply(SERVICE, stable_service("payments"), "gitops")
    return cluster


def _hand_over(objects: Cluster) -> None:
    gitops = http_route("payments", "payments")
    objects.hand_over_rules(HTTP_ROUTE, "payments", "rules", gitops)


def _annotate(objects: Cluster) -> None:
    note = {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": {"name": "payments", "annotations": {"ops/ticket": "OPS-42"}},
    }
    objects.apply(HTTP_ROUTE, note, "ops")


def _traffic_weight(releases: Releases) -> int | None:
    traffic = releases.status("payments").get("traffic") or {}
    weight = traffic.get("weight")
    return int(weight) if weight is not None else None


def test_gateway_api_weights_at_every_step_then_promotion(
    objects: Cluster, releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    objects.apply(HTTP_ROUTE, http_route("payments", "payments"), "gitops")
    _hand_over(objects)
    _annotate(objects)
    steps = [
        {"setWeight": 10},
        {"pause": {"duration": "6s"}},
        {"setWeight": 50},
        {"pause": {"duration": "6s"}},
        {"setWeight": 100},
    ]
    releases.create(_release(steps))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)

    with RouteWatch(objects) as watch:
        releases.set_tag("payments", "v2")
        wait_for(lambda: _traffic_weight(releases) == 10, 90, "10% on the route")
        route = objects.get(HTTP_ROUTE, "payments")
        assert _route_state(route) == (10, True)
        canary = releases.deployment("payments-canary")
        assert canary is not None and canary.spec.replicas == 1  # one pod, exactly 10%
        assert releases.status("payments")["canaryWeight"] == 10

        wait_for(lambda: _traffic_weight(releases) == 50, 90, "50% on the route")
        assert _route_state(objects.get(HTTP_ROUTE, "payments")) == (50, True)
        canary = releases.deployment("payments-canary")
        assert canary is not None and canary.spec.replicas == 2

        done = releases.wait_phase("payments", "Succeeded", timeout=120)
        wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")

    assert watch.weights() == [0, 10, 50, 0]
    assert not watch.violations(), watch.violations()[:3]
    assert {replicas for *_, replicas in watch.samples} == {REPLICAS}  # stable never shrank
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None and _route_state(route) == (0, False)
    api = next(r for r in route["spec"]["rules"] if r["name"] == "api")
    assert [ref["name"] for ref in api["backendRefs"]] == ["payments"]
    assert api["filters"][0]["type"] == "RequestHeaderModifier"  # kept through every apply
    assert route["metadata"]["annotations"]["ops/ticket"] == "OPS-42"
    assert route["spec"]["hostnames"] == ["payments.example.com"]
    assert objects.managers_of(route, "f:hostnames") == {"gitops"}
    assert objects.managers_of(route, "f:rules") == {FIELD_MANAGER}
    stable = releases.deployment("payments")
    assert stable is not None and stable.spec.replicas == REPLICAS
    assert stable.spec.template.spec.containers[0].image == IMAGE.format("v2")
    assert done["traffic"]["weight"] == 0
    releases.wait_events("payments", "TrafficShifted", "HeaderRoute", "Promoted")


def test_gateway_api_rollback_sends_everything_to_stable_before_scaling_down(
    objects: Cluster,
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    traffic.set_rate(namespace, "payments", "stable", rps=50, error_ratio=0.002)
    traffic.set_rate(namespace, "payments", "canary", rps=50, error_ratio=0.002)
    objects.apply(HTTP_ROUTE, http_route("payments", "payments"), "gitops")
    _hand_over(objects)
    steps = [{"setWeight": 20}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    releases.create(_release(steps, prometheus.url))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)

    with RouteWatch(objects) as watch:
        releases.set_tag("payments", "v2")
        wait_for(lambda: _traffic_weight(releases) == 20, 90, "20% on the route")
        assert _route_state(objects.get(HTTP_ROUTE, "payments")) == (20, True)
        traffic.set_rate(namespace, "payments", "canary", rps=50, error_ratio=0.4)
        status = releases.wait_phase("payments", "RolledBack", timeout=90)
        wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")

    assert status["reason"] == "MetricBreach"
    assert watch.weights() == [0, 20, 0]
    assert not watch.violations(), watch.violations()[:3]
    existed = next(i for i, sample in enumerate(watch.samples) if sample[0] is not None)
    gone = next(i for i in range(existed, len(watch.samples)) if watch.samples[i][0] is None)
    assert all(route == (0, False) for _, route, _, _ in watch.samples[gone:])
    assert {replicas for *_, replicas in watch.samples} == {REPLICAS}
    assert _route_state(objects.get(HTTP_ROUTE, "payments")) == (0, False)
    assert releases.status("payments")["traffic"]["weight"] == 0


def test_gateway_api_conflict_is_reported_in_status_and_not_forced(
    objects: Cluster, releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    objects.apply(HTTP_ROUTE, http_route("payments", "payments"), "gitops")  # GitOps owns rules
    before = objects.get(HTTP_ROUTE, "payments")
    assert before is not None
    releases.create(_release([{"setWeight": 10}, {"pause": {}}]))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)
    releases.set_tag("payments", "v2")

    def conflicted() -> dict[str, Any] | None:
        conditions = releases.status("payments").get("conditions") or []
        routed = next((c for c in conditions if c["type"] == "TrafficRouted"), None)
        return routed if routed and routed["reason"] == "RouteConflict" else None

    condition = wait_for(conflicted, 90, "the conflict in status")
    assert condition["status"] == "False"
    assert '"gitops"' in condition["message"] and ".spec.rules" in condition["message"]
    wait_for(lambda: "RouteConflict" in releases.event_reasons("payments"), 30, "a Warning Event")
    status = releases.status("payments")
    assert status["phase"] == "Progressing" and status["currentStepIndex"] == 0
    after = objects.get(HTTP_ROUTE, "payments")
    assert after is not None
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    _hand_over(objects)  # GitOps gives spec.rules to the controller: the release carries on
    wait_for(lambda: _traffic_weight(releases) == 10, 60, "10% once the rules are ours")
    assert _route_state(objects.get(HTTP_ROUTE, "payments")) == (10, True)
    conditions = releases.status("payments")["conditions"]
    assert next(c for c in conditions if c["type"] == "TrafficRouted")["status"] == "True"
    events = [
        e
        for e in releases.events()
        if e.reason == "RouteConflict" and e.involved_object.name == "payments"
    ]
    assert len(events) == 1 and events[0].type == "Warning"


class Gateway(Sampler):
    """Plays a gateway controller: reports on each new generation of the route after `lag`.

    While `unresolvable` is set it reports the canary backend as not found
    (ResolvedRefs False, BackendNotFound), as a gateway does for a Service it
    cannot resolve. `reset_seen` records, for each generation it processed that
    sends nothing to the canary, whether the canary Deployment still existed.
    """

    def __init__(self, objects: Cluster, lag: float) -> None:
        self.objects, self.lag = objects, lag
        self.unresolvable = True
        self.reset_seen: list[bool] = []
        self._first_seen: dict[int, float] = {}
        self._reported: tuple[int, bool] | None = None
        super().__init__(self._step)

    def _condition(self, type_: str, ok: bool, generation: int) -> dict[str, Any]:
        return {
            "type": type_,
            "status": "True" if ok else "False",
            "reason": type_ if ok else "BackendNotFound",
            "message": "" if ok else "Service payments-canary: no such backend",
            "observedGeneration": generation,
            "lastTransitionTime": "2026-11-25T10:00:00Z",
        }

    def _report(self, route: dict[str, Any]) -> None:
        generation = route["metadata"]["generation"]
        resolved = not self.unresolvable or _route_state(route) == (0, False)
        parent = {
            "parentRef": {"name": "public"},
            "controllerName": "example.com/gateway-controller",
            "conditions": [
                self._condition("Accepted", True, generation),
                self._condition("ResolvedRefs", resolved, generation),
            ],
        }
        self.objects.write_status(HTTP_ROUTE, "payments", {"parents": [parent]})
        if _route_state(route) == (0, False):
            self.reset_seen.append(releases_canary_exists(self.objects))
        self._reported = (generation, self.unresolvable)

    def _step(self) -> None:
        """One look at the route (the Sampler's loop calls it; it samples nothing)."""
        route = self.objects.get(HTTP_ROUTE, "payments")
        if route is not None:
            generation = route["metadata"]["generation"]
            first = self._first_seen.setdefault(generation, time.monotonic())
            due = time.monotonic() - first >= self.lag
            if due and self._reported != (generation, self.unresolvable):
                self._report(route)


def releases_canary_exists(objects: Cluster) -> bool:
    try:
        objects.apps.read_namespaced_deployment("payments-canary", objects.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _routed_condition(releases: Releases) -> dict[str, Any] | None:
    return releases.condition("payments", "TrafficRouted")


def test_gateway_api_a_step_waits_for_the_gateway_and_the_canary_for_its_reset(
    objects: Cluster, releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    objects.apply(HTTP_ROUTE, http_route("payments", "payments"), "gitops")
    _hand_over(objects)
    steps = [{"setWeight": 10}, {"pause": {"duration": "3s"}}, {"setWeight": 100}]
    with Gateway(objects, lag=3.0) as gateway:
        reported = lambda: (objects.get(HTTP_ROUTE, "payments") or {}).get("status")  # noqa: E731
        wait_for(reported, 30, "the gateway's report on the route as GitOps left it")
        releases.create(_release(steps))
        controller(namespace)
        releases.wait_phase("payments", "Idle", timeout=30)
        releases.set_tag("payments", "v2")

        def rejected() -> dict[str, Any] | None:
            routed = _routed_condition(releases)
            return routed if routed and routed["reason"] == "RouteRejected" else None

        condition = wait_for(rejected, 90, "the gateway's rejection in status")
        assert condition["status"] == "False"
        assert "BackendNotFound: Service payments-canary: no such backend" in condition["message"]
        wait_for(lambda: "RouteRejected" in releases.event_reasons("payments"), 30, "an Event")
        time.sleep(8)  # the 10% step is not reached while nothing serves it
        status = releases.status("payments")
        assert (status["phase"], status["currentStepIndex"]) == ("Progressing", 0)
        assert _route_state(objects.get(HTTP_ROUTE, "payments")) == (10, True)

        gateway.unresolvable = False  # the backend is found: the gateway serves the route
        releases.wait_phase("payments", "Succeeded", timeout=120)
        wait_for(lambda: not releases_canary_exists(objects), 30, "canary removed")

    # The gateway processed the reset while the canary was still there to serve.
    assert gateway.reset_seen and gateway.reset_seen[-1] is True
    routed = _routed_condition(releases)
    assert routed is not None and routed["status"] == "True"
    events = [
        e
        for e in releases.events()
        if e.reason == "RouteRejected" and e.involved_object.name == "payments"
    ]
    assert len(events) == 1 and events[0].type == "Warning"


def test_gateway_api_deleting_a_release_mid_canary_resets_its_route_first(
    objects: Cluster, releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    """The canary Service belongs to the release and goes with it: the route must not be
    left sending the canary's share (and the header route) to a Service that is gone."""
    objects.apply(HTTP_ROUTE, http_route("payments", "payments"), "gitops")
    _hand_over(objects)
    steps = [{"setWeight": 20}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    releases.create(_release(steps))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)
    assert releases.get("payments")["metadata"].get("finalizers") == [ROUTE_FINALIZER]

    releases.set_tag("payments", "v2")
    wait_for(lambda: _traffic_weight(releases) == 20, 90, "20% on the route")
    assert _route_state(objects.get(HTTP_ROUTE, "payments")) == (20, True)
    releases.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "payments")

    def gone() -> bool:
        try:
            releases.get("payments")
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 30, "the release deleted")
    assert _route_state(objects.get(HTTP_ROUTE, "payments")) == (0, False)
    wait_for(lambda: releases.deployment("payments-canary") is None, 60, "canary collected")
