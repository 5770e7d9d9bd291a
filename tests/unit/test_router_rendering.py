"""What each router writes, as pure functions of the live object: no cluster needed."""

from __future__ import annotations

import copy
from typing import Any

from controller.adapters.routers import gatewayapi, istio, nginx
from controller.api.traffic import TrafficRouting

HEADER = {"match": [{"name": "X-Canary", "value": "always"}]}


def _routing(**router: Any) -> TrafficRouting:
    return TrafficRouting.model_validate({"stableService": "payments", **router})


def _rules() -> list[dict[str, Any]]:
    return [
        {
            "name": "api",
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "timeouts": {"request": "3s"},
            "backendRefs": [
                {"group": "", "kind": "Service", "name": "payments", "port": 80, "weight": 1}
            ],
        },
        {"name": "static", "backendRefs": [{"name": "static-files", "port": 80}]},
    ]


def test_gateway_weights_and_back_again_restore_the_rules() -> None:
    routing = _routing(gatewayAPI={"httpRoute": "r"}, headerRoute=HEADER)
    original = _rules()
    at_ten = gatewayapi.render_rules(original, routing, None, 10, routing.header_route)
    assert [r["name"] for r in at_ten] == ["canary-header-0", "api", "static"]
    api = at_ten[1]
    assert [(b["name"], b["weight"]) for b in api["backendRefs"]] == [
        ("payments", 90),
        ("payments-canary", 10),
    ]
    assert api["backendRefs"][1]["port"] == 80 and api["backendRefs"][1]["kind"] == "Service"
    assert gatewayapi.rule_weight(api, "payments", "payments-canary") == 10
    header = at_ten[0]
    assert header["timeouts"] == {"request": "3s"}
    assert header["matches"][0]["headers"] == [
        {"type": "Exact", "name": "X-Canary", "value": "always"}
    ]
    assert at_ten[2] == original[1]
    back = gatewayapi.render_rules(at_ten, routing, None, 0, None)
    assert [r["name"] for r in back] == ["api", "static"]
    assert back[0]["backendRefs"] == [{**original[0]["backendRefs"][0], "weight": 100}]
    assert original == _rules()  # the live object is never mutated


def test_gateway_steers_only_the_named_rules() -> None:
    routing = _routing(gatewayAPI={"httpRoute": "r", "rules": ["static"]})
    rules = _rules()
    rules[1]["backendRefs"] = [{"name": "payments", "port": 80}]
    assert gatewayapi.steered(rules, "payments", ["static"]) == [1]
    out = gatewayapi.render_rules(rules, routing, ["static"], 30, None)
    assert out[0] == rules[0]
    assert gatewayapi.rule_weight(out[1], "payments", "payments-canary") == 30


def test_gateway_header_matches_replace_same_named_headers() -> None:
    routing = _routing(gatewayAPI={"httpRoute": "r"}, headerRoute=HEADER)
    rules = _rules()
    rules[0]["matches"][0]["headers"] = [
        {"name": "x-canary", "value": "never"},
        {"name": "X-Region", "value": "eu"},
    ]
    header = gatewayapi.render_rules(rules, routing, None, 0, routing.header_route)[0]
    assert [h["name"] for h in header["matches"][0]["headers"]] == ["X-Region", "X-Canary"]


def test_nginx_canary_ingress_takes_only_paths_to_the_stable_service() -> None:
    routing = _routing(
        nginx={"stableIngress": "web"},
        headerRoute={"match": [{"name": "X-Team", "value": "qa|ops", "type": "RegularExpression"}]},
    )
    stable = {
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "shop.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "payments", "port": {"number": 80}}
                                },
                            },
                            {
                                "path": "/img",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "images", "port": {"number": 80}}},
                            },
                        ]
                    },
                },
                {"host": "other.example.com", "http": {"paths": []}},
            ],
        }
    }
    before = copy.deepcopy(stable)
    spec = nginx.canary_rules(stable, "payments", "payments-canary")
    assert spec["ingressClassName"] == "nginx"
    assert len(spec["rules"]) == 1
    (path,) = spec["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": "payments-canary", "port": {"number": 80}}
    assert stable == before
    annotations = nginx.canary_annotations(routing, 15, header=True)
    prefix = "nginx.ingress.kubernetes.io"
    assert annotations[f"{prefix}/canary-weight"] == "15"
    assert annotations[f"{prefix}/canary-by-header-pattern"] == "qa|ops"
    assert nginx.observed_state({"metadata": {"annotations": annotations}}, prefix) == (15, True)
    assert nginx.observed_state(None, prefix) == (0, False)
    assert f"{prefix}/canary-by-header" not in nginx.canary_annotations(routing, 0, header=False)


def test_istio_weights_and_a_header_route_placed_first() -> None:
    routing = _routing(istio={"virtualService": "vs"}, headerRoute=HEADER)
    dests = istio.Destinations(routing, "shop")
    routes = [
        {"name": "static", "route": [{"destination": {"host": "static-files"}}]},
        {
            "name": "main",
            "match": [{"uri": {"prefix": "/"}}],
            "retries": {"attempts": 2},
            "route": [{"destination": {"host": "payments.shop.svc.cluster.local"}}],
        },
    ]
    out = istio.render_http(routes, dests, None, 40, routing.header_route)
    assert [h["name"] for h in out] == ["static", "canary-header-0", "main"]
    assert out[2]["route"] == [
        {"destination": {"host": "payments.shop.svc.cluster.local"}, "weight": 60},
        {"destination": {"host": "payments-canary"}, "weight": 40},
    ]
    assert out[1]["match"] == [
        {"uri": {"prefix": "/"}, "headers": {"x-canary": {"exact": "always"}}}
    ]
    assert out[1]["retries"] == {"attempts": 2}
    assert istio.http_weight(out[2], dests) == 40
    back = istio.render_http(out, dests, None, 0, None)
    assert [h["name"] for h in back] == ["static", "main"]
    assert istio.http_weight(back[1], dests) == 0


