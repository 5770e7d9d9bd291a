"""The three traffic routers against the real apiserver and the routers' real CRDs.

No gateway, ingress controller or mesh runs here: what is under test is what
the controller writes (and does not write) and how the apiserver's field
ownership treats it. Each test plays the other writers with server-side apply
under their own field managers.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from controller.adapters.routers.applying import (
    DESTINATION_RULE,
    FIELD_MANAGER,
    HTTP_ROUTE,
    INGRESS,
    SERVICE,
    VIRTUAL_SERVICE,
)
from controller.adapters.routers.protocol import RouteConflict, RouteIntent, TrafficRouter
from controller.adapters.routers.registry import router_for
from controller.api.spec import GROUP, VERSION, CanaryReleaseSpec
from tests.routing_objects import (
    Cluster,
    destination_rule,
    http_route,
    ingress,
    stable_service,
    virtual_service,
)

HEADER = {"match": [{"name": "X-Canary", "value": "always"}]}


@pytest.fixture
def objects(k8s: client.ApiClient, namespace: str, router_crds: list[str], crd: str) -> Cluster:
    cluster = Cluster(k8s, namespace)
    cluster.create_deployment("payments", 4, "registry.example.com/payments:v1")
    cluster.apply(SERVICE, stable_service("payments"), "gitops")
    return cluster


def _router(objects: Cluster, routing: dict[str, Any]) -> TrafficRouter:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryRelease",
        "metadata": {"name": "payments"},
        "spec": {
            "targetRef": {"name": "payments"},
            "release": {"tag": "v1", "image": "registry.example.com/payments:{tag}"},
            "trafficRouting": {"stableService": "payments", "headerRoute": HEADER, **routing},
        },
    }
    release = objects.create_release(body)
    spec = CanaryReleaseSpec.model_validate(release["spec"])
    return router_for(objects.api, release, spec)


def _backends(route: dict[str, Any], rule: str) -> dict[str, int]:
    found = next(r for r in route["spec"]["rules"] if r.get("name") == rule)
    return {ref["name"]: ref.get("weight", 1) for ref in found["backendRefs"]}


# -- Gateway API ---------------------------------------------------------------


def test_gateway_api_weights_header_route_and_reset(objects: Cluster) -> None:
    gitops = http_route("payments", "payments")
    objects.apply(HTTP_ROUTE, gitops, "gitops")
    objects.hand_over_rules(HTTP_ROUTE, "payments", "rules", gitops)
    router = _router(objects, {"gatewayAPI": {"httpRoute": "payments"}})
    assert router.verify(RouteIntent()).weight == 0

    assert router.set_weight(10) == 10
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None
    assert _backends(route, "api") == {"payments": 90, "payments-canary": 10}
    assert _backends(route, "static") == {"static-files": 1}  # not a rule to the stable Service
    api = next(r for r in route["spec"]["rules"] if r["name"] == "api")
    assert api["filters"][0]["requestHeaderModifier"]["set"][0]["value"] == "gw"
    canary_service = objects.core.read_namespaced_service("payments-canary", objects.namespace)
    assert canary_service.spec.selector == {
        "app": "payments",
        "canary.dev/track": "canary",
        "canary.dev/release": "payments",
    }
    assert canary_service.metadata.owner_references[0].kind == "CanaryRelease"

    assert router.set_header_route(True) is True
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None
    header = next(r for r in route["spec"]["rules"] if r["name"] == "canary-header-0")
    assert header["backendRefs"][0]["name"] == "payments-canary"
    assert header["matches"][0]["path"] == {"type": "PathPrefix", "value": "/api"}
    assert header["matches"][0]["headers"] == [
        {"type": "Exact", "name": "X-Canary", "value": "always"}
    ]
    assert header["filters"] == api["filters"]  # the canary path behaves like the stable one
    view = router.verify(RouteIntent(10, True))
    assert (view.weight, view.header_route, view.conflict, view.problem) == (10, True, None, None)

    router.reset()
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None
    assert _backends(route, "api") == {"payments": 100}
    assert [r["name"] for r in route["spec"]["rules"]] == ["api", "static"]
    # What GitOps wrote outside spec.rules is still GitOps' and untouched.
    assert route["spec"]["parentRefs"][0]["name"] == "public"
    assert route["spec"]["hostnames"] == ["payments.example.com"]
    assert route["metadata"]["labels"] == {"team": "payments"}
    assert objects.managers_of(route, "f:rules") == {FIELD_MANAGER}
    assert FIELD_MANAGER not in objects.managers_of(route, "f:hostnames")


def _gateway_reports(objects: Cluster, resolved: str = "True", reason: str = "ResolvedRefs") -> int:
    """Play the gateway controller: report on the route's current generation, as its status."""
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None
    generation = route["metadata"]["generation"]

    def condition(type_: str, status: str, why: str) -> dict[str, Any]:
        return {
            "type": type_,
            "status": status,
            "reason": why,
            "message": "" if status == "True" else "Service payments-canary not found",
            "observedGeneration": generation,
            "lastTransitionTime": "2026-11-25T10:00:00Z",
        }

    status = {
        "parents": [
            {
                "parentRef": {"name": "public"},
                "controllerName": "example.com/gateway-controller",
                "conditions": [
                    condition("Accepted", "True", "Accepted"),
                    condition("ResolvedRefs", resolved, reason),
                ],
            }
        ]
    }
    objects.write_status(HTTP_ROUTE, "payments", status)
    return int(generation)


