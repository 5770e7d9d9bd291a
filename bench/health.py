"""Crash-level builds: from pods that crash or never serve to the rollback decision.

The judge benchmark (bench/judge) measures one half of the crash target, a
canary at ten times the errors; this measures the other half, a canary that
is not Ready, on the real control plane with the controller as a process and
the chart's `reconcileInterval` (10 s). No Prometheus is involved: the
built-in health check decides from the canary's pods and Deployment.

Each release runs `kwok.canary.dev/behavior:{tag}` (devenv/cluster.py): the
stable tag `v1` is healthy, and the new tag is a bad build:

- `crash-loop`: the containers wait in CrashLoopBackOff, restarts rising. Timed
  from the first canary pod status that shows CrashLoopBackOff (what the
  controller's pod watch can see) to the status showing `RolledBack`;
- `not-ready`: Running, never Ready. The breach is `healthCheck.readyDeadline`
  after the first reconcile that saw fewer Ready canary pods than its goal
  (the one that created the canary). Timed from the new tag to `RolledBack`;
  minus the deadline, that is the controller's own delay.
- `crash-as-stable`: serves fine as the canary, is promoted, and crash-loops
  20 s after its pods start as stable, during the watch after promotion
  (`postPromotion` with no metrics). Timed from the first stable pod status
  showing CrashLoopBackOff to `RolledBack` (reason `PostPromotionBreach`).

Every release gets its bad tag within about a second (four patches at a
time), so the numbers include the contention of all of them at once. kwok
shows CrashLoopBackOff as soon as the pod exists; a kubelet shows it after
the container's first exit, so on a real node add the application's own time
to crash (and its first restart back-off) to `tag_to_decision_s`.

Usage: python -m bench.health [--releases 10] [--ready-deadline 30s] [--behaviours a,b]
Uses the cluster of CANARY_KUBECONFIG if set, else starts one.
Writes bench/results/health.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

from bench.harness import WatchThread, canary_release, run_on_a_cluster
from bench.scale.run import StatusWatcher, deployment, percentile, wait
from controller.adapters.kubernetes import TRACK_LABEL
from controller.api.durations import parse_duration
from controller.api.spec import GROUP, PLURAL, VERSION
from devenv.cluster import BEHAVIOR_IMAGE, LocalCluster
from devenv.controller import ControllerProcess
from devenv.install import install_crd

RESULTS = Path(__file__).resolve().parent / "results" / "health.json"
RECONCILE_INTERVAL_S = "10"  # the chart's default
BEHAVIOURS = {
    "crash-loop": "CanaryCrashLooping",
    "not-ready": "CanaryNotReady",
    "crash-as-stable": "PostPromotionBreach",
}
CRASHING = ("crash-loop", "crash-as-stable")
REPLICAS = 4


class PodWatcher(WatchThread):
    """When each app's pods of either track were first seen crash-looping."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        super().__init__(core.list_namespaced_pod, namespace, label_selector=TRACK_LABEL)
        self.first_crash: dict[str, float] = {}

    def on_event(self, pod: client.V1Pod, now: float) -> None:
        app = (pod.metadata.labels or {}).get("app")
        if app is None:
            return
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            if waiting is not None and waiting.reason == "CrashLoopBackOff":
                self.first_crash.setdefault(app, now)