def test_istio_hosts_and_subsets() -> None:
    assert istio.host_is("payments", "payments", "shop")
    assert istio.host_is("payments.shop.svc", "payments", "shop")
    assert not istio.host_is("payments.shopping", "payments", "shop")
    assert not istio.host_is("payments-canary", "payments", "shop")
    routing = _routing(istio={"virtualService": "vs", "subsets": {"destinationRule": "dr"}})
    dests = istio.Destinations(routing, "shop")
    routes = [{"route": [{"destination": {"host": "payments"}}]}]
    out = istio.render_http(routes, dests, None, 25, None)
    assert out[0]["route"] == [
        {"destination": {"host": "payments", "subset": "stable"}, "weight": 75},
        {"destination": {"host": "payments", "subset": "canary"}, "weight": 25},
    ]


def _parent(
    gateway: str, generation: int, accepted: str, resolved: str = "True", **why: str
) -> dict[str, Any]:
    """One gateway's entry in status.parents; `why` goes on the conditions that are not True."""

    def cond(type_: str, status: str) -> dict[str, Any]:
        c: dict[str, Any] = {"type": type_, "status": status, "observedGeneration": generation}
        return c if status == "True" else {**c, **why}

    return {
        "parentRef": {"name": gateway, "sectionName": "https"},
        "controllerName": "example.com/gateway",
        "conditions": [cond("Accepted", accepted), cond("ResolvedRefs", resolved)],
    }


def _route_at(generation: int, *parents: dict[str, Any]) -> dict[str, Any]:
    status = {"parents": list(parents)} if parents else {}
    meta = {"name": "payments", "namespace": "shop", "generation": generation}
    return {"metadata": meta, "status": status}


def test_gateway_verdict_reads_what_the_gateways_report() -> None:
    verdict = gatewayapi.gateway_verdict
    # Nobody reports (no gateway controller here): the object is all there is.
    assert verdict(_route_at(3)) == (None, None)
    assert verdict(_route_at(3, _parent("web", 3, "True"))) == (None, None)
    # Behind by a generation: pending, naming the gateway and what it last saw.
    rejected, pending = verdict(_route_at(4, _parent("web", 3, "True")))
    assert rejected is None and pending is not None
    assert (
        "Gateway web (https)" in pending
        and "generation 4" in pending
        and "saw generation 3" in pending
    )
    # Accepted but the canary backend cannot be resolved: rejected, with the gateway's words.
    unresolved = _parent(
        "web", 4, "True", "False", reason="BackendNotFound", message="no payments-canary"
    )
    rejected, pending = verdict(_route_at(4, unresolved))
    assert pending is None and rejected is not None
    assert "BackendNotFound: no payments-canary" in rejected
    # Refused by every gateway that reports: rejected.
    refused = _parent("web", 4, "False", reason="NotAllowedByListeners")
    rejected, _ = verdict(_route_at(4, refused))
    assert rejected is not None and "not accepted by Gateway web" in rejected
    # Refused by one gateway while another serves it: no reason to hold.
    assert verdict(_route_at(4, refused, _parent("internal", 4, "True"))) == (None, None)
    # Accepted still Unknown: the gateway has not decided yet.
    undecided = _parent("web", 4, "Unknown")
    assert verdict(_route_at(4, undecided))[1] is not None


def test_gateway_verdict_holds_only_for_this_release_and_the_routes_parents() -> None:
    verdict, ours = gatewayapi.gateway_verdict, ("payments", "payments-canary")
    # A report left behind by a Gateway the route no longer names never catches up.
    route = _route_at(5, _parent("web", 5, "True"), _parent("old", 2, "True"))
    route["spec"] = {"parentRefs": [{"name": "web", "sectionName": "https"}]}
    assert verdict(route, ours) == (None, None)
    route["spec"] = {"parentRefs": [{"name": "web", "sectionName": "https"}, {"name": "old"}]}
    route["status"]["parents"][1]["parentRef"] = {"name": "old", "namespace": "shop"}
    assert verdict(route, ours)[1] is not None  # named (namespace defaulted): waited for
    # An unresolved backend of another team's rule is not this release's to hold for...
    theirs = _parent("web", 5, "True", "False", reason="BackendNotFound", message="payments-db")
    assert verdict(_route_at(5, theirs), ours) == (None, None)
    # ...one naming the canary (or stable) Service, or naming nothing, is.
    canary = _parent(
        "web", 5, "True", "False", reason="BackendNotFound", message="shop/payments-canary"
    )
    assert verdict(_route_at(5, canary), ours)[0] is not None
    silent = _parent("web", 5, "True", "False", reason="BackendNotFound")
    assert verdict(_route_at(5, silent), ours)[0] is not None


def test_istio_verdict_waits_for_every_proxy_when_istiod_reports() -> None:
    def vs(generation: int, **reconciled: Any) -> dict[str, Any]:
        status = {"conditions": [{"type": "Reconciled", **reconciled}]} if reconciled else {}
        return {"metadata": {"name": "payments", "generation": generation}, "status": status}

    assert istio.istio_verdict(vs(4)) is None  # status distribution off: nothing to go by
    assert istio.istio_verdict(vs(4, status="True", observedGeneration="4")) is None
    behind = istio.istio_verdict(vs(5, status="True", observedGeneration="4"))
    assert behind is not None and "generation 5" in behind and "generation 4" in behind
    partial = istio.istio_verdict(
        vs(5, status="False", observedGeneration=5, message="3/4 proxies up to date")
    )
    assert partial is not None and "3/4 proxies up to date" in partial
