"""The runtime's traffic glue: what reaches the engine, and what a failed apply does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from controller.adapters.routers.protocol import RouteChanged, RouteConflict, RouteIntent
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.api.traffic import RouterKind, TrafficStatus
from controller.engine.actions import ResetTraffic, SetHeaderRoute, SetTrafficWeight
from controller.engine.observations import RouteView
from controller.runtime.routing import apply_traffic, intent_of, observe_route


@dataclass
class MemoryRouter:
    """An in-memory TrafficRouter: records calls, fails as told."""

    kind: RouterKind = "gatewayAPI"
    fail: Exception | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def verify(self, intent: RouteIntent) -> RouteView:
        self.calls.append(("verify", intent))
        if self.fail is not None:
            raise self.fail
        return RouteView(intent.weight, intent.header_route)

    def set_weight(self, weight: int) -> int:
        self.calls.append(("set_weight", weight))
        if self.fail is not None:
            raise self.fail
        return weight

    def set_header_route(self, enabled: bool) -> bool:
        self.calls.append(("set_header_route", enabled))
        return enabled

    def reset(self) -> None:
        self.calls.append(("reset", None))


@dataclass
class RouterCluster:
    router: MemoryRouter

    def traffic_router(self, release: dict[str, Any], spec: CanaryReleaseSpec) -> MemoryRouter:
        return self.router


def _spec(routing: bool = True) -> CanaryReleaseSpec:
    raw: dict[str, Any] = {
        "targetRef": {"name": "app"},
        "release": {"image": "registry.example.com/app:{tag}"},
    }
    if routing:
        raw["trafficRouting"] = {"stableService": "app", "gatewayAPI": {"httpRoute": "app"}}
    return CanaryReleaseSpec.model_validate(raw)


def test_the_intent_comes_from_status() -> None:
    assert intent_of(CanaryReleaseStatus()) == RouteIntent(0, False)
    traffic = TrafficStatus(router="nginx", weight=0, desired_weight=30, desired_header_route=True)
    assert intent_of(CanaryReleaseStatus(traffic=traffic)) == RouteIntent(30, True)


def test_no_router_without_traffic_routing() -> None:
    cluster = RouterCluster(MemoryRouter())
    got = observe_route(cluster, {}, _spec(routing=False), CanaryReleaseStatus())  # type: ignore[arg-type]
    assert got == (None, None) and cluster.router.calls == []


def test_a_route_the_controller_may_not_read_is_a_problem_not_a_crash() -> None:
    cluster = RouterCluster(MemoryRouter(fail=ApiException(status=403, reason="Forbidden")))
    router, view = observe_route(cluster, {}, _spec(), CanaryReleaseStatus())  # type: ignore[arg-type]
    assert router is cluster.router
    assert view is not None and view.weight is None
    assert view.problem == "the controller may not read the gatewayAPI route: Forbidden"


def test_a_conflict_or_a_moved_route_is_logged_and_left_for_the_next_reconcile() -> None:
    for failure in (RouteConflict('owned by "gitops"', ("gitops",)), RouteChanged("moved")):
        router = MemoryRouter(fail=failure)
        apply_traffic(router, SetTrafficWeight(10))  # does not raise
        assert router.calls == [("set_weight", 10)]
    router = MemoryRouter()
    for action in (SetTrafficWeight(5), SetHeaderRoute(True), ResetTraffic()):
        apply_traffic(router, action)
    assert router.calls == [("set_weight", 5), ("set_header_route", True), ("reset", None)]
