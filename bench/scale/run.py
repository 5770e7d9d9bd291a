"""Scale benchmark: N CanaryReleases on one controller, against the real local servers.

For each N it creates N Deployments (3 pods each, kwok) and N CanaryReleases,
starts the real controller process, moves every release to a new tag, and
measures what issue #7 asks for:

- controller RSS (peak and steady) and CPU seconds per minute, from /proc;
- reconcile latency: from a spec change to the status reflecting it (p50, p99);
- apiserver requests/s (apiserver_request_total) and Prometheus queries/s
  (prometheus_http_requests_total), during the steady analysis phase;
- breach-to-rollback: from an error spike appearing to the rollback starting.

With `--faults` it also restarts the apiserver and makes Prometheus slow (5 s
per answer) and then unreachable, 2 minutes each, while the releases are
paused in analysis, and checks every release still reaches the outcome it
would reach without faults. With `--churn-minutes M` it keeps every release
cycling through canaries (and deletes and recreates a tenth of them per
cycle) for M minutes and compares RSS after 10 minutes and at the end.

Usage: python -m bench.scale.run --sizes 10 100 500 1000 [--faults] [--churn-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from bench.harness import WatchThread, canary_release
from bench.scale.faults import FaultyPrometheus
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


class StatusWatcher(WatchThread):
    """Records, per release, when each (field, value) first appeared in status."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        super().__init__(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
        self.seen: dict[tuple[str, str, str], float] = {}
        self.phases: dict[str, str] = {}

    def on_event(self, obj: Any, now: float) -> None:
        name, status = obj["metadata"]["name"], obj.get("status") or {}
        for field in ("phase", "canaryTag", "stableTag", "lastCommand"):
            value = str(status.get(field))
            self.seen.setdefault((name, field, value), now)
        self.phases[name] = status.get("phase", "")

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


