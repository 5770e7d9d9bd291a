"""Traffic routers, one module per router, all behind `TrafficRouter` (protocol.py).

- protocol.py: the seam (`set_weight`, `set_header_route`, `verify`, `reset`);
- applying.py: server-side apply under the controller's own field manager;
- services.py: the canary Service, and the check that makes weights exact;
- gatewayapi.py, nginx.py, istio.py: one module per router;
- registry.py: `router_for`, the router `spec.trafficRouting` names.

The runtime only talks to the protocol, and the engine never learns which
router it is. Nothing is imported here, so the ports can name the protocol
without pulling in the Kubernetes client.
"""
