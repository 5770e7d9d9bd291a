"""`spec.trafficRouting`: exact weights through a traffic router instead of pod counts.

Without a router a weight is approximated by pods (10% of 4 pods is 25% of
the traffic). With one, the controller runs the canary behind its own Service
and asks the router to send exactly N% of the requests to it, at any replica
count. One router at a time: the Gateway API (an HTTPRoute's backendRef
weights), ingress-nginx (a canary Ingress) or Istio (VirtualService weights).

The controller writes only with server-side apply under its own field manager
and never forces, so fields written by GitOps tools or people stay theirs; see
docs/traffic.md for what each router writes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from controller.api.base import SpecModel, StatusModel

RouterKind = Literal["gatewayAPI", "nginx", "istio"]

Name = Annotated[str, Field(min_length=1, max_length=253)]
DnsLabel = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
SectionName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]


def _with_cel(*rules: tuple[str, str]) -> ConfigDict:
    """Model config carrying CEL rules that span fields, enforced by the apiserver."""
    extra: dict[str, Any] = {
        "x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]
    }
    return ConfigDict(**SpecModel.model_config, json_schema_extra=extra)


class HeaderMatch(SpecModel):
    """One request header the canary's header route matches on."""

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$",
        description="the HTTP header name, e.g. X-Canary",
    )
    value: str = Field(min_length=1, max_length=4096)
    type: Literal["Exact", "RegularExpression"] = "Exact"


class HeaderRoute(SpecModel):
    """Requests carrying all these headers go to the canary, whatever its weight.

    Active from the moment the canary's first pod is Ready until the release
    ends, so a `setWeight: 0` first step sends only header-matched (e.g.
    internal) traffic to the canary.
    """

    match: list[HeaderMatch] = Field(
        min_length=1,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class GatewayAPIRouter(SpecModel):
    """Weights on the backendRefs of an HTTPRoute (gateway.networking.k8s.io/v1)."""

    http_route: Name
    rules: list[SectionName] | None = Field(
        default=None,
        max_length=16,
        description=(
            "names of the rules to steer; default: every rule with a backendRef "
            "to the stable Service"
        ),
    )


class NginxRouter(SpecModel):
    """A canary Ingress next to the stable one, with ingress-nginx's canary annotations."""

    stable_ingress: Name
    annotation_prefix: str = Field(
        default="nginx.ingress.kubernetes.io",
        min_length=1,
        max_length=253,
        description="the controller's annotation prefix (--annotations-prefix of ingress-nginx)",
    )


class IstioSubsets(SpecModel):
    """Route by DestinationRule subsets of the stable host instead of by a second Service."""

    destination_rule: Name
    stable_subset: DnsLabel = "stable"
    canary_subset: DnsLabel = "canary"


class IstioRouter(SpecModel):
    """Route weights in a VirtualService (networking.istio.io/v1)."""

    virtual_service: Name
    routes: list[str] | None = Field(
        default=None,
        max_length=16,
        description=(
            "names of the http routes to steer; default: every http route with a "
            "destination on the stable Service"
        ),
    )
    subsets: IstioSubsets | None = None


class TrafficRouting(SpecModel):
    """One traffic router; replicas then follow the weight instead of being the weight."""

    model_config = _with_cel(
        (
            "(has(self.gatewayAPI) ? 1 : 0) + (has(self.nginx) ? 1 : 0)"
            " + (has(self.istio) ? 1 : 0) == 1",
            "set exactly one router: gatewayAPI, nginx or istio",
        ),
        (
            "!has(self.nginx) || !has(self.headerRoute) || size(self.headerRoute.match) == 1",
            "ingress-nginx routes on one header only: headerRoute.match takes one entry",
        ),
    )

    stable_service: Name = Field(
        description=(
            "the Service the route sends stable traffic to; its selector must not "
            "match the canary pods (select canary.dev/track: stable)"
        )
    )
    canary_service: Name | None = Field(
        default=None,
        description="the Service the controller creates for the canary pods; "
        "default: <stableService>-canary",
    )
    gateway_api: GatewayAPIRouter | None = Field(default=None, alias="gatewayAPI")
    nginx: NginxRouter | None = None
    istio: IstioRouter | None = None
    header_route: HeaderRoute | None = None
    dynamic_stable_scale: bool = Field(
        default=False,
        description=(
            "shrink stable as traffic moves to the canary (and grow it back before "
            "traffic returns); default: stable stays at full size until promotion"
        ),
    )

    @model_validator(mode="after")
    def _one_router(self) -> TrafficRouting:
        count = sum(r is not None for r in (self.gateway_api, self.nginx, self.istio))
        if count != 1:
            raise ValueError("set exactly one router: gatewayAPI, nginx or istio")
        if self.nginx is not None and self.header_route and len(self.header_route.match) > 1:
            raise ValueError("ingress-nginx routes on one header only: headerRoute.match takes one")
        if len(self.canary_service_name) > 63:
            raise ValueError(
                f"the canary Service {self.canary_service_name!r} is longer than 63 characters "
                "(a Service name is a DNS label): set a shorter canaryService"
            )
        if self.nginx is not None and len(self.nginx.stable_ingress) > 253 - len("-canary"):
            raise ValueError(
                "nginx.stableIngress: at most 246 characters, so that <stableIngress>-canary "
                "is a valid Ingress name"
            )
        return self

    @property
    def kind(self) -> RouterKind:
        if self.gateway_api is not None:
            return "gatewayAPI"
        return "nginx" if self.nginx is not None else "istio"

    @property
    def canary_service_name(self) -> str:
        return self.canary_service or f"{self.stable_service}-canary"


class TrafficStatus(StatusModel):
    """What the router applies now, read back from the route, next to what was asked.

    `desiredWeight` is also how a restarted controller knows what it last asked
    for: when the route does not show it, the router checks (with a dry-run
    apply) whether another field manager is in the way.
    """

    router: RouterKind
    weight: int = Field(default=0, description="the canary's share of requests on the route now")
    header_route: bool = Field(default=False, description="the header route is on the route now")
    desired_weight: int = 0
    desired_header_route: bool = False
