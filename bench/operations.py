"""On-call tooling costs: notifications, the release-tag webhook and `canaryctl status`.

What is measured, and why:

- `publish()` on the reconcile path, with a receiver that hangs: the cost a
  notification adds to a reconcile, and the proof it does not grow with the
  receiver's trouble (queue full: the drop path);
- publish-to-receipt latency with a healthy local receiver;
- webhook deliveries against a real apiserver: a valid signed release (judge
  and patch), and a bad signature (answered before any API call);
- `canaryctl status` against a real apiserver, in-process and as a process
  (what on-call waits for, interpreter start included).

Usage: python -m bench.operations [--notices 5000] [--deliveries 200]
Writes bench/results/operations.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from kubernetes import config as kube_config

from controller.adapters.releases import ReleaseClient
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.api.status import CanaryReleaseStatus
from controller.cli.main import main as canaryctl
from controller.engine.actions import RecordEvent
from controller.runtime.logs import configure_logging
from controller.runtime.notifying import Dispatcher, SendPolicy, Sink
from controller.runtime.tag_events import github_signature
from controller.runtime.webhook import WebhookSettings, start_webhook
from devenv.cluster import LocalCluster, resolve_bin_dir
from devenv.install import install_crd
from devenv.receiver import Receiver

RESULTS = Path(__file__).resolve().parent / "results" / "operations.json"
RELEASE = {"metadata": {"namespace": "shop", "name": "payments"}}
STATUS = CanaryReleaseStatus(phase="Paused", stable_tag="v1", canary_tag="v2", canary_weight=10)
EVENT = RecordEvent("Normal", "StepAdvanced", "step 2/3: pause 24h")
SECRET = b"bench-secret"


def _summary(samples: list[float], unit: float, name: str) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        f"p50_{name}": round(statistics.median(ordered) * unit, 3),
        f"p99_{name}": round(pick(0.99) * unit, 3),
        f"max_{name}": round(ordered[-1] * unit, 3),
        "n": len(ordered),
    }


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return samples


def bench_publish(notices: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with Receiver("hang") as hanging:
        policy = SendPolicy(timeout_s=60, attempts=1, queue_size=notices + 10)
        dispatcher = Dispatcher(None, sinks=[Sink("webhook", "h", url=hanging.url)], policy=policy)
        samples = _timed(lambda: dispatcher.publish(RELEASE, None, STATUS, EVENT), notices)
        results["publish_receiver_hanging"] = _summary(samples, 1e6, "us")
        full = Dispatcher(
            None,
            sinks=[Sink("webhook", "h", url=hanging.url)],
            policy=SendPolicy(timeout_s=60, attempts=1, queue_size=1),
        )
        samples = _timed(lambda: full.publish(RELEASE, None, STATUS, EVENT), notices)
        results["publish_queue_full_dropping"] = _summary(samples, 1e6, "us")
        hanging.release.set()
    with Receiver("ok") as ok:
        dispatcher = Dispatcher(None, sinks=[Sink("webhook", "ok", url=ok.url)])
        latencies = []
        for _ in range(200):
            began = time.perf_counter()
            count = len(ok.requests)
            dispatcher.publish(RELEASE, None, STATUS, EVENT)
            while len(ok.requests) == count:
                time.sleep(0.0005)
            latencies.append(time.perf_counter() - began)
        results["publish_to_receipt_healthy"] = _summary(latencies, 1e3, "ms")
        dispatcher.stop()
    return results


def bench_webhook(api: client.ApiClient, namespace: str, deliveries: int) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryRelease",
        "metadata": {"name": "payments", "annotations": {"canary.dev/repository": "acme/pay"}},
        "spec": {
            "targetRef": {"name": "payments"},
            "release": {"tag": "v1.0.0", "image": "registry.example.com/payments:{tag}"},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    settings = WebhookSettings(port=0, secret=SECRET, address="127.0.0.1", namespaces=(namespace,))
    server = start_webhook(settings, ReleaseClient(api))
    url = f"http://127.0.0.1:{server.port}/webhook"
    session = requests.Session()

    def send(tag: str, secret: bytes) -> int:
        payload = json.dumps(
            {
                "action": "published",
                "release": {"tag_name": tag},
                "repository": {"full_name": "acme/pay"},
            }
        ).encode()
        headers = {
            "X-GitHub-Event": "release",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": github_signature(secret, payload),
            "Content-Type": "application/json",
        }
        return session.post(url, data=payload, headers=headers, timeout=30).status_code

    tags = iter(f"v1.0.{i}" for i in range(1, deliveries + 1))
    valid = _timed(lambda: _expect(send(next(tags), SECRET), 200), deliveries)
    forged = _timed(lambda: _expect(send("v9.9.9", b"forged"), 401), deliveries)
    server.stop()
    return {
        "webhook_valid_release_set_tag": _summary(valid, 1e3, "ms"),
        "webhook_bad_signature": _summary(forged, 1e3, "ms"),
    }


def _expect(code: int, wanted: int) -> None:
    if code != wanted:
        raise AssertionError(f"answered {code}, expected {wanted}")


def bench_status(kubeconfig: Path, namespace: str) -> dict[str, Any]:
    args = ["status", "payments", "--kubeconfig", str(kubeconfig), "-n", namespace]
    sink = open("/dev/null", "w")  # noqa: SIM115 (kept open for the loop)
    in_process = _timed(lambda: canaryctl(args, out=sink), 50)
    as_process = _timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "controller.cli", *args], check=True, capture_output=True
        ),
        10,
    )
    sink.close()
    return {
        "canaryctl_status_in_process": _summary(in_process, 1e3, "ms"),
        "canaryctl_status_new_process": _summary(as_process, 1e3, "ms"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notices", type=int, default=5000)
    parser.add_argument("--deliveries", type=int, default=200)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    results.update(bench_publish(args.notices))
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster.start(Path(tmp) / "cluster", resolve_bin_dir())
        try:
            api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
            install_crd(api)
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
            results.update(bench_webhook(api, "bench", args.deliveries))
            results.update(bench_status(cluster.kubeconfig, "bench"))
            api.close()
        finally:
            cluster.stop()
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
