"""Istio router: route weights in a VirtualService.

In each steered http route (the named ones, else every http route with a
destination on the stable Service) the stable destination gets weight 100-N
and a canary destination N; at 0 the canary destination is removed again.
The canary destination is either the canary Service (two Services, the
default) or, with `subsets`, the stable host's canary subset from a
DestinationRule the user keeps (the controller only reads it).

The header route is one extra http route per steered route, named
`canary-header-<i>` and placed right before it (Istio takes the first http
route that matches): the same matches with the headers added, to the canary.

The VirtualService schema makes `spec.http` one atomic list, so the
controller applies `spec.http` only (the live list with the weights changed)
and nothing else; hosts, gateways, tcp/tls routes, labels and annotations stay
with whoever wrote them, and a conflict on `spec.http` is reported.

With istiod's status enabled (`PILOT_ENABLE_STATUS`), its `Reconciled`
condition says whether every proxy has the latest generation; until it does,
`istio_verdict` reports the route as pending, as the Gateway API router does
for a gateway that has not processed the route. Without it nothing is known
beyond the object.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from controller.adapters.routers.applying import (
    DESTINATION_RULE,
    VIRTUAL_SERVICE,
    Objects,
    apply_body,
)
from controller.adapters.routers.protocol import RouteIntent
from controller.adapters.routers.services import (
    RouterBase,
    ServiceChecks,
    merged,
    selector_problem,
)
from controller.api.traffic import HeaderRoute, RouterKind, TrafficRouting
from controller.engine.observations import RouteView

HEADER_ROUTE_PREFIX = "canary-header-"

Http = dict[str, Any]


def host_is(host: str | None, service: str, namespace: str) -> bool:
    """`payments`, `payments.shop`, `payments.shop.svc`... all name the same Service."""
    if not host:
        return False
    full = f"{service}.{namespace}.svc.cluster.local"
    return host == service or (host.startswith(f"{service}.{namespace}") and full.startswith(host))


class Destinations:
    """Which destinations are stable and canary, for two Services or for subsets."""

    def __init__(self, routing: TrafficRouting, namespace: str) -> None:
        assert routing.istio is not None
        self.stable, self.canary = routing.stable_service, routing.canary_service_name
        self.subsets = routing.istio.subsets
        self.namespace = namespace

    def is_stable(self, dest: dict[str, Any]) -> bool:
        destination = dest.get("destination") or {}
        if not host_is(destination.get("host"), self.stable, self.namespace):
            return False
        if self.subsets is None:
            return True
        return destination.get("subset") in (None, self.subsets.stable_subset)

    def is_canary(self, dest: dict[str, Any]) -> bool:
        destination = dest.get("destination") or {}
        if self.subsets is None:
            return host_is(destination.get("host"), self.canary, self.namespace)
        return host_is(destination.get("host"), self.stable, self.namespace) and destination.get(
            "subset"
        ) == (self.subsets.canary_subset)

    def stable_of(self, dest: dict[str, Any], weight: int) -> dict[str, Any]:
        destination = copy.deepcopy(dest.get("destination") or {})
        if self.subsets is not None:
            destination["subset"] = self.subsets.stable_subset
        return {**dest, "destination": destination, "weight": weight}

    def canary_of(self, dest: dict[str, Any], weight: int) -> dict[str, Any]:
        destination = copy.deepcopy(dest.get("destination") or {})
        if self.subsets is not None:
            destination["subset"] = self.subsets.canary_subset
        else:
            destination["host"] = self.canary
        return {"destination": destination, "weight": weight}


def is_header_route(http: Http) -> bool:
    return str(http.get("name") or "").startswith(HEADER_ROUTE_PREFIX)


def steered(routes: list[Http], dests: Destinations, names: list[str] | None) -> list[int]:
    found = []
    for i, http in enumerate(routes):
        if is_header_route(http):
            continue
        if names is not None:
            if http.get("name") in names:
                found.append(i)
        elif any(dests.is_stable(d) for d in http.get("route") or []):
            found.append(i)
    return found


def http_weight(http: Http, dests: Destinations) -> int:
    route = http.get("route") or []
    stable = [d for d in route if dests.is_stable(d)]
    canary = [d for d in route if dests.is_canary(d)]
    default = 100 if len(route) == 1 else 0
    stable_w = sum(int(d.get("weight", default)) for d in stable)
    canary_w = sum(int(d.get("weight", default)) for d in canary)
    total = stable_w + canary_w
    return round(100 * canary_w / total) if total else 0


def _weighted(http: Http, dests: Destinations, weight: int) -> Http:
    route = [d for d in http.get("route") or [] if not dests.is_canary(d)]
    stable = [d for d in route if dests.is_stable(d)]
    out = [dests.stable_of(d, 100 - weight) if dests.is_stable(d) else d for d in route]
    if weight > 0 and stable:
        out.append(dests.canary_of(stable[0], weight))
    return {**http, "route": out}


def _header_match(match: dict[str, Any], header_route: HeaderRoute) -> dict[str, Any]:
    headers = dict(match.get("headers") or {})
    for h in header_route.match:
        headers[h.name.lower()] = {"exact": h.value} if h.type == "Exact" else {"regex": h.value}
    return {**match, "headers": headers}


def _header_http(http: Http, index: int, dests: Destinations, hr: HeaderRoute) -> Http:
    base = {k: copy.deepcopy(v) for k, v in http.items() if k not in ("name", "route", "mirror")}
    matches = http.get("match") or [{}]
    stable = next(d for d in http.get("route") or [] if dests.is_stable(d))
    return {
        **base,
        "name": f"{HEADER_ROUTE_PREFIX}{index}",
        "match": [_header_match(m, hr) for m in matches],
        "route": [dests.canary_of(stable, 100)],
    }


def render_http(
    routes: list[Http],
    dests: Destinations,
    names: list[str] | None,
    weight: int,
    header_route: HeaderRoute | None,
) -> list[Http]:
    targets = set(steered(routes, dests, names))
    out: list[Http] = []
    k = 0
    for i, http in enumerate(routes):
        if is_header_route(http):
            continue
        if i not in targets:
            out.append(http)
            continue
        if header_route is not None and any(dests.is_stable(d) for d in http.get("route") or []):
            out.append(_header_http(http, k, dests, header_route))
        k += 1
        out.append(_weighted(http, dests, weight))
    return out


def _generation(value: Any) -> int | None:
    """observedGeneration is int-or-string in Istio's schema."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def istio_verdict(vs: Mapping[str, Any]) -> str | None:
    """Why the proxies may not serve this VirtualService yet; None when they do or nobody says.

    istiod reports distribution in `status.conditions[type=Reconciled]` (only
    with `PILOT_ENABLE_STATUS`): True once every proxy has the generation in
    `observedGeneration`. Validation messages are analysis warnings; a
    VirtualService istiod refuses is refused at admission, before it exists.
    """
    meta, status = vs.get("metadata") or {}, vs.get("status") or {}
    name, generation = meta.get("name", ""), _generation(meta.get("generation"))
    reconciled = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Reconciled"), None
    )
    if reconciled is None:
        return None
    seen = _generation(reconciled.get("observedGeneration", status.get("observedGeneration")))
    if generation is not None and seen is not None and seen < generation:
        return (
            f"waiting for istiod to distribute generation {generation} of VirtualService "
            f"{name} (it last reported generation {seen})"
        )
    if reconciled.get("status") != "True":
        detail = reconciled.get("message") or reconciled.get("reason") or "not yet"
        return f"VirtualService {name} not yet on every proxy: {detail}"
    return None