def deployment(name: str, replicas: int = 3, image: str | None = None) -> dict[str, Any]:
    labels = {"app": name}
    container = {"name": "app", "image": image or f"r.example.com/{name}:v1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def release(name: str, prometheus_url: str, pause: str) -> dict[str, Any]:
    steps = [{"setWeight": 34}, {"pause": {"duration": pause}}, {"setWeight": 100}]
    analysis = {
        "interval": f"{INTERVAL_S}s",
        "prometheus": {"address": prometheus_url},
        "unreachableDeadline": "1m",
        "metrics": [{"name": "error-rate", "query": QUERY, "threshold": {"max": 0.05}}],
    }
    return canary_release(name, f"r.example.com/{name}:{{tag}}", steps, analysis=analysis)


CONTROLLER_ENV = {
    "CANARY_RECONCILE_INTERVAL": "10",
    "CANARY_WORKERS": "16",
    "CANARY_PROMETHEUS_QPS": "100",
    "CANARY_PROMETHEUS_BURST": "100",
}


def controller_requests(url: str) -> float:
    """Kubernetes API requests the controller made, from its own /metrics."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return metric_total(text, "canary_kubernetes_api_requests_total")


def run_size(
    n: int,
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    traffic: TrafficSimulator,
    work: Path,
    *,
    faults: bool = False,
    churn_minutes: float = 0,
    profile: bool = False,
    pause: str | None = None,
) -> dict[str, Any]:
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-{n}{'-faults' if faults else ''}{'-churn' if churn_minutes else ''}"
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
        1200,
    )
    proxy = FaultyPrometheus(prometheus.url)
    pause = pause or ("1m" if churn_minutes else ("14m" if faults else "8m"))
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda nm: custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, release(nm, proxy.url, pause)
                ),
                names,
            )
        )

    watcher = StatusWatcher(custom, ns)
    watcher.start()
    env = {**CONTROLLER_ENV, **{k: v for k, v in os.environ.items() if k in CONTROLLER_ENV}}
    proc = ControllerProcess(cluster.kubeconfig, work / f"{ns}.log", [ns], env=env).start()
    assert proc.process is not None
    sampler = ProcSampler(proc.process.pid)
    sampler.start()
    adopt_s = wait("all Idle", lambda: watcher.count("Idle") == n, 900)
    result: dict[str, Any] = {"n": n, "adopt_all_s": round(adopt_s, 1)}
    try:
        if churn_minutes:
            result |= churn(custom, ns, names, proxy.url, watcher, sampler, churn_minutes)
        else:
            result |= canary_round(
                cluster,
                prometheus,
                proxy,
                traffic,
                custom,
                ns,
                names,
                watcher,
                sampler,
                proc,
                faults=faults,
                profile=profile,
                work=work,
            )
    finally:
        sampler.stop_event.set()
        watcher.stop_event.set()
        proc.stop()
        proxy.stop()
    rss = [s[1] for s in sampler.samples]
    result["rss_peak_mib"] = round(max(rss), 1)
    result["controller_env"] = env
    result["measured_at"] = datetime.now().isoformat(timespec="seconds")
    core.delete_namespace(ns)
    api.close()
    return result


def canary_round(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    proxy: FaultyPrometheus,
    traffic: TrafficSimulator,
    custom: client.CustomObjectsApi,
    ns: str,
    names: list[str],
    watcher: StatusWatcher,
    sampler: ProcSampler,
    proc: ControllerProcess,
    *,
    faults: bool,
    profile: bool,
    work: Path,
) -> dict[str, Any]:
    n = len(names)
    # a new tag for everyone at once: the bulk start
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
    bulk = [watcher.seen[(nm, "canaryTag", "v2")] - patched[nm] for nm in names]
    wait("all Paused", lambda: watcher.count("Paused") == n, 900)

    if faults:  # the fault run measures outcomes; its steady figures would repeat the size runs
        return {
            **inject_faults(cluster, proxy),
            **breach_and_outcomes(prometheus, traffic, custom, ns, names, watcher, faults=True),
        }
    # steady state: everyone paused in analysis
    metrics_url = proc.metrics_url
    t0, api0, q0 = (
        time.monotonic(),
        controller_requests(metrics_url),
        prometheus_queries(prometheus),
    )
    spy = start_profile(proc, work / f"{ns}.profile.txt") if profile else None
    time.sleep(2 * INTERVAL_S + 10)
    t1, api1, q1 = (
        time.monotonic(),
        controller_requests(metrics_url),
        prometheus_queries(prometheus),
    )
    if spy is not None:
        spy.wait(timeout=120)
    steady = sampler.window(t0, t1)

    # reconcile latency under that load: one spec change at a time, to the status reflecting it
    probes = names[: min(50, n)]
    latencies = []
    for i, name in enumerate(probes):
        command = f"resume probe-{i}"
        sent = time.monotonic()
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            name,
            {"metadata": {"annotations": {"canary.dev/command": command}}},
        )
        wait("probe", lambda nm=name, c=command: (nm, "lastCommand", c) in watcher.seen, 120)
        latencies.append(watcher.seen[(name, "lastCommand", command)] - sent)
        time.sleep(0.2)

    minutes = (steady[-1][0] - steady[0][0]) / 60 if len(steady) > 1 else 1
    measured = {
        "start_all_p50_s": round(percentile(bulk, 0.5) or 0, 2),
        "start_all_p99_s": round(percentile(bulk, 0.99) or 0, 2),
        "rss_steady_mib": round(statistics.median(s[1] for s in steady), 1),
        "cpu_s_per_min": round((steady[-1][2] - steady[0][2]) / minutes, 2),
        "reconcile_p50_s": round(percentile(latencies, 0.5) or 0, 2),
        "reconcile_p99_s": round(percentile(latencies, 0.99) or 0, 2),
        "apiserver_rps": round((api1 - api0) / (t1 - t0), 2),
        "prometheus_qps": round((q1 - q0) / (t1 - t0), 2),
    }
    print(json.dumps({"n": n, **measured}), flush=True)  # kept if a later wait times out
    return {
        **measured,
        **breach_and_outcomes(prometheus, traffic, custom, ns, names, watcher, faults=False),
    }


def inject_faults(cluster: LocalCluster, proxy: FaultyPrometheus) -> dict[str, Any]:
    """The apiserver restarted, then Prometheus slow (5 s answers), then unreachable."""
    restart_s = cluster.restart_apiserver()
    time.sleep(30)
    proxy.mode = "slow"
    time.sleep(120)
    proxy.mode = "down"
    time.sleep(120)
    proxy.mode = "pass"
    time.sleep(INTERVAL_S + 10)
    return {
        "apiserver_restart_s": round(restart_s, 1),
        "prometheus_slow_s": 120,
        "prometheus_down_s": 120,
    }


def breach_and_outcomes(
    prometheus: PrometheusServer,
    traffic: TrafficSimulator,
    custom: client.CustomObjectsApi,
    ns: str,
    names: list[str],
    watcher: StatusWatcher,
    *,
    faults: bool,
) -> dict[str, Any]:
    """An error spike in 10 canaries (or all when fewer); every release's outcome."""
    n = len(names)
    victims = names[: min(10, n)]
    step_started = {
        v: datetime.fromisoformat(
            custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, v)["status"][
                "stepStartedAt"
            ]
        ).timestamp()
        for v in victims
    }
    spike, spike_wall = time.monotonic(), time.time()
    for name in victims:
        traffic.set_rate(ns, name, "canary", rps=20, error_ratio=0.5)
    wait(
        "victims rolled back",
        lambda: all(watcher.phases.get(v) == "RolledBack" for v in victims),
        4 * INTERVAL_S + 300,
    )
    breach = [watcher.seen[(v, "phase", "RolledBack")] - spike for v in victims]
    visible = [
        watcher.seen[(v, "phase", "RolledBack")]
        - spike
        - breach_visible_after(prometheus, ns, v, step_started[v], spike_wall)
        for v in victims
    ]
    # Printed before the long wait below: promoting every release at once is
    # bound by the cluster (kube-controller-manager rolling N Deployments on
    # the same 2 cores), and the figures above must survive a timeout there.
    print(
        json.dumps({"n": n, "spike_to_rollback_s": breach, "breach_to_rollback_s": visible}),
        flush=True,
    )
    wait(
        "the rest promoted",
        lambda: watcher.count("Succeeded") == n - len(victims),
        max(1800, 4 * n),
    )
    wrong = sorted(
        nm
        for nm in names
        if watcher.phases.get(nm) != ("RolledBack" if nm in victims else "Succeeded")
        or (nm not in victims and (nm, "phase", "RolledBack") in watcher.seen)
    )
    return {
        "faults": faults,
        "outcomes_as_expected": not wrong,
        "wrong_outcomes": wrong[:20],
        "spike_to_rollback_p50_s": round(percentile(breach, 0.5) or 0, 1),
        "spike_to_rollback_p99_s": round(percentile(breach, 0.99) or 0, 1),
        "breach_to_rollback_p50_s": round(percentile(visible, 0.5) or 0, 1),
        "breach_to_rollback_p99_s": round(percentile(visible, 0.99) or 0, 1),
        "analysis_interval_s": INTERVAL_S,
    }