def test_gateway_api_a_step_counts_only_once_the_gateway_serves_it(objects: Cluster) -> None:
    gitops = http_route("payments", "payments")
    objects.apply(HTTP_ROUTE, gitops, "gitops")
    objects.hand_over_rules(HTTP_ROUTE, "payments", "rules", gitops)
    router = _router(objects, {"gatewayAPI": {"httpRoute": "payments"}})
    before = _gateway_reports(objects)
    assert router.verify(RouteIntent()).programmed

    assert router.set_weight(10) == 10  # a new generation the gateway has not seen
    view = router.verify(RouteIntent(10))
    assert view.weight == 10 and view.rejected is None
    assert view.pending is not None
    assert "Gateway public" in view.pending and f"saw generation {before}" in view.pending

    after = _gateway_reports(objects, "False", "BackendNotFound")
    assert after > before
    view = router.verify(RouteIntent(10))
    assert view.pending is None and view.rejected is not None
    assert "BackendNotFound: Service payments-canary not found" in view.rejected

    _gateway_reports(objects)
    assert router.verify(RouteIntent(10)).programmed
    # Our apply writes spec.rules only: the gateway's status is left to the gateway.
    router.reset()
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None
    assert route["status"]["parents"][0]["controllerName"] == "example.com/gateway-controller"
    assert router.verify(RouteIntent()).pending is not None


def test_gateway_api_leaves_fields_of_other_managers_alone(objects: Cluster) -> None:
    gitops = http_route("payments", "payments")
    objects.apply(HTTP_ROUTE, gitops, "gitops")
    objects.hand_over_rules(HTTP_ROUTE, "payments", "rules", gitops)
    router = _router(objects, {"gatewayAPI": {"httpRoute": "payments"}})
    note = {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": {"name": "payments", "annotations": {"ops/ticket": "OPS-42"}},
    }
    objects.apply(HTTP_ROUTE, note, "ops")
    for weight in (10, 50, 0):
        router.set_weight(weight)
    router.set_header_route(True)
    router.reset()
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None
    assert route["metadata"]["annotations"]["ops/ticket"] == "OPS-42"
    assert route["metadata"]["labels"] == {"team": "payments"}
    assert objects.managers_of(route, "f:ops/ticket") == {"ops"}


def test_gateway_api_conflict_is_reported_and_not_forced(objects: Cluster) -> None:
    objects.apply(HTTP_ROUTE, http_route("payments", "payments"), "gitops")  # owns spec.rules
    router = _router(objects, {"gatewayAPI": {"httpRoute": "payments"}})
    before = objects.get(HTTP_ROUTE, "payments")

    view = router.verify(RouteIntent(10))
    assert view.weight == 0 and view.conflict is not None
    assert '"gitops"' in view.conflict and ".spec.rules" in view.conflict
    with pytest.raises(RouteConflict) as raised:
        router.set_weight(10)
    assert raised.value.managers == ("gitops",)

    after = objects.get(HTTP_ROUTE, "payments")
    assert before is not None and after is not None
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert FIELD_MANAGER not in objects.managers_of(after, "f:rules")


def test_gateway_api_a_timeout_someone_forces_in_stays_and_blocks_us(objects: Cluster) -> None:
    gitops = http_route("payments", "payments")
    objects.apply(HTTP_ROUTE, gitops, "gitops")
    objects.hand_over_rules(HTTP_ROUTE, "payments", "rules", gitops)
    router = _router(objects, {"gatewayAPI": {"httpRoute": "payments"}})
    router.set_weight(10)
    live = objects.get(HTTP_ROUTE, "payments")
    assert live is not None
    rules = live["spec"]["rules"]
    rules[0]["timeouts"] = {"request": "3s"}
    patch = {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": {"name": "payments"},
        "spec": {"rules": rules},
    }
    objects.apply(HTTP_ROUTE, patch, "ops", force=True)  # a person takes spec.rules over

    view = router.verify(RouteIntent(50))
    assert view.weight == 10 and view.conflict is not None and '"ops"' in view.conflict
    with pytest.raises(RouteConflict):
        router.set_weight(50)
    route = objects.get(HTTP_ROUTE, "payments")
    assert route is not None
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "3s"}
    assert _backends(route, "api") == {"payments": 90, "payments-canary": 10}


