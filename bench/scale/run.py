"""Scale benchmark: N CanaryReleases on one controller, against the real local servers.

For each N it creates N Deployments (3 pods each, kwok) and N CanaryReleases,
starts the real controller process, moves every release to a new tag, and
measures what issue #7 asks for:

- controller RSS (peak and steady) and CPU seconds per minute, from /proc;
- reconcile latency: from a spec change to the status reflecting it (p50, p99);
- apiserver requests/s (apiserver_request_total) and Prometheus queries/s
  (prometheus_http_requests_total), during the steady analysis phase;
- breach-to-rollback: from an error spike appearing to the rollback starting.

Usage: python -m bench.scale.run --sizes 10 100 500 1000 [--churn-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from kubernetes import client, watch
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from controller.api.spec import GROUP, PLURAL, VERSION
from devenv.cluster import LocalCluster, resolve_bin_dir
from devenv.controller import ControllerProcess
from devenv.install import install_crd
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator

RESULTS = Path(__file__).resolve().parents[1] / "results" / "scale.json"
INTERVAL_S = 30
QUERY = (
    'sum(increase(http_request_errors_total{namespace="{{namespace}}",app="{{target}}",'
    'track="{{track}}"}[{{window}}])) / sum(increase(http_requests_total{'
    'namespace="{{namespace}}",app="{{target}}",track="{{track}}"}[{{window}}]))'
)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ProcSampler(threading.Thread):
    """RSS and CPU time of one process, once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float, float]] = []  # (t, rss_mib, cpu_s)
        self.stop_event = threading.Event()
        self.ticks = os.sysconf("SC_CLK_TCK")

    def sample(self) -> tuple[float, float, float]:
        with open(f"/proc/{self.pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / self.ticks
        return time.monotonic(), rss, cpu

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.samples.append(self.sample())
            except (FileNotFoundError, ProcessLookupError, StopIteration):
                return
            self.stop_event.wait(1.0)

    def window(self, start: float, end: float) -> list[tuple[float, float, float]]:
        return [s for s in self.samples if start <= s[0] <= end]


class StatusWatcher(threading.Thread):
    """Records, per release, when each (field, value) first appeared in status."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        super().__init__(daemon=True)
        self.custom, self.namespace = custom, namespace
        self.seen: dict[tuple[str, str, str], float] = {}
        self.phases: dict[str, str] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            stream = watch.Watch().stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                timeout_seconds=30,
            )
            try:
                self._consume(stream)
            except ApiException:  # e.g. 504 "too large resource version": list again
                time.sleep(1)

    def _consume(self, stream: Any) -> None:
        for event in stream:
            obj, now = event["object"], time.monotonic()
            name, status = obj["metadata"]["name"], obj.get("status") or {}
            for field in ("phase", "canaryTag", "stableTag"):
                value = str(status.get(field))
                self.seen.setdefault((name, field, value), now)
            self.phases[name] = status.get("phase", "")
            if self.stop_event.is_set():
                return

    def count(self, phase: str) -> int:
        return sum(1 for p in self.phases.values() if p == phase)


def wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"{what} after {timeout}s")
        time.sleep(1)
    return time.monotonic() - began


def metric_total(text: str, name: str, match: str = "") -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and match in line
    )


def apiserver_requests(cluster: LocalCluster) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    return metric_total(text, "apiserver_request_total")


def prometheus_queries(prometheus: PrometheusServer) -> float:
    """Instant queries served so far, from Prometheus' own /metrics."""
    text = requests.get(f"{prometheus.url}/metrics", timeout=10).text
    return metric_total(text, "prometheus_http_requests_total", 'handler="/api/v1/query"')


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"r.example.com/{name}:v1"}]},
            },
        },
    }


def release(name: str, prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryRelease",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": name},
            "release": {"tag": "v1", "image": f"r.example.com/{name}:{{tag}}"},
            "steps": [{"setWeight": 34}, {"pause": {"duration": "4m"}}, {"setWeight": 100}],
            "analysis": {
                "interval": f"{INTERVAL_S}s",
                "prometheus": {"address": prometheus_url},
                "metrics": [{"name": "error-rate", "query": QUERY, "threshold": {"max": 0.05}}],
            },
        },
    }