def breach_visible_after(
    prometheus: PrometheusServer, ns: str, name: str, step_started: float, spike: float
) -> float:
    """Seconds from the error spike until the metric, as the controller asks it, crossed its bound.

    Evaluated afterwards, second by second, at the times it would have been
    asked: the window of each evaluation runs from the step's start, as the
    controller renders it.
    """
    for offset in range(0, 600):
        at = spike + offset
        window = f"{max(1, round(at - step_started))}s"
        query = (
            QUERY.replace("{{namespace}}", ns)
            .replace("{{target}}", name)
            .replace("{{track}}", "canary")
            .replace("{{window}}", window)
        )
        value = prometheus.query_value(query, at)
        if value is not None and value > 0.05:
            return float(offset)
    return 0.0


def start_profile(proc: ControllerProcess, out: Path) -> Any:
    """py-spy, sampling the controller for one steady minute (top functions, own time)."""
    import subprocess
    import sys

    assert proc.process is not None
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(proc.process.pid),
            "--duration",
            "60",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def churn(
    custom: client.CustomObjectsApi,
    ns: str,
    names: list[str],
    prometheus_url: str,
    watcher: StatusWatcher,
    sampler: ProcSampler,
    minutes: float,
) -> dict[str, Any]:
    """Every release through canary after canary, a tenth deleted and recreated per cycle."""
    began, cycle, cycles_done = time.monotonic(), 0, 0
    rss_10 = None
    while time.monotonic() - began < minutes * 60:
        cycle += 1
        tag = f"c{cycle}"
        for i, name in enumerate(names):
            if i % 10 == cycle % 10:
                with_retry(
                    lambda nm=name: custom.delete_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, nm
                    )
                )
                wait("deleted", lambda nm=name: not exists(custom, ns, nm), 60)
                body = release(name, prometheus_url, "1m")
                body["spec"]["release"]["tag"] = tag
                with_retry(
                    lambda b=body: custom.create_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, b
                    )
                )
            else:
                with_retry(
                    lambda nm=name, t=tag: custom.patch_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, nm, {"spec": {"release": {"tag": t}}}
                    )
                )
        wait(
            f"cycle {cycle} done",
            lambda t=tag: all(
                (nm, "stableTag", t) in watcher.seen or watcher.phases.get(nm) == "RolledBack"
                for nm in names
            ),
            900,
        )
        cycles_done = cycle
        elapsed = time.monotonic() - began
        if rss_10 is None and elapsed >= 600:
            rss_10 = statistics.median(s[1] for s in sampler.window(began + 540, began + 600))
    end = time.monotonic()
    rss_end = statistics.median(s[1] for s in sampler.window(end - 60, end))
    rss_10 = rss_10 or rss_end
    return {
        "churn_minutes": minutes,
        "churn_cycles": cycles_done,
        "rss_at_10min_mib": round(rss_10, 1),
        "rss_at_end_mib": round(rss_end, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_10) / rss_10, 1),
    }


