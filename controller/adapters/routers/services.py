"""The canary Service the controller manages, and the check that makes weights exact.

A route splits requests between two Services, so a weight is exact only if
the stable Service does not also select the canary pods. Canary pods carry
the target's pod labels plus `canary.dev/track: canary`; a stable Service
selecting `canary.dev/track: stable` (or anything else the canary pods lack)
is therefore required, and checked before any canary pod is started.

The canary Service is a copy of the stable one (same ports) selecting the
canary pods; it belongs to the CanaryRelease, so it goes away with it, and
between releases it simply has no endpoints.
"""

from __future__ import annotations

from typing import Any

from controller.adapters.kubernetes import RELEASE_LABEL, TRACK_LABEL
from controller.adapters.routers.applying import (
    DEPLOYMENT,
    SERVICE,
    Objects,
    apply_body,
    owner_reference,
)
from controller.api.traffic import TrafficRouting

_PORT_FIELDS = ("name", "port", "targetPort", "protocol", "appProtocol")


def canary_pod_labels(target: dict[str, Any], release_name: str) -> dict[str, str]:
    """The labels the controller gives canary pods (see adapters/kubernetes.canary_manifest)."""
    template = target.get("spec", {}).get("template", {})
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    return {**labels, TRACK_LABEL: "canary", RELEASE_LABEL: release_name}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selector_problem(
    what: str, selector: dict[str, str], canary_labels: dict[str, str]
) -> str | None:
    if not selector:
        return f"{what} has no selector"
    if selects(selector, canary_labels):
        return (
            f"{what} selects the canary pods too (selector {selector}), so no weight "
            f"would be exact: add {TRACK_LABEL}: stable to it and to the Deployment's pod labels"
        )
    return None


def canary_service_body(
    stable: dict[str, Any], release: dict[str, Any], routing: TrafficRouting
) -> dict[str, Any]:
    meta = release["metadata"]
    spec = stable.get("spec") or {}
    selector = {**(spec.get("selector") or {}), TRACK_LABEL: "canary", RELEASE_LABEL: meta["name"]}
    ports = [
        {k: p[k] for k in _PORT_FIELDS if p.get(k) is not None} for p in spec.get("ports") or []
    ]
    body = apply_body(
        SERVICE,
        meta["namespace"],
        routing.canary_service_name,
        None,
        spec={"selector": selector, "ports": ports},
    )
    body["metadata"]["labels"] = {TRACK_LABEL: "canary", RELEASE_LABEL: meta["name"]}
    body["metadata"]["ownerReferences"] = [owner_reference(release)]
    return body


class ServiceChecks:
    """Reads the stable Service and target for the checks; applies the canary Service."""

    def __init__(
        self, objects: Objects, release: dict[str, Any], routing: TrafficRouting, target: str
    ) -> None:
        self.objects, self.release, self.routing, self.target = objects, release, routing, target
        self.namespace: str = release["metadata"]["namespace"]

    def canary_labels(self) -> dict[str, str] | None:
        target = self.objects.get(DEPLOYMENT, self.namespace, self.target)
        if target is None:
            return None
        return canary_pod_labels(target, self.release["metadata"]["name"])

    def stable_problem(self) -> str | None:
        """Why the stable Service cannot carry an exact split, or None."""
        name = self.routing.stable_service
        stable = self.objects.get(SERVICE, self.namespace, name)
        if stable is None:
            return f"Service {name} (trafficRouting.stableService) not found"
        labels = self.canary_labels()
        if labels is None:
            return None  # the engine reports the missing target
        selector = (stable.get("spec") or {}).get("selector") or {}
        return selector_problem(f"Service {name}", selector, labels)

    def ensure_canary_service(self) -> None:
        stable = self.objects.get(SERVICE, self.namespace, self.routing.stable_service)
        if stable is None:
            raise LookupError(f"Service {self.routing.stable_service} not found")
        self.objects.apply(SERVICE, canary_service_body(stable, self.release, self.routing))


class RouterBase:
    """What every router holds and does: the release's routing, and one read-merge-apply.

    A router says how to read its object's current (weight, header route) and
    how to apply a new pair (`_apply`); changing one of the two keeps the other.
    """

    def __init__(
        self,
        objects: Objects,
        release: dict[str, Any],
        routing: TrafficRouting,
        services: ServiceChecks,
    ) -> None:
        self.objects, self.release, self.routing = objects, release, routing
        self.services = services
        self.namespace: str = release["metadata"]["namespace"]

    def _apply(self, weight: int | None, header: bool | None) -> tuple[int, bool]:
        """Apply `weight` and `header` (None: keep the live value); the state as applied."""
        raise NotImplementedError

    def set_weight(self, weight: int) -> int:
        return self._apply(weight, None)[0]

    def set_header_route(self, enabled: bool) -> bool:
        return self._apply(None, enabled)[1]

    def reset(self) -> None:
        self._apply(0, False)


def merged(
    live: tuple[int | None, bool], weight: int | None, header: bool | None
) -> tuple[int, bool]:
    """The pair to apply: each requested value, or the live one where none was requested."""
    return (live[0] or 0) if weight is None else weight, live[1] if header is None else header
