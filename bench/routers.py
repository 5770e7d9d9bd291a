"""What a traffic router costs per reconcile, against the real apiserver and CRDs.

Every reconcile of a release with `trafficRouting` calls `verify` (read the
route, the stable Service and the target); a weight change adds one
server-side apply (plus the canary Service's); a route the controller does
not own adds a dry-run apply per reconcile while the conflict lasts. This
times each of those, per router, so the cost of a router on a busy
controller is a number, not a guess.

Usage: python -m bench.routers [--rounds 30]
Uses the cluster of CANARY_KUBECONFIG if set, else starts one.
Writes bench/results/routers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

from controller.adapters.routers.applying import HTTP_ROUTE, INGRESS, SERVICE, VIRTUAL_SERVICE
from controller.adapters.routers.protocol import RouteConflict, RouteIntent, TrafficRouter
from controller.adapters.routers.registry import router_for
from controller.api.spec import GROUP, VERSION, CanaryReleaseSpec
from devenv.cluster import LocalCluster, resolve_bin_dir
from devenv.install import install_crd
from devenv.routers import install_router_crds, resolve_router_crds_dir
from tests.routing_objects import Cluster, http_route, ingress, stable_service, virtual_service

RESULTS = Path(__file__).resolve().parent / "results" / "routers.json"
ROUTERS: dict[str, tuple[Any, dict[str, Any], Callable[[str, str], dict[str, Any]], str]] = {
    "gatewayAPI": (HTTP_ROUTE, {"gatewayAPI": {"httpRoute": "payments"}}, http_route, "rules"),
    "nginx": (INGRESS, {"nginx": {"stableIngress": "payments"}}, ingress, ""),
    "istio": (VIRTUAL_SERVICE, {"istio": {"virtualService": "payments"}}, virtual_service, "http"),
}


def _ms(fn: Callable[[], object], rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 1),
        "max_ms": round(samples[-1], 1),
    }


def _router(objects: Cluster, routing: dict[str, Any]) -> TrafficRouter:
    release = objects.create_release(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CanaryRelease",
            "metadata": {"name": "payments"},
            "spec": {
                "targetRef": {"name": "payments"},
                "release": {"tag": "v1", "image": "registry.example.com/payments:{tag}"},
                "trafficRouting": {"stableService": "payments", **routing},
            },
        }
    )
    return router_for(objects.api, release, CanaryReleaseSpec.model_validate(release["spec"]))


def _measure(api: client.ApiClient, name: str, rounds: int) -> dict[str, Any]:
    kind, routing, build, field = ROUTERS[name]
    namespace = f"bench-routers-{name.lower()}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    try:
        objects = Cluster(api, namespace)
        objects.create_deployment("payments", 4, "registry.example.com/payments:v1")
        objects.apply(SERVICE, stable_service("payments"), "gitops")
        gitops = build("payments", "payments")
        objects.apply(kind, gitops, "gitops")
        if field:
            objects.hand_over_rules(kind, "payments", field, gitops)
        router = _router(objects, routing)
        router.set_weight(10)
        weights = iter([20, 30] * rounds)
        result = {
            "verify, steady": _ms(lambda: router.verify(RouteIntent(10)), rounds),
            "set_weight": _ms(lambda: router.set_weight(next(weights)), rounds),
        }
        if field:
            objects.apply(kind, gitops, "gitops", force=True)  # GitOps takes the field back

            def conflicted() -> None:
                view = router.verify(RouteIntent(90))
                assert view.conflict is not None

            result["verify, conflict (dry-run apply)"] = _ms(conflicted, rounds)

            def refused() -> None:
                try:
                    router.set_weight(90)
                except RouteConflict:
                    return
                raise AssertionError("no conflict")

            result["set_weight refused by a conflict"] = _ms(refused, rounds)
        return result
    finally:
        client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    existing = os.environ.get("CANARY_KUBECONFIG")
    with tempfile.TemporaryDirectory() as tmp:
        if existing:
            cluster = LocalCluster.existing(existing, resolve_bin_dir())
        else:
            cluster = LocalCluster.start(Path(tmp) / "cluster", resolve_bin_dir())
        try:
            api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            install_crd(api)
            install_router_crds(api, resolve_router_crds_dir())
            results = {name: _measure(api, name, args.rounds) for name in ROUTERS}
        finally:
            cluster.stop()
    report = {"measured_at": datetime.now().isoformat(timespec="seconds"), "rounds": args.rounds}
    report["routers"] = results
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name, timings in results.items():
        for what, numbers in timings.items():
            print(f"{name:11} {what:34} {numbers}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
