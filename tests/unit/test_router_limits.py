"""Routes the routers cannot steer, or the apiserver would refuse: reported, not raised, and
names that stay valid."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.client.exceptions import ApiException

from controller.adapters.routers import gatewayapi, nginx
from controller.adapters.routers.applying import Kind, Objects
from controller.adapters.routers.gatewayapi import GatewayAPIRouter
from controller.adapters.routers.protocol import RouteIntent
from controller.adapters.routers.services import ServiceChecks
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.api.traffic import TrafficRouting, TrafficStatus
from controller.runtime.routing import observe_route

RELEASE = {
    "apiVersion": "canary.dev/v1alpha1",
    "kind": "CanaryRelease",
    "metadata": {"name": "payments", "namespace": "shop", "uid": "u-1"},
}


class FakeObjects(Objects):
    """In-memory objects; applies are recorded; `invalid` makes every apply a 422."""

    def __init__(self, objs: dict[tuple[str, str], dict[str, Any]], invalid: bool = False) -> None:
        self.objs, self.invalid, self.applied = objs, invalid, []

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objs.get((kind.kind, name))
        return copy.deepcopy(found) if found is not None else None

    def apply(self, kind: Kind, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        if self.invalid:
            raise ApiException(status=422, reason="Unprocessable Entity")
        self.applied.append((kind.kind, body, dry_run))
        if dry_run:
            return body
        key = (kind.kind, body["metadata"]["name"])
        merged = {**copy.deepcopy(self.objs.get(key, {})), **body}
        self.objs[key] = merged
        return merged


def _objects(rules: list[dict[str, Any]], invalid: bool = False) -> FakeObjects:
    return FakeObjects(
        {
            ("HTTPRoute", "payments"): {
                "metadata": {
                    "name": "payments",
                    "namespace": "shop",
                    "resourceVersion": "1",
                    "generation": 1,
                },
                "spec": {"rules": rules},
            },
            ("Service", "payments"): {
                "spec": {
                    "selector": {"app": "p", "canary.dev/track": "stable"},
                    "ports": [{"name": "http", "port": 80}],
                }
            },
            ("Deployment", "app"): {"spec": {"template": {"metadata": {"labels": {"app": "p"}}}}},
        },
        invalid,
    )


def _router(objects: FakeObjects, **gateway: Any) -> GatewayAPIRouter:
    routing = TrafficRouting.model_validate(
        {
            "stableService": "payments",
            "gatewayAPI": {"httpRoute": "payments", **gateway},
            "headerRoute": {"match": [{"name": "X-Canary", "value": "always"}]},
        }
    )
    return GatewayAPIRouter(
        objects, RELEASE, routing, ServiceChecks(objects, RELEASE, routing, "app")
    )


def _rule(i: int) -> dict[str, Any]:
    return {
        "name": f"r{i}",
        "matches": [{"path": {"type": "PathPrefix", "value": f"/p{i}"}}],
        "backendRefs": [{"name": "payments", "port": 80}],
    }


def test_header_route_on_a_route_with_nine_rules_stays_within_the_httproute_schema() -> None:
    """HTTPRoute spec.rules has maxItems 16 (gateway-api v1.6.3 CRD): rendering 18 rules is
    refused by the apiserver (422), so verify() must say so before a canary starts."""
    routing = TrafficRouting.model_validate(
        {
            "stableService": "payments",
            "gatewayAPI": {"httpRoute": "r"},
            "headerRoute": {"match": [{"name": "X-Canary", "value": "always"}]},
        }
    )
    out = gatewayapi.render_rules(
        [_rule(i) for i in range(9)], routing, None, 10, routing.header_route
    )
    assert len(out) == 18
    view = _router(_objects([_rule(i) for i in range(9)])).verify(RouteIntent(0, False))
    assert view.problem is not None, f"{len(out)} rules rendered, route reported as {view}"


def test_a_route_the_apiserver_refuses_is_reported_not_a_crash_of_every_reconcile() -> None:
    """Once the header route is asked for (status.traffic.desiredHeaderRoute), a 422 on the
    dry-run must become RouteView.problem; today observe_route raises before decide(), so
    the release is never judged again and `abort` is never answered."""
    objects = _objects([_rule(i) for i in range(9)], invalid=True)
    router = _router(objects)

    class Cluster:
        def traffic_router(self, release: Any, spec: Any) -> GatewayAPIRouter:
            return router

    spec = CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "app"},
            "release": {"image": "r/app:{tag}"},
            "trafficRouting": router.routing.model_dump(by_alias=True, exclude_none=True),
        }
    )
    status = CanaryReleaseStatus(
        traffic=TrafficStatus(
            router="gatewayAPI", weight=10, desired_weight=10, desired_header_route=True
        )
    )
    _, view = observe_route(Cluster(), RELEASE, spec, status)  # type: ignore[arg-type]
    assert view is not None and (view.problem or view.rejected), view


def test_a_named_rule_without_the_stable_backend_is_route_invalid() -> None:
    """docs/traffic.md: RouteInvalid for a missing route/rule. A named rule that cannot be
    steered (no backendRef to stableService) is reported today as weight 0, no problem,
    and the release waits forever for a weight the route can never show."""
    rules = [_rule(0), {"name": "static", "backendRefs": [{"name": "static-files", "port": 80}]}]
    router = _router(_objects(rules), rules=["static"])
    assert router.set_weight(10) == 0  # the apply "succeeds" and changes nothing
    view = router.verify(RouteIntent(10, False))
    assert view.problem is not None, view


def test_canary_service_name_is_a_valid_service_name() -> None:
    """Service names are DNS-1035 labels of at most 63 characters; the CRD accepts any
    stableService up to 253, and `-canary` is appended."""
    stable = "payments-api-eu-west-1-primary-cluster-green-deploy-v2abcd"  # 58 chars
    try:
        routing = TrafficRouting.model_validate(
            {"stableService": stable, "gatewayAPI": {"httpRoute": "r"}}
        )
    except ValueError:
        return  # refused with a message: fine
    assert len(routing.canary_service_name) <= 63, routing.canary_service_name


def test_the_canary_ingress_is_never_the_stable_ingress() -> None:
    """docs/traffic.md: 'The stable Ingress is only read, never written.'"""
    for length in (252, 253):
        stable = "a" * length
        try:
            TrafficRouting.model_validate(
                {"stableService": "s", "nginx": {"stableIngress": stable}}
            )
        except ValueError:
            continue  # refused: fine
        name = nginx.canary_ingress_name(stable)
        assert name != stable and not name.endswith("-") and len(name) <= 253, name