class IstioRouter(RouterBase):
    kind: RouterKind = "istio"

    def __init__(
        self,
        objects: Objects,
        release: dict[str, Any],
        routing: TrafficRouting,
        services: ServiceChecks,
    ) -> None:
        assert routing.istio is not None
        super().__init__(objects, release, routing, services)
        self.name = routing.istio.virtual_service
        self.names = routing.istio.routes
        self.dests = Destinations(routing, self.namespace)

    def _read(self) -> tuple[dict[str, Any] | None, list[Http]]:
        live = self.objects.get(VIRTUAL_SERVICE, self.namespace, self.name)
        return live, list(((live or {}).get("spec") or {}).get("http") or [])

    def _state(self, routes: list[Http]) -> tuple[int | None, bool]:
        header = any(is_header_route(h) for h in routes)
        targets = steered(routes, self.dests, self.names)
        if not targets:
            return None, header
        return http_weight(routes[targets[0]], self.dests), header

    def _body(
        self, live: dict[str, Any], routes: list[Http], weight: int, header: bool
    ) -> dict[str, Any]:
        header_route = self.routing.header_route if header else None
        rendered = render_http(routes, self.dests, self.names, weight, header_route)
        version = live["metadata"].get("resourceVersion")
        return apply_body(
            VIRTUAL_SERVICE, self.namespace, self.name, version, spec={"http": rendered}
        )

    def _subsets_problem(self) -> str | None:
        subsets = self.dests.subsets
        if subsets is None:
            return self.services.stable_problem()
        rule = self.objects.get(DESTINATION_RULE, self.namespace, subsets.destination_rule)
        if rule is None:
            return f"DestinationRule {subsets.destination_rule} not found"
        defined = {s.get("name"): s for s in (rule.get("spec") or {}).get("subsets") or []}
        missing = [n for n in (subsets.stable_subset, subsets.canary_subset) if n not in defined]
        if missing:
            return f"DestinationRule {subsets.destination_rule} has no subset {', '.join(missing)}"
        labels = self.services.canary_labels()
        if labels is None:
            return None
        stable_labels = defined[subsets.stable_subset].get("labels") or {}
        what = f"subset {subsets.stable_subset} of DestinationRule {subsets.destination_rule}"
        return selector_problem(what, stable_labels, labels)

    def verify(self, intent: RouteIntent) -> RouteView:
        live, routes = self._read()
        if live is None:
            return RouteView(None, problem=f"VirtualService {self.name} not found")
        weight, header = self._state(routes)
        if weight is None:
            if self.names:
                missing = (
                    f"VirtualService {self.name} has no http route named {', '.join(self.names)}"
                )
            else:
                missing = (
                    f"VirtualService {self.name} has no http route to "
                    f"Service {self.routing.stable_service}"
                )
            return RouteView(None, header, problem=missing)
        unsteerable = [
            str(routes[i].get("name") or i)
            for i in steered(routes, self.dests, self.names)
            if not any(self.dests.is_stable(d) for d in routes[i].get("route") or [])
        ]
        problem = (
            f"VirtualService {self.name} http route {', '.join(unsteerable)} has no destination "
            f"on Service {self.routing.stable_service}"
            if unsteerable
            else self._subsets_problem()
        )
        conflict: str | None = None
        refused: str | None = None
        if problem is None and (weight, header) != (intent.weight, intent.header_route):
            body = self._body(live, routes, intent.weight, intent.header_route)
            conflict, refused = self.objects.blocked(VIRTUAL_SERVICE, body)
        pending = istio_verdict(live)
        return RouteView(
            weight, header, conflict=conflict, problem=problem, rejected=refused, pending=pending
        )

    def _apply(self, weight: int | None, header: bool | None) -> tuple[int, bool]:
        live, routes = self._read()
        if live is None:
            raise LookupError(f"VirtualService {self.name} not found")
        new_weight, new_header = merged(self._state(routes), weight, header)
        if self.dests.subsets is None and (new_weight > 0 or new_header):
            self.services.ensure_canary_service()
        body = self._body(live, routes, new_weight, new_header)
        applied = self.objects.apply(VIRTUAL_SERVICE, body)
        state = self._state(list((applied.get("spec") or {}).get("http") or []))
        return state[0] or 0, state[1]