def test_gateway_api_reports_what_makes_weights_inexact(objects: Cluster) -> None:
    objects.apply(HTTP_ROUTE, http_route("payments", "payments"), "gitops")
    objects.apply(
        SERVICE, stable_service("payments", selector={"app": "payments"}), "gitops", force=True
    )
    router = _router(objects, {"gatewayAPI": {"httpRoute": "payments"}})
    problem = router.verify(RouteIntent()).problem
    assert problem is not None and "selects the canary pods too" in problem

    missing = router_for(
        objects.api,
        objects.custom.get_namespaced_custom_object(
            GROUP, VERSION, objects.namespace, "canaryreleases", "payments"
        ),
        CanaryReleaseSpec.model_validate(
            {
                "targetRef": {"name": "payments"},
                "release": {"image": "registry.example.com/payments:{tag}"},
                "trafficRouting": {
                    "stableService": "payments",
                    "gatewayAPI": {"httpRoute": "nowhere"},
                },
            }
        ),
    )
    view = missing.verify(RouteIntent())
    assert view.weight is None and view.problem == "HTTPRoute nowhere not found"


# -- NGINX Ingress ---------------------------------------------------------------


def test_nginx_canary_ingress_weights_header_and_reset(objects: Cluster) -> None:
    objects.apply(INGRESS, ingress("payments", "payments"), "gitops")
    stable_before = objects.get(INGRESS, "payments")
    router = _router(objects, {"nginx": {"stableIngress": "payments"}})
    assert router.verify(RouteIntent()).weight == 0

    assert router.set_weight(25) == 25
    assert router.set_header_route(True) is True
    canary = objects.get(INGRESS, "payments-canary")
    assert canary is not None
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "25"
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header-value"] == "always"
    paths = canary["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/", "payments-canary")
    ]
    assert canary["spec"]["ingressClassName"] == "nginx"
    assert canary["metadata"]["ownerReferences"][0]["kind"] == "CanaryRelease"
    view = router.verify(RouteIntent(25, True))
    assert (view.weight, view.header_route, view.conflict) == (25, True, None)

    router.reset()
    canary = objects.get(INGRESS, "payments-canary")
    assert canary is not None
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "0"
    assert "nginx.ingress.kubernetes.io/canary-by-header" not in annotations
    stable_after = objects.get(INGRESS, "payments")
    assert stable_before is not None and stable_after is not None
    assert (
        stable_after["metadata"]["resourceVersion"] == stable_before["metadata"]["resourceVersion"]
    )


def test_nginx_a_weight_someone_else_set_is_a_conflict(objects: Cluster) -> None:
    objects.apply(INGRESS, ingress("payments", "payments"), "gitops")
    router = _router(objects, {"nginx": {"stableIngress": "payments"}})
    router.set_weight(10)
    theirs = {
        "apiVersion": INGRESS.api_version,
        "kind": INGRESS.kind,
        "metadata": {
            "name": "payments-canary",
            "annotations": {"nginx.ingress.kubernetes.io/canary-weight": "80"},
        },
    }
    objects.apply(INGRESS, theirs, "ops", force=True)
    view = router.verify(RouteIntent(10))
    assert view.weight == 80 and view.conflict is not None and '"ops"' in view.conflict
    with pytest.raises(RouteConflict):
        router.set_weight(20)
    canary = objects.get(INGRESS, "payments-canary")
    assert canary is not None
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "80"


# -- Istio -----------------------------------------------------------------------


def _destinations(vs: dict[str, Any], route: str) -> list[tuple[str, str | None, int | None]]:
    http = next(h for h in vs["spec"]["http"] if h.get("name") == route)
    return [
        (d["destination"]["host"], d["destination"].get("subset"), d.get("weight"))
        for d in http["route"]
    ]