def run_size(
    n: int,
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    traffic: TrafficSimulator,
    work: Path,
) -> dict[str, Any]:
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-{n}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait("service account", lambda: bool(core.list_namespaced_service_account(ns).items), 60)
    names = [f"app{i:04d}" for i in range(n)]
    for name in names:
        for track in ("stable", "canary"):
            traffic.set_rate(ns, name, track, rps=20, error_ratio=0.001)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda nm: apps.create_namespaced_deployment(ns, deployment(nm)), names))
    wait(
        "deployments available",
        lambda: (
            sum(
                (d.status.available_replicas or 0) == 3
                for d in apps.list_namespaced_deployment(ns).items
            )
            == n
        ),
        600,
    )
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda nm: custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, release(nm, prometheus.url)
                ),
                names,
            )
        )

    watcher = StatusWatcher(custom, ns)
    watcher.start()
    proc = ControllerProcess(
        cluster.kubeconfig,
        work / f"controller-{n}.log",
        [ns],
        env={"CANARY_RECONCILE_INTERVAL": os.environ.get("CANARY_RECONCILE_INTERVAL", "10")},
    ).start()
    assert proc.process is not None
    sampler = ProcSampler(proc.process.pid)
    sampler.start()
    adopt_s = wait("all Idle", lambda: watcher.count("Idle") == n, 900)

    # a new tag for everyone: reconcile latency is patch -> status.canaryTag
    patched: dict[str, float] = {}

    def start(name: str) -> None:
        patched[name] = time.monotonic()
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, {"spec": {"release": {"tag": "v2"}}}
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(start, names))
    wait(
        "all canaries started",
        lambda: all((nm, "canaryTag", "v2") in watcher.seen for nm in names),
        900,
    )
    latencies = [watcher.seen[(nm, "canaryTag", "v2")] - patched[nm] for nm in names]
    wait("all Paused", lambda: watcher.count("Paused") == n, 900)

    # steady state: analysis running for everyone
    t0, api0, q0 = time.monotonic(), apiserver_requests(cluster), prometheus_queries(prometheus)
    time.sleep(2 * INTERVAL_S + 10)
    t1, api1, q1 = time.monotonic(), apiserver_requests(cluster), prometheus_queries(prometheus)
    steady = sampler.window(t0, t1)

    # breach: an error spike in 10 canaries (or all when fewer)
    victims = names[: min(10, n)]
    spike = time.monotonic()
    for name in victims:
        traffic.set_rate(ns, name, "canary", rps=20, error_ratio=0.5)
    wait(
        "victims rolled back",
        lambda: all(watcher.phases.get(v) == "RolledBack" for v in victims),
        4 * INTERVAL_S + 120,
    )
    breach = [watcher.seen[(v, "phase", "RolledBack")] - spike for v in victims]
    wait("the rest promoted", lambda: watcher.count("Succeeded") == n - len(victims), 1200)

    sampler.stop_event.set()
    watcher.stop_event.set()
    proc.stop()
    rss = [s[1] for s in sampler.samples]
    minutes = (steady[-1][0] - steady[0][0]) / 60 if len(steady) > 1 else 1
    result = {
        "n": n,
        "adopt_all_s": round(adopt_s, 1),
        "rss_peak_mib": round(max(rss), 1),
        "rss_steady_mib": round(statistics.median(s[1] for s in steady), 1),
        "cpu_s_per_min": round((steady[-1][2] - steady[0][2]) / minutes, 2),
        "reconcile_p50_s": round(percentile(latencies, 0.5) or 0, 2),
        "reconcile_p99_s": round(percentile(latencies, 0.99) or 0, 2),
        "apiserver_rps": round((api1 - api0) / (t1 - t0), 1),
        "prometheus_qps": round((q1 - q0) / (t1 - t0), 2),
        "breach_to_rollback_p50_s": round(percentile(breach, 0.5) or 0, 1),
        "breach_to_rollback_p99_s": round(percentile(breach, 0.99) or 0, 1),
        "analysis_interval_s": INTERVAL_S,
        "measured_at": datetime.now().isoformat(timespec="seconds"),
    }
    core.delete_namespace(ns)
    api.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 1000])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster.start(work / "cluster", resolve_bin_dir())
        traffic = TrafficSimulator.start()
        prometheus = PrometheusServer.start(work / "prometheus", scrape_interval="5s")
        try:
            prometheus.add_target(traffic.address, {"source": "traffic-simulator"})
            api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
            install_crd(api)
            for n in args.sizes:
                print(f"== N={n}", flush=True)
                results.append(run_size(n, cluster, prometheus, traffic, work))
                print(json.dumps(results[-1]), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
        finally:
            prometheus.stop()
            traffic.stop()
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
