"""The simulated world of tests/unit/world.py, plus a traffic router.

`SimRoute` is an in-memory route: the weight and header route the engine's
actions set, and a `conflict` that makes every write fail as a field-manager
conflict would. Every change to the route or to the pods is checked against
the promises of docs/traffic.md and any breach is kept in `violations`:

- the route never sends to a canary without Ready pods enough for its share;
- nothing that carries traffic is scaled down while the route still sends to it
  (the rollback resets the route first);
- with dynamicStableScale, stable keeps Ready pods enough for its share.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.api.spec import CanaryReleaseSpec
from controller.engine.actions import (
    Action,
    DeleteCanary,
    ResetTraffic,
    ScaleCanary,
    ScaleStable,
    SetHeaderRoute,
    SetTrafficWeight,
    UpdateStable,
)
from controller.engine.observations import Observed, RouteView
from controller.engine.routing import routed_canary_replicas
from tests.unit.world import World, make_spec


@dataclass
class SimRoute:
    weight: int = 0
    header_route: bool = False
    conflict: str | None = None
    problem: str | None = None
    changes: list[tuple[datetime, int, bool]] = field(default_factory=list)

    def view(self, desired: tuple[int, bool]) -> RouteView:
        conflict = self.conflict if (self.weight, self.header_route) != desired else None
        return RouteView(self.weight, self.header_route, conflict=conflict, problem=self.problem)


@dataclass(kw_only=True)
class RoutedWorld(World):
    route: SimRoute = field(default_factory=SimRoute)
    violations: list[str] = field(default_factory=list)
    order: list[tuple[datetime, str]] = field(default_factory=list)
    _now: datetime | None = None

    def observe(self, now: datetime) -> Observed:
        base = super().observe(now)
        assert base.target is not None
        # Pods of every revision, as status.replicas counts them.
        target = dataclasses.replace(base.target, status_replicas=len(self.stable.pods))
        base = dataclasses.replace(base, target=target)
        if base.canary is not None and self.canary is not None:
            canary = dataclasses.replace(base.canary, status_replicas=len(self.canary.pods))
            base = dataclasses.replace(base, canary=canary)
        traffic = self.status.traffic
        desired = (traffic.desired_weight, traffic.desired_header_route) if traffic else (0, False)
        return dataclasses.replace(base, route=self.route.view(desired))

    def _ready_canary(self, now: datetime) -> int:
        if self.canary is None:
            return 0
        return sum(p.ready(now) and p.image == self.canary.image for p in self.canary.pods)

    def _check(self, now: datetime, when: str) -> None:
        route = self.route
        routing = self.spec.traffic_routing
        if routing is None:
            return
        ready = self._ready_canary(now)
        if route.weight > 0 and ready < routed_canary_replicas(route.weight, self.replicas):
            self.violations.append(
                f"{now} {when}: route sends {route.weight}% to {ready} Ready canary pods"
            )
        if route.header_route and ready < 1:
            self.violations.append(f"{now} {when}: header route to a canary with no Ready pod")
        if routing.dynamic_stable_scale:
            need = math.ceil(self.replicas * (100 - route.weight) / 100)
            stable_ready = sum(p.ready(now) for p in self.stable.pods)
            if stable_ready < need:
                self.violations.append(
                    f"{now} {when}: stable has {stable_ready} Ready pods for {100 - route.weight}%"
                )

    def apply(self, actions: list[Action]) -> None:
        now = self._now
        assert now is not None
        route = self.route
        for action in actions:
            sends = route.weight > 0 or route.header_route
            match action:
                case DeleteCanary() if sends:
                    self.violations.append(f"{now}: canary deleted while the route sends to it")
                case ScaleCanary(replicas=replicas) if self.canary is not None:
                    if route.weight and replicas < routed_canary_replicas(
                        route.weight, self.replicas
                    ):
                        self.violations.append(f"{now}: canary shrunk below its {route.weight}%")
                    if sends and action.image != self.canary.image:
                        self.violations.append(f"{now}: canary pods replaced while routed to")
                case ScaleStable(replicas=replicas) | UpdateStable(replicas=replicas):
                    share = math.ceil(self.replicas * (100 - route.weight) / 100)
                    if replicas < share:
                        self.violations.append(f"{now}: stable shrunk below its share")
            if isinstance(action, SetTrafficWeight | SetHeaderRoute | ResetTraffic):
                if route.conflict is not None:
                    continue  # another field manager owns the route: the write fails
                if isinstance(action, SetTrafficWeight):
                    route.weight = action.weight
                elif isinstance(action, SetHeaderRoute):
                    route.header_route = action.enabled
                else:
                    route.weight, route.header_route = 0, False
                route.changes.append((now, route.weight, route.header_route))
            self.order.append((now, type(action).__name__))
        super().apply(actions)
        self._check(now, "after acting")

    def tick(self, now: datetime, *, lose_actions: bool = False) -> list[Action]:
        self._now = now
        actions = super().tick(now, lose_actions=lose_actions)
        self._check(now, "after the cluster moved")
        return actions


def make_routed_spec(
    *,
    header: bool = False,
    dynamic: bool = False,
    **kwargs: Any,
) -> CanaryReleaseSpec:
    base = make_spec(**kwargs)
    routing: dict[str, Any] = {
        "stableService": "app",
        "gatewayAPI": {"httpRoute": "app"},
        "dynamicStableScale": dynamic,
    }
    if header:
        routing["headerRoute"] = {"match": [{"name": "X-Canary", "value": "always"}]}
    raw = base.model_dump(by_alias=True, exclude_none=True)
    return CanaryReleaseSpec.model_validate({**raw, "trafficRouting": routing})
