"""What the check for deletions a broken watch missed costs, at the scale of the scale benchmark.

The controller lists every watched kind (metadata only, pages of 500) every
resync interval (5 min) and soon after a watch lists again
(`runtime/phantoms.py`). This fills a real apiserver with N releases, their
Deployments (a stable and a canary each), a canary pod each and an HPA for
every tenth, fills the indices as kopf would from what the apiserver
returned, deletes a tenth of each kind behind the indices' back, then times
the sweep: wall time, requests, the memory it allocates at its peak, and
whether it found exactly what was deleted.

Usage: python -m bench.sweep [--releases 1000] [--rounds 5]
Writes bench/results/sweep.json. Uses CANARY_KUBECONFIG's cluster if set.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

from bench.harness import canary_release, run_on_a_cluster
from controller.adapters.kubernetes import RELEASE_LABEL, TRACK_LABEL, pod_record
from controller.adapters.kubernetes_listing import list_live
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.runtime import metrics
from controller.runtime.caches import AutoscalerRecord, CachedCluster, ReleaseStore
from controller.runtime.caches import deployment_record as record_of_deployment
from controller.runtime.clients import CountingApiClient
from controller.runtime.phantoms import Sweeper
from devenv.cluster import LocalCluster
from devenv.install import install_crd

RESULTS = Path(__file__).resolve().parent / "results" / "sweep.json"
NAMESPACE = "sweep-bench"
IMAGE = "registry.example.com/app:v1"


def _deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
        },
    }


def _fill(api: client.ApiClient, n: int) -> dict[str, list[Any]]:
    """Create everything (8 at a time); return the created objects by kind, as JSON."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    custom, hpas = client.CustomObjectsApi(api), client.AutoscalingV2Api(api)
    steps = [{"setWeight": 10}, {"pause": {"duration": "1h"}}]

    def one(i: int) -> dict[str, list[Any]]:
        name = f"app-{i:04d}"
        made: dict[str, list[Any]] = {"deployments": [], "pods": [], "hpas": [], "releases": []}
        made["releases"].append(
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, canary_release(name, IMAGE + "{tag}", steps)
            )
        )
        for dep in (name, f"{name}-canary"):
            made["deployments"].append(
                api.sanitize_for_serialization(
                    apps.create_namespaced_deployment(NAMESPACE, _deployment(dep, {"app": name}))
                )
            )
        labels = {RELEASE_LABEL: name, TRACK_LABEL: "canary"}
        pod = {
            "metadata": {"name": f"{name}-canary-1", "labels": labels},
            "spec": {"containers": [{"name": "app", "image": IMAGE}]},
        }
        made["pods"].append(
            api.sanitize_for_serialization(core.create_namespaced_pod(NAMESPACE, pod))
        )
        if i % 10 == 0:
            ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            body = {"metadata": {"name": name}, "spec": {"scaleTargetRef": ref, "maxReplicas": 5}}
            made["hpas"].append(
                api.sanitize_for_serialization(
                    hpas.create_namespaced_horizontal_pod_autoscaler(NAMESPACE, body)
                )
            )
        return made

    out: dict[str, list[Any]] = {"deployments": [], "pods": [], "hpas": [], "releases": []}
    with ThreadPoolExecutor(8) as pool:
        for made in pool.map(one, range(n)):
            for kind, objs in made.items():
                out[kind].extend(objs)
    return out


def _indexed(api: client.ApiClient, made: dict[str, list[Any]]) -> CachedCluster:
    store = ReleaseStore()
    for body in made["releases"]:
        store.put(body)
    cluster = CachedCluster(api, store)
    deployments: dict[Any, list[Any]] = {}
    for body in made["deployments"]:
        deployments[(NAMESPACE, body["metadata"]["name"])] = [record_of_deployment(body)]
    pods: dict[Any, list[Any]] = {}
    for body in made["pods"]:
        labels = body["metadata"]["labels"]
        key = (NAMESPACE, labels[RELEASE_LABEL], labels[TRACK_LABEL])
        pods.setdefault(key, []).append(pod_record(body))
    hpas: dict[Any, list[Any]] = {}
    for body in made["hpas"]:
        meta = body["metadata"]
        record = AutoscalerRecord(meta["name"], meta["uid"], meta["resourceVersion"])
        hpas[(NAMESPACE, meta["name"])] = [record]
    cluster.deployments, cluster.pods, cluster.autoscalers = deployments, pods, hpas
    return cluster


def _delete_a_tenth(api: client.ApiClient, made: dict[str, list[Any]]) -> set[str]:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    custom, hpas = client.CustomObjectsApi(api), client.AutoscalingV2Api(api)
    deleters = {
        "deployments": lambda name: apps.delete_namespaced_deployment(name, NAMESPACE),
        "pods": lambda name: core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0),
        "hpas": lambda name: hpas.delete_namespaced_horizontal_pod_autoscaler(name, NAMESPACE),
        "releases": lambda name: custom.delete_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name
        ),
    }
    gone: set[str] = set()
    for kind, objs in made.items():
        for body in objs[::10]:
            deleters[kind](body["metadata"]["name"])
            gone.add(body["metadata"]["uid"])
    return gone


def _requests() -> float:
    return sum(
        sample.value
        for family in metrics.API_REQUESTS.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def measure(cluster: LocalCluster, releases: int, rounds: int) -> dict[str, Any]:
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    install_crd(api)
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
    started = time.perf_counter()
    made = _fill(api, releases)
    filled_s = time.perf_counter() - started
    cluster_view = _indexed(api, made)
    deleted = _delete_a_tenth(api, made)
    forgotten: list[str] = []
    lister_api = CountingApiClient(limiter=None, configuration=api.configuration)
    sweeper = Sweeper(
        cluster_view,
        lambda kind, namespaces: list_live(lister_api, kind, namespaces),
        [],  # cluster-wide, as the chart installs it by default
        interval_s=300,
        wake=lambda _key: None,
        forget=lambda key, uid: cluster_view.releases.delete_if(key, uid) and forgotten.append(uid),
    )
    durations, allocated, found = [], [], set()
    for round_ in range(rounds):  # the first finds them; the later ones find them held still
        before = _requests()
        tracemalloc.start()
        start = time.perf_counter()
        gone = sweeper.sweep()
        durations.append(time.perf_counter() - start)
        allocated.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
        requests = _requests() - before
        if round_ == 0:
            found = gone | set(forgotten)
    return {
        "releases": releases,
        "objects": {kind: len(objs) for kind, objs in made.items()},
        "deleted_behind_the_indices": len(deleted),
        "found_exactly_those": found == deleted,
        "fill_s": round(filled_s, 1),
        "sweep_median_s": round(statistics.median(durations), 3),
        "sweep_max_s": round(max(durations), 3),
        "requests_per_sweep": requests,
        "peak_allocated_mib": round(max(allocated), 1),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run_on_a_cluster(lambda cluster: measure(cluster, args.releases, args.rounds), RESULTS)


if __name__ == "__main__":
    main()
