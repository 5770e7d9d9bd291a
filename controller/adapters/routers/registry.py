"""Which router a release uses: the one `spec.trafficRouting` names."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from controller.adapters.routers.applying import Objects
from controller.adapters.routers.gatewayapi import GatewayAPIRouter
from controller.adapters.routers.istio import IstioRouter
from controller.adapters.routers.nginx import NginxRouter
from controller.adapters.routers.protocol import TrafficRouter
from controller.adapters.routers.services import ServiceChecks
from controller.api.spec import CanaryReleaseSpec


def router_for(
    api_client: client.ApiClient, release: dict[str, Any], spec: CanaryReleaseSpec
) -> TrafficRouter:
    """The router `spec.trafficRouting` configures, bound to this release."""
    routing = spec.traffic_routing
    assert routing is not None, "only releases with spec.trafficRouting have a router"
    objects = Objects(api_client)
    services = ServiceChecks(objects, release, routing, spec.target_ref.name)
    if routing.gateway_api is not None:
        return GatewayAPIRouter(objects, release, routing, services)
    if routing.nginx is not None:
        return NginxRouter(objects, release, routing, services)
    return IstioRouter(objects, release, routing, services)
