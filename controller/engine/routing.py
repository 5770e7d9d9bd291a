"""Exact weights through a traffic router: replicas follow the weight instead of being it.

With `spec.trafficRouting` the route decides who gets which request, so the
rules of the replica-based canary change:

- the canary gets the pods its weight needs (at least one, so a header route
  or a 0% step has somewhere to go); stable keeps its full size unless
  `dynamicStableScale` lets it shrink to its share;
- traffic moves onto the canary only once the canary pods that must carry it
  are Ready, and off it (a lower weight, a superseding image, a rollback)
  before any pod that carries it goes away;
- the engine decides the weight, the router applies it and reports what it
  applied; the next decision reads that back, so a weight counts as set only
  once the route shows it and, where the gateway reports on the route, once
  the gateway has accepted and processed it. Until then nothing that may
  still carry traffic shrinks.

A route someone else owns (a conflict) or a misconfigured one holds the
release where it is and says why in the `TrafficRouted` condition: the
controller never forces a route.
"""

from __future__ import annotations

import math
from typing import Literal

from controller.api.traffic import TrafficRouting, TrafficStatus
from controller.engine.actions import (
    ResetTraffic,
    ScaleCanary,
    ScaleStable,
    SetHeaderRoute,
    SetTrafficWeight,
)
from controller.engine.conditions import find_condition, set_condition
from controller.engine.context import Decision
from controller.engine.observations import RouteView
from controller.engine.replicas import canary_replicas

TRAFFIC_ROUTED = "TrafficRouted"


def routed_canary_replicas(weight: int, total: int) -> int:
    """Pods to carry `weight`% at the stable's load per pod: rounded up, at least one."""
    return max(1, min(max(total, 1), math.ceil(total * weight / 100)))


def stable_share_replicas(routing: TrafficRouting, weight: int, total: int) -> int:
    """Stable's size while the canary takes `weight`%: full, or its share when dynamic."""
    if not routing.dynamic_stable_scale or total <= 0:
        return total
    return max(1, math.ceil(total * (100 - weight) / 100))


def canary_goal(d: Decision, weight: int) -> int:
    """The canary's size for `weight`, with or without a router."""
    if d.spec.traffic_routing is None:
        return canary_replicas(weight, d.total_replicas)
    return routed_canary_replicas(weight, d.total_replicas)


def applied_weight(d: Decision) -> int:
    route = d.observed.route
    return route.weight or 0 if route is not None else 0


def header_applied(d: Decision) -> bool:
    route = d.observed.route
    return route is not None and route.header_route


def route_reset(d: Decision) -> bool:
    """Nothing reaches the canary through the route (a missing route sends nothing).

    A reset the gateway has not processed yet does not count: it may still
    send to the canary. A reset it rejected does: a rollback is never held
    by a gateway that refuses the route (the condition says so).
    """
    route = d.observed.route
    return _shows_reset(d) and (route is None or route.pending is None)


def _shows_reset(d: Decision) -> bool:
    return applied_weight(d) == 0 and not header_applied(d)


def _reset(d: Decision) -> None:
    """Ask for the reset unless the route already shows it (then only the gateway lags)."""
    if _writable(d.observed.route) and not _shows_reset(d):
        d.actions.append(ResetTraffic())


def served(route: RouteView | None) -> bool:
    """The data plane serves what the route object shows, as far as anyone reports."""
    return route is None or route.programmed


def _writable(route: RouteView | None) -> bool:
    return route is not None and route.conflict is None and route.problem is None


def reconcile_routed(d: Decision, image: str, weight: int) -> bool:
    """Drive pods and route toward `weight`; True once the route shows it and pods are Ready."""
    routing = d.spec.traffic_routing
    assert routing is not None
    total, target, canary, route = d.total_replicas, d.target, d.observed.canary, d.observed.route
    applied, header_on = applied_weight(d), header_applied(d)
    header_wanted = routing.header_route is not None
    if canary is None and (route is None or route.problem is not None):
        return False  # a route that cannot be steered gets no canary to steer to
    if canary is not None and canary.image != image and not route_reset(d):
        # New canary pods replace the old ones: the old ones lose their traffic first.
        _reset(d)
        return False

    canary_goal = routed_canary_replicas(weight, total)
    stable_goal = _stable_goal(d, routing, min(applied, weight))
    # Shrinking waits for the gateway too: until it has processed the route it
    # may still send the previous shares.
    in_effect = served(route)
    if target.replicas != stable_goal and (
        target.replicas < stable_goal or (target.ready_replicas >= stable_goal and in_effect)
    ):
        d.actions.append(ScaleStable(stable_goal))
    if canary is None or canary.image != image or canary.replicas != canary_goal:
        shrinking = canary is not None and canary.image == image and canary_goal < canary.replicas
        if not shrinking or (applied <= weight and in_effect):
            d.actions.append(ScaleCanary(image, canary_goal))

    canary_ready = canary is not None and canary.settled(image, canary_goal)
    stable_ready = target.ready_replicas >= _stable_goal(d, routing, weight)
    if _writable(route):
        if applied != weight and (canary_ready if applied < weight else stable_ready):
            d.actions.append(SetTrafficWeight(weight))
        if header_on != header_wanted and (canary_ready or not header_wanted):
            d.actions.append(SetHeaderRoute(header_wanted))
    final_stable = _stable_goal(d, routing, weight)
    return (
        canary_ready
        and in_effect
        and applied == weight
        and header_on == header_wanted
        and target.replicas == final_stable
        and target.ready_replicas >= final_stable
    )