def release(name: str, ready_deadline: str, behaviour: str) -> dict[str, Any]:
    steps: list[dict[str, Any]]
    steps = [{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    watch = None
    if behaviour == "crash-as-stable":  # passes its canary quickly, then is watched
        steps, watch = [{"setWeight": 25}, {"pause": {"duration": "5s"}}], {"duration": "10m"}
    extra: dict[str, Any] = {"healthCheck": {"readyDeadline": ready_deadline}}
    if watch:
        extra["postPromotion"] = watch
    return canary_release(name, f"{BEHAVIOR_IMAGE}:{{tag}}", steps, **extra)


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "max": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "p90": round(percentile(values, 0.9) or 0.0, 2),
        "max": round(max(values), 2),
    }


def measure(
    cluster: LocalCluster, per_behaviour: int, ready_deadline: str, behaviours: list[str]
) -> dict[str, Any]:
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    install_crd(api)
    ns = f"bench-health-{os.getpid()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait("service account", lambda: bool(core.list_namespaced_service_account(ns).items), 60)
    bad_tag = {
        f"{behaviour}-{i:02d}": behaviour for behaviour in behaviours for i in range(per_behaviour)
    }
    names = list(bad_tag)
    for name in names:
        apps.create_namespaced_deployment(ns, deployment(name, REPLICAS, f"{BEHAVIOR_IMAGE}:v1"))
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, release(name, ready_deadline, bad_tag[name])
        )
    statuses, pods = StatusWatcher(custom, ns), PodWatcher(core, ns)
    statuses.start()
    pods.start()
    logs = Path(tempfile.mkdtemp(prefix="bench-health-"))
    env = {"CANARY_RECONCILE_INTERVAL": RECONCILE_INTERVAL_S}
    proc = ControllerProcess(cluster.kubeconfig, logs / "controller.log", [ns], env).start()
    deadline_s = parse_duration(ready_deadline).total_seconds()
    try:
        wait("all Idle", lambda: statuses.count("Idle") == len(names), 300)
        tagged: dict[str, float] = {}

        def break_it(name: str) -> None:
            tagged[name] = time.monotonic()
            patch = {"spec": {"release": {"tag": bad_tag[name]}}}
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(break_it, names))
        wait(
            "all RolledBack",
            lambda: statuses.count("RolledBack") == len(names),
            deadline_s + 300,
        )
        final = {
            name: custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)["status"]
            for name in names
        }
    finally:
        statuses.stop_event.set()
        pods.stop_event.set()
        proc.stop()
        core.delete_namespace(ns)
        api.close()
    unseen = [n for n in names if bad_tag[n] in CRASHING and n not in pods.first_crash]
    if unseen:
        raise AssertionError(f"no CrashLoopBackOff pod was seen for {unseen}")
    decided = {name: statuses.seen[(name, "phase", "RolledBack")] for name in names}
    result: dict[str, Any] = {
        "releases_per_behaviour": per_behaviour,
        "replicas": REPLICAS,
        "reconcile_interval_s": float(RECONCILE_INTERVAL_S),
        "ready_deadline_s": deadline_s,
        "measured_at": datetime.now().isoformat(timespec="seconds"),
    }
    for behaviour in behaviours:
        reason = BEHAVIOURS[behaviour]
        mine = [name for name in names if bad_tag[name] == behaviour]
        wrong = {n: final[n].get("reason") for n in mine if final[n].get("reason") != reason}
        if wrong:
            raise AssertionError(f"{behaviour}: rolled back for another reason: {wrong}")
        entry: dict[str, Any] = {
            "reason": reason,
            "tag_to_decision_s": summary([decided[n] - tagged[n] for n in mine]),
        }
        if behaviour in CRASHING:
            entry["crash_visible_to_decision_s"] = summary(
                [decided[n] - pods.first_crash[n] for n in mine]
            )
        else:
            entry["tag_to_decision_minus_deadline_s"] = summary(
                [decided[n] - tagged[n] - deadline_s for n in mine]
            )
        result[behaviour] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10, help="per behaviour")
    parser.add_argument("--ready-deadline", default="30s")
    parser.add_argument(
        "--behaviours", default=",".join(BEHAVIOURS), help="comma-separated; all by default"
    )
    args = parser.parse_args()
    behaviours = args.behaviours.split(",")
    unknown = set(behaviours) - set(BEHAVIOURS)
    if unknown:
        parser.error(f"unknown behaviours {sorted(unknown)}; known: {', '.join(BEHAVIOURS)}")
    run_on_a_cluster(
        lambda cluster: measure(cluster, args.releases, args.ready_deadline, behaviours), RESULTS
    )


if __name__ == "__main__":
    main()