def test_istio_two_services_weights_and_header_route(objects: Cluster) -> None:
    gitops = virtual_service("payments", "payments")
    objects.apply(VIRTUAL_SERVICE, gitops, "gitops")
    objects.hand_over_rules(VIRTUAL_SERVICE, "payments", "http", gitops)
    router = _router(objects, {"istio": {"virtualService": "payments"}})

    assert router.set_weight(30) == 30
    assert router.set_header_route(True) is True
    vs = objects.get(VIRTUAL_SERVICE, "payments")
    assert vs is not None
    assert _destinations(vs, "main") == [("payments", None, 70), ("payments-canary", None, 30)]
    assert [h["name"] for h in vs["spec"]["http"]] == ["static", "canary-header-0", "main"]
    header = vs["spec"]["http"][1]
    assert header["match"] == [{"headers": {"x-canary": {"exact": "always"}}}]
    assert header["timeout"] == "5s"
    assert _destinations(vs, "canary-header-0") == [("payments-canary", None, 100)]
    assert vs["spec"]["hosts"] == ["payments.example.com"]

    router.reset()
    vs = objects.get(VIRTUAL_SERVICE, "payments")
    assert vs is not None
    assert _destinations(vs, "main") == [("payments", None, 100)]
    assert [h["name"] for h in vs["spec"]["http"]] == ["static", "main"]


def test_istio_waits_for_istiod_to_distribute_the_route(objects: Cluster) -> None:
    gitops = virtual_service("payments", "payments")
    objects.apply(VIRTUAL_SERVICE, gitops, "gitops")
    objects.hand_over_rules(VIRTUAL_SERVICE, "payments", "http", gitops)
    router = _router(objects, {"istio": {"virtualService": "payments"}})
    assert router.set_weight(30) == 30
    assert router.verify(RouteIntent(30)).programmed  # no status from istiod: the object rules

    def istiod_reports(status: str, message: str) -> int:
        vs = objects.get(VIRTUAL_SERVICE, "payments")
        assert vs is not None
        generation = vs["metadata"]["generation"]
        condition = {
            "type": "Reconciled",
            "status": status,
            "message": message,
            "observedGeneration": str(generation),  # int-or-string, as istiod writes it
            "lastProbeTime": "2026-11-25T10:00:00Z",
        }
        status = {"conditions": [condition], "observedGeneration": generation}
        objects.write_status(VIRTUAL_SERVICE, "payments", status)
        return int(generation)

    istiod_reports("False", "3/4 proxies up to date")
    view = router.verify(RouteIntent(30))
    assert view.pending is not None and "3/4 proxies up to date" in view.pending
    istiod_reports("True", "4/4 proxies up to date")
    assert router.verify(RouteIntent(30)).programmed
    router.reset()  # a new generation istiod has not reported on
    view = router.verify(RouteIntent())
    assert view.pending is not None and "istiod" in view.pending


def test_istio_subsets_of_a_destination_rule(objects: Cluster) -> None:
    gitops = virtual_service("payments", "payments", subsets=True)
    objects.apply(VIRTUAL_SERVICE, gitops, "gitops")
    objects.hand_over_rules(VIRTUAL_SERVICE, "payments", "http", gitops)
    subsets = {"destinationRule": "payments"}
    router = _router(objects, {"istio": {"virtualService": "payments", "subsets": subsets}})
    problem = router.verify(RouteIntent()).problem
    assert problem == "DestinationRule payments not found"

    objects.apply(DESTINATION_RULE, destination_rule("payments", "payments"), "gitops")
    assert router.verify(RouteIntent()).problem is None
    assert router.set_weight(20) == 20
    vs = objects.get(VIRTUAL_SERVICE, "payments")
    assert vs is not None
    assert _destinations(vs, "main") == [("payments", "stable", 80), ("payments", "canary", 20)]
    with pytest.raises(client.ApiException) as raised:  # no canary Service in subset mode
        objects.core.read_namespaced_service("payments-canary", objects.namespace)
    assert raised.value.status == 404


def test_the_apiserver_refuses_two_routers_and_two_nginx_headers(objects: Cluster) -> None:
    def create(routing: dict[str, Any]) -> client.ApiException:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CanaryRelease",
            "metadata": {"name": "invalid"},
            "spec": {
                "targetRef": {"name": "payments"},
                "release": {"image": "registry.example.com/payments:{tag}"},
                "trafficRouting": {"stableService": "payments", **routing},
            },
        }
        with pytest.raises(client.ApiException) as raised:
            objects.create_release(body)
        return raised.value

    both = create({"gatewayAPI": {"httpRoute": "a"}, "nginx": {"stableIngress": "b"}})
    assert both.status == 422 and "exactly one router" in str(both.body)
    two = {"match": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    headers = create({"nginx": {"stableIngress": "b"}, "headerRoute": two})
    assert headers.status == 422 and "one header only" in str(headers.body)
