"""The runtime's side of traffic routing: read the route before deciding, apply after.

The router is observed like everything else the engine decides on: what the
route applies now, and whether another field manager blocks what the engine
last asked for (status.traffic keeps that across restarts). Applying never
raises for a conflict: the next reconcile observes it and the engine reports
it, so one blocked route cannot stop the other actions of a decision.
"""

from __future__ import annotations

from typing import Any

import structlog
from kubernetes.client.exceptions import ApiException

from controller.adapters.ports import Cluster
from controller.adapters.routers.protocol import (
    RouteChanged,
    RouteConflict,
    RouteIntent,
    TrafficRouter,
)
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import ResetTraffic, SetHeaderRoute, SetTrafficWeight, TrafficAction
from controller.engine.observations import RouteView

log = structlog.get_logger("controller.routing")


def intent_of(status: CanaryReleaseStatus) -> RouteIntent:
    traffic = status.traffic
    if traffic is None:
        return RouteIntent()
    return RouteIntent(traffic.desired_weight, traffic.desired_header_route)


def observe_route(
    cluster: Cluster,
    release: dict[str, Any],
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
) -> tuple[TrafficRouter | None, RouteView | None]:
    """The release's router and what its route shows; (None, None) without trafficRouting."""
    if spec.traffic_routing is None:
        return None, None
    router = cluster.traffic_router(release, spec)
    try:
        return router, router.verify(intent_of(status))
    except ApiException as exc:
        if exc.status != 403:
            raise
        problem = f"the controller may not read the {router.kind} route: {exc.reason}"
        return router, RouteView(None, problem=problem)


def apply_traffic(router: TrafficRouter | None, action: TrafficAction) -> None:
    """Ask the router; a conflict or a moved route is logged and observed next time."""
    if router is None:
        log.warning("traffic action without a router", action=repr(action))
        return
    try:
        match action:
            case SetTrafficWeight(weight=weight):
                applied = router.set_weight(weight)
                log.info("traffic weight set", router=router.kind, asked=weight, applied=applied)
            case SetHeaderRoute(enabled=enabled):
                present = router.set_header_route(enabled)
                log.info("header route set", router=router.kind, asked=enabled, present=present)
            case ResetTraffic():
                router.reset()
                log.info("traffic reset to stable", router=router.kind)
    except RouteConflict as conflict:
        log.warning("route conflict, not forced", router=router.kind, conflict=str(conflict))
    except (RouteChanged, LookupError) as exc:
        log.info("route not applied; reading it again next time", reason=str(exc))
    except ApiException as exc:
        if exc.status not in (400, 422):
            raise
        log.warning("route refused by the apiserver; reported next time", reason=str(exc.reason))