def _stable_goal(d: Decision, routing: TrafficRouting, weight: int) -> int:
    """Stable's size at `weight`; an HPA's count is never overridden (no dynamic scaling)."""
    if d.autoscaled:
        return d.total_replicas
    return stable_share_replicas(routing, weight, d.total_replicas)


def reset_before_scale_down(d: Decision) -> bool:
    """After a release: route back to stable before any canary pod goes; True once it is.

    With `dynamicStableScale` stable may be below full size: it grows back and
    becomes Ready first, so the route never sends everything to a stable that
    cannot carry it. Without it stable is already full and the route resets
    at once.
    """
    routing = d.spec.traffic_routing
    if routing is None or route_reset(d):
        return True
    total, target = d.total_replicas, d.target
    if routing.dynamic_stable_scale and not d.autoscaled and target.ready_replicas < total:
        if target.replicas < total:
            d.actions.append(ScaleStable(total))
        return False
    _reset(d)
    return False


def record_route(d: Decision) -> None:
    """Status and condition from what the router reports, and what was asked of it now."""
    routing, status, route = d.spec.traffic_routing, d.status, d.observed.route
    if routing is None:
        status.traffic = None
        return
    previous = status.traffic or TrafficStatus(router=routing.kind)
    current = previous.model_copy(update={"router": routing.kind})
    if route is not None and route.weight is not None:
        current.weight, current.header_route = route.weight, route.header_route
    elif route is not None:
        current.weight, current.header_route = 0, False
    for action in d.actions:
        if isinstance(action, SetTrafficWeight):
            current.desired_weight = action.weight
        elif isinstance(action, SetHeaderRoute):
            current.desired_header_route = action.enabled
        elif isinstance(action, ResetTraffic):
            current.desired_weight, current.desired_header_route = 0, False
    status.traffic = current
    if current.weight != previous.weight:
        d.event("TrafficShifted", f"the {routing.kind} route sends {current.weight}% to the canary")
    if current.header_route != previous.header_route:
        verb = "added" if current.header_route else "removed"
        d.event("HeaderRoute", f"header route to the canary {verb} on the {routing.kind} route")
    _set_routed_condition(d, route, current)


def _set_routed_condition(d: Decision, route: RouteView | None, current: TrafficStatus) -> None:
    status = d.status
    state: Literal["True", "False", "Unknown"]
    before = find_condition(status.conditions, TRAFFIC_ROUTED)
    if route is None:
        state, reason, message = "Unknown", "NotObserved", "the route was not read"
    elif route.conflict is not None:
        state, reason, message = "False", "RouteConflict", route.conflict
    elif route.problem is not None:
        state, reason, message = "False", "RouteInvalid", route.problem
    elif route.rejected is not None:
        state, reason, message = "False", "RouteRejected", route.rejected
    elif route.pending is not None and before is not None and before.reason == "RouteRejected":
        # Refused, and the gateway has not yet looked at what changed since:
        # still refused as far as anyone reports (and no second Warning).
        state, reason, message = "False", "RouteRejected", before.message
    elif route.pending is not None:
        state, reason, message = "Unknown", "RoutePending", route.pending
    else:
        header = ", header route on" if current.header_route else ""
        state, reason = "True", "Applied"
        message = f"{current.weight}% of requests to the canary{header}"
    if state == "False" and (before is None or before.reason != reason):
        d.event(reason, message, warning=True)
    status.conditions = set_condition(
        status.conditions, TRAFFIC_ROUTED, state, reason, message, d.now
    )
