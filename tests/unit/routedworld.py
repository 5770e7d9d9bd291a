"""The simulated world of tests/unit/world.py, plus a traffic router.

`SimRoute` is an in-memory route: the weight and header route the engine's
actions set, and a `conflict` that makes every write fail as a field-manager
conflict would. Behind it a simulated gateway serves each change only
`gateway_lag` after it was written (reporting `pending` until then), or
refuses to serve new changes at all while `rejecting`. Every change to the
route or to the pods is checked against the promises of docs/traffic.md, for
what the route object says and for what the gateway serves, and any breach is
kept in `violations`:

- the route never sends to a canary without Ready pods enough for its share;
- nothing that carries traffic is scaled down while the route still sends to it
  (the rollback resets the route first);
- with dynamicStableScale, stable keeps Ready pods enough for its share.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    gateway_lag: timedelta = timedelta(0)
    rejecting: bool = False
    _accepted: int = 0  # how many of `changes` the gateway would ever serve

    def served(self, now: datetime) -> tuple[int, bool]:
        """(weight, header route) the gateway serves at `now`."""
        state = (0, False)
        for when, weight, header in self.changes[: self._accepted]:
            if when + self.gateway_lag <= now:
                state = (weight, header)
        return state

    def view(self, desired: tuple[int, bool], now: datetime) -> RouteView:
        conflict = self.conflict if (self.weight, self.header_route) != desired else None
        latest = self.changes[-1] if self.changes else None
        rejected = pending = None
        if latest is not None and latest[0] + self.gateway_lag > now:
            pending = "waiting for Gateway web to process HTTPRoute app"  # no report yet
        elif self.rejecting and len(self.changes) > self._accepted:
            rejected = "HTTPRoute app: backends not resolved by Gateway web: BackendNotFound"
        return RouteView(
            self.weight,
            self.header_route,
            conflict=conflict,
            problem=self.problem,
            rejected=rejected,
            pending=pending,
        )

    def accept(self) -> None:
        """The gateway takes what it refused (the cause was fixed); served after the lag."""
        self.rejecting = False
        self._accepted = len(self.changes)

    def record(self, now: datetime) -> None:
        """A write that changes nothing changes no generation: the gateway has nothing to do."""
        if self.changes and self.changes[-1][1:] == (self.weight, self.header_route):
            return
        if not self.changes and (self.weight, self.header_route) == (0, False):
            return
        self.changes.append((now, self.weight, self.header_route))
        if not self.rejecting:
            self._accepted = len(self.changes)


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
        return dataclasses.replace(base, route=self.route.view(desired, now))

    def _ready_canary(self, now: datetime) -> int:
        if self.canary is None:
            return 0
        return sum(p.ready(now) and p.image == self.canary.image for p in self.canary.pods)

    def _states(self, now: datetime) -> dict[str, tuple[int, bool]]:
        """What sends traffic: the route object, and what the gateway serves."""
        route = self.route
        return {"route": (route.weight, route.header_route), "gateway": route.served(now)}

    def _check(self, now: datetime, when: str) -> None:
        routing = self.spec.traffic_routing
        if routing is None:
            return
        ready = self._ready_canary(now)
        for who, (weight, header) in self._states(now).items():
            if weight > 0 and ready < routed_canary_replicas(weight, self.replicas):
                self.violations.append(
                    f"{now} {when}: {who} sends {weight}% to {ready} Ready canary pods"
                )
            if header and ready < 1:
                self.violations.append(f"{now} {when}: {who} header route, no Ready canary pod")
            if routing.dynamic_stable_scale:
                need = math.ceil(self.replicas * (100 - weight) / 100)
                stable_ready = sum(p.ready(now) for p in self.stable.pods)
                if stable_ready < need:
                    self.violations.append(
                        f"{now} {when}: {who}: stable has {stable_ready} Ready pods "
                        f"for {100 - weight}%"
                    )

    def apply(self, actions: list[Action]) -> None:
        now = self._now
        assert now is not None
        route = self.route
        for action in actions:
            for who, (weight, header) in self._states(now).items():
                self._check_action(now, action, who, weight, header)
            if isinstance(action, SetTrafficWeight | SetHeaderRoute | ResetTraffic):
                if route.conflict is not None:
                    continue  # another field manager owns the route: the write fails
                if isinstance(action, SetTrafficWeight):
                    route.weight = action.weight
                elif isinstance(action, SetHeaderRoute):
                    route.header_route = action.enabled
                else:
                    route.weight, route.header_route = 0, False
                route.record(now)
            self.order.append((now, type(action).__name__))
        super().apply(actions)
        self._check(now, "after acting")

    def _check_action(
        self, now: datetime, action: Action, who: str, weight: int, header: bool
    ) -> None:
        sends = weight > 0 or header
        match action:
            case DeleteCanary() if sends:
                self.violations.append(f"{now}: canary deleted while the {who} sends to it")
            case ScaleCanary(replicas=replicas) if self.canary is not None:
                if weight and replicas < routed_canary_replicas(weight, self.replicas):
                    self.violations.append(f"{now}: canary shrunk below its {weight}% ({who})")
                if sends and action.image != self.canary.image:
                    self.violations.append(f"{now}: canary pods replaced while the {who} sends")
            case ScaleStable(replicas=replicas) | UpdateStable(replicas=replicas):
                share = math.ceil(self.replicas * (100 - weight) / 100)
                if replicas is not None and replicas < share:
                    self.violations.append(f"{now}: stable shrunk below its share ({who})")

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