def exists(custom: client.CustomObjectsApi, ns: str, name: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def with_retry(call: Callable[[], Any], attempts: int = 5) -> Any:
    for attempt in range(attempts):
        try:
            return call()
        except ApiException as exc:
            if exc.status == 404 or attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 1000])
    parser.add_argument("--faults", action="store_true", help="the fault run instead")
    parser.add_argument("--churn-minutes", type=float, default=0)
    parser.add_argument("--profile", action="store_true", help="py-spy one steady minute")
    parser.add_argument("--pause", help="the canary's pause (default: 8m, 14m with --faults)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
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
                result = run_size(
                    n,
                    cluster,
                    prometheus,
                    traffic,
                    work,
                    faults=args.faults,
                    churn_minutes=args.churn_minutes,
                    profile=args.profile,
                    pause=args.pause,
                )
                print(json.dumps(result), flush=True)
                kind = "faults" if args.faults else "churn" if args.churn_minutes else "size"
                result["run"] = kind
                previous = [r for r in previous if (r.get("run", "size"), r["n"]) != (kind, n)] + [
                    result
                ]
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(previous, indent=2) + "\n")
                profile = work / f"bench-{n}.profile.txt"
                if args.profile and profile.exists():
                    target = args.out.parent / f"scale-profile-{n}.txt"
                    target.write_text(top_functions(profile.read_text()))
        except BaseException:
            # The controller's log is the only record of why a wait timed out: keep it.
            kept = Path(tempfile.mkdtemp(prefix="canary-bench-failed-"))
            for log in work.glob("*.log"):
                shutil.copy(log, kept / log.name)
            print(f"controller logs kept in {kept}", file=sys.stderr, flush=True)
            raise
        finally:
            prometheus.stop()
            traffic.stop()
            cluster.stop()
    return 0


def top_functions(raw: str, count: int = 15) -> str:
    """py-spy's raw (collapsed) stacks as two rankings: own time, and time inside our frames.

    The share is of all samples taken while a thread was busy (py-spy skips
    idle threads); `busy_share_of_one_core` says how busy the process was.
    """
    own: dict[str, int] = {}
    inside: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        frames, weight = stack.split(";"), int(samples)
        own[frames[-1]] = own.get(frames[-1], 0) + weight
        for frame in set(frames):
            if "controller/" in frame or "kopf/_core" in frame:
                inside[frame] = inside.get(frame, 0) + weight
        total += weight
    lines = [f"samples: {total} at 100 Hz over 60 s (busy share of one core: {total / 6000:.1%})"]
    for title, table in (("own time", own), ("inside (inclusive)", inside)):
        lines.append(f"\n{title}:")
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:count]
        lines += [f"{100 * c / max(total, 1):5.1f}%  {f}" for f, c in ranked]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
