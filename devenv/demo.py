"""`make demo`: a canary of payments v2.4.1 on a local cluster, an error spike, the rollback.

Everything is real and local: the control plane (with kwok nodes), Prometheus
scraping a traffic simulator, and the controller as a process. The demo stops
everything it started, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

from controller.api.spec import GROUP, PLURAL, VERSION
from devenv.cluster import LocalCluster, resolve_bin_dir
from devenv.controller import ControllerProcess
from devenv.install import install_crd
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator

NS, APP = "shop", "payments"
IMAGE = "registry.example.com/payments:{tag}"
QUERY = (
    'sum(increase(http_request_errors_total{namespace="{{namespace}}",app="payments",'
    'track="{{track}}"}[{{window}}])) / sum(increase(http_requests_total{'
    'namespace="{{namespace}}",app="payments",track="{{track}}"}[{{window}}]))'
)


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def deployment() -> dict[str, Any]:
    labels = {"app": APP}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "labels": labels},
        "spec": {
            "replicas": 10,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": IMAGE.format(tag="v2.4.0")}]},
            },
        },
    }


def canary_release(prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryRelease",
        "metadata": {"name": APP},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": APP},
            "release": {"tag": "v2.4.0", "image": IMAGE, "container": "app"},
            "steps": [{"setWeight": 10}, {"pause": {"duration": "24h"}}, {"setWeight": 100}],
            "analysis": {
                "interval": "3s",
                "prometheus": {"address": prometheus_url},
                "metrics": [
                    {
                        "name": "error-rate",
                        "query": QUERY,
                        "threshold": {"max": 0.01},
                        "compare": {"maxRatio": 1.5},
                    }
                ],
            },
        },
    }


@contextlib.contextmanager
def running(stop: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        stop()


def release_status(custom: client.CustomObjectsApi) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, APP)
    return obj.get("status") or {}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="canary-demo-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        say("Starting a local control plane (kube-apiserver, etcd, scheduler, kwok nodes)")
        cluster = LocalCluster.start(work / "cluster", resolve_bin_dir())
        stack.enter_context(running(cluster.stop))
        kubectl = cluster.kubectl
        print(kubectl("get", "nodes").stdout)

        say("Starting Prometheus and a traffic simulator (stable and canary tracks)")
        traffic = TrafficSimulator.start()
        stack.enter_context(running(traffic.stop))
        prometheus = PrometheusServer.start(work / "prometheus")
        stack.enter_context(running(prometheus.stop))
        prometheus.add_target(traffic.address, {"source": "traffic-simulator"})
        for track in ("stable", "canary"):
            traffic.set_rate(NS, APP, track, rps=100, error_ratio=0.002)

        api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
        stack.enter_context(running(api.close))
        install_crd(api)
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        custom = client.CustomObjectsApi(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        wait_until("default ServiceAccount", lambda: core.list_namespaced_service_account(NS).items)
        apps.create_namespaced_deployment(NS, deployment())

        say("Starting the controller as a local process (python -m controller run)")
        proc = ControllerProcess(cluster.kubeconfig, work / "controller.log").start()
        stack.enter_context(running(proc.stop))

        say(f"Deploying {APP} v2.4.0 with a CanaryRelease")
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, canary_release(prometheus.url)
        )
        wait_until("stable tag", lambda: release_status(custom).get("stableTag") == "v2.4.0")
        print(kubectl("get", "crel,deploy", "-n", NS).stdout)

        say("Release pipeline sets the tag v2.4.1: the canary starts at 10%")
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, APP, {"spec": {"release": {"tag": "v2.4.1"}}}
        )
        wait_until("10% canary", lambda: release_status(custom).get("phase") == "Paused")
        wait_until("first analysis", lambda: release_status(custom).get("metrics"))
        print(kubectl("get", "crel,deploy", "-n", NS).stdout)
        metric = release_status(custom)["metrics"][0]
        print(f"analysis: {metric['name']} {metric['verdict']}: {metric['reason']}")

        say("Injecting an error spike into the canary track (30% errors)")
        traffic.set_rate(NS, APP, "canary", rps=100, error_ratio=0.3)
        wait_until("rollback", lambda: release_status(custom).get("phase") == "RolledBack")
        wait_until(
            "canary removed",
            lambda: (
                not [
                    d
                    for d in apps.list_namespaced_deployment(NS).items
                    if d.metadata.name.endswith("-canary")
                ]
            ),
        )
        print(kubectl("get", "crel", "-n", NS, "-o", "wide").stdout)
        print(kubectl("get", "deploy", "-n", NS).stdout)
        status = release_status(custom)
        say("Why did it roll back?")
        print(f"reason:  {status.get('reason')}\nmessage: {status.get('message')}")
        print(
            kubectl(
                "get",
                "events",
                "-n",
                NS,
                "--field-selector",
                "involvedObject.kind=CanaryRelease",
                "-o",
                "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
            ).stdout
        )
        say("Stopping everything the demo started")
    print("done: no process left running.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
