"""ingress-nginx router: a canary Ingress beside the stable one.

ingress-nginx splits traffic when a second Ingress with the same hosts and
paths carries `nginx.ingress.kubernetes.io/canary: "true"`: it then sends
`canary-weight` percent of the requests to that Ingress's backend, and every
request matching `canary-by-header` (+ `-value` or `-pattern`) whatever the
weight. The controller creates that Ingress, `<stableIngress>-canary`, from
the stable one (the hosts and paths that lead to the stable Service, now
leading to the canary Service) and owns it: it belongs to the CanaryRelease.
The stable Ingress is only read, never written.

Only one header can be routed on: ingress-nginx has a single canary-by-header.
"""

from __future__ import annotations

import copy
from typing import Any

from controller.adapters.kubernetes import RELEASE_LABEL
from controller.adapters.routers.applying import INGRESS, Objects, apply_body, owner_reference
from controller.adapters.routers.protocol import RouteIntent
from controller.adapters.routers.services import RouterBase, ServiceChecks, merged
from controller.api.traffic import RouterKind, TrafficRouting
from controller.engine.observations import RouteView


def canary_ingress_name(stable_ingress: str) -> str:
    return f"{stable_ingress}-canary"  # spec validation keeps it within 253


def _to_canary(backend: dict[str, Any] | None, stable: str, canary: str) -> dict[str, Any] | None:
    service = (backend or {}).get("service") or {}
    if service.get("name") != stable:
        return None
    return {"service": {**copy.deepcopy(service), "name": canary}}


def canary_rules(stable_ingress: dict[str, Any], stable: str, canary: str) -> dict[str, Any]:
    """The stable Ingress's hosts and paths that lead to `stable`, leading to `canary` instead."""
    spec = stable_ingress.get("spec") or {}
    out: dict[str, Any] = {}
    if spec.get("ingressClassName"):
        out["ingressClassName"] = spec["ingressClassName"]
    default = _to_canary(spec.get("defaultBackend"), stable, canary)
    if default is not None:
        out["defaultBackend"] = default
    rules = []
    for rule in spec.get("rules") or []:
        paths = []
        for path in (rule.get("http") or {}).get("paths") or []:
            backend = _to_canary(path.get("backend"), stable, canary)
            if backend is not None:
                paths.append({**copy.deepcopy(path), "backend": backend})
        if paths:
            host = {"host": rule["host"]} if rule.get("host") else {}
            rules.append({**host, "http": {"paths": paths}})
    if rules:
        out["rules"] = rules
    return out


def canary_annotations(routing: TrafficRouting, weight: int, header: bool) -> dict[str, str]:
    assert routing.nginx is not None
    prefix = routing.nginx.annotation_prefix
    annotations = {f"{prefix}/canary": "true", f"{prefix}/canary-weight": str(weight)}
    if header and routing.header_route is not None:
        match = routing.header_route.match[0]
        annotations[f"{prefix}/canary-by-header"] = match.name
        key = "canary-by-header-value" if match.type == "Exact" else "canary-by-header-pattern"
        annotations[f"{prefix}/{key}"] = match.value
    return annotations


def observed_state(canary_ingress: dict[str, Any] | None, prefix: str) -> tuple[int, bool]:
    if canary_ingress is None:
        return 0, False
    annotations = (canary_ingress.get("metadata") or {}).get("annotations") or {}
    if annotations.get(f"{prefix}/canary") != "true":
        return 0, False
    try:
        weight = int(annotations.get(f"{prefix}/canary-weight", "0"))
    except ValueError:
        weight = 0
    return weight, f"{prefix}/canary-by-header" in annotations


class NginxRouter(RouterBase):
    kind: RouterKind = "nginx"

    def __init__(
        self,
        objects: Objects,
        release: dict[str, Any],
        routing: TrafficRouting,
        services: ServiceChecks,
    ) -> None:
        assert routing.nginx is not None
        super().__init__(objects, release, routing, services)
        self.stable_name = routing.nginx.stable_ingress
        self.name = canary_ingress_name(self.stable_name)
        self.prefix = routing.nginx.annotation_prefix

    def _body(self, stable: dict[str, Any], weight: int, header: bool) -> dict[str, Any]:
        spec = canary_rules(stable, self.routing.stable_service, self.routing.canary_service_name)
        body = apply_body(INGRESS, self.namespace, self.name, None, spec=spec)
        body["metadata"]["labels"] = {RELEASE_LABEL: self.release["metadata"]["name"]}
        body["metadata"]["annotations"] = canary_annotations(self.routing, weight, header)
        body["metadata"]["ownerReferences"] = [owner_reference(self.release)]
        return body

    def _stable(self) -> tuple[dict[str, Any] | None, str | None]:
        stable = self.objects.get(INGRESS, self.namespace, self.stable_name)
        if stable is None:
            return None, f"Ingress {self.stable_name} (trafficRouting.nginx) not found"
        spec = canary_rules(stable, self.routing.stable_service, self.routing.canary_service_name)
        if not spec.get("rules") and not spec.get("defaultBackend"):
            problem = (
                f"Ingress {self.stable_name} has no path to Service {self.routing.stable_service}"
            )
            return stable, problem
        return stable, None

    def verify(self, intent: RouteIntent) -> RouteView:
        canary = self.objects.get(INGRESS, self.namespace, self.name)
        weight, header = observed_state(canary, self.prefix)
        stable, problem = self._stable()
        problem = problem or self.services.stable_problem()
        conflict = refused = None
        wanted = (intent.weight, intent.header_route)
        if stable is not None and problem is None and (weight, header) != wanted:
            body = self._body(stable, intent.weight, intent.header_route)
            conflict, refused = self.objects.blocked(INGRESS, body)
        return RouteView(weight, header, conflict=conflict, problem=problem, rejected=refused)

    def _apply(self, weight: int | None, header: bool | None) -> tuple[int, bool]:
        stable, problem = self._stable()
        if stable is None or problem is not None:
            raise LookupError(problem)
        now = observed_state(self.objects.get(INGRESS, self.namespace, self.name), self.prefix)
        new_weight, new_header = merged(now, weight, header)
        if new_weight > 0 or new_header:
            self.services.ensure_canary_service()
        applied = self.objects.apply(INGRESS, self._body(stable, new_weight, new_header))
        return observed_state(applied, self.prefix)

    def reset(self) -> None:
        if self.objects.get(INGRESS, self.namespace, self.name) is None:
            return  # no canary Ingress: nothing reaches the canary through ingress-nginx
        self._apply(0, False)
