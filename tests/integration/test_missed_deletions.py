"""Objects deleted while a watch was down, checked against the real apiserver's listings.

The indices here are filled the way kopf fills them (the same record
functions, from the objects the apiserver returned); deleting the objects
without telling the index is what a watch that broke and listed again leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from controller.adapters import kubernetes_listing
from controller.adapters.kubernetes import pod_record
from controller.adapters.kubernetes_listing import Kind, Listing, list_live
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.engine.observations import PodHealth
from controller.runtime.caches import (
    AutoscalerRecord,
    CachedCluster,
    ReleaseKey,
    ReleaseStore,
    deployment_record,
)
from controller.runtime.phantoms import Sweeper
from tests.e2e.helpers import Releases, deployment, release

pytestmark = pytest.mark.usefixtures("crd")
IMAGE = "registry.example.com/payments:v2"


def _body(api: client.ApiClient, obj: Any) -> dict[str, Any]:
    return dict(api.sanitize_for_serialization(obj))


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": IMAGE}]},
    }


def _hpa(name: str, target: str) -> dict[str, Any]:
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}
    return {"metadata": {"name": name}, "spec": {"scaleTargetRef": ref, "maxReplicas": 5}}


TRACKED = {"canary.dev/release": "payments", "canary.dev/track": "canary"}


def test_a_listing_reads_every_watched_object_in_pages_and_only_the_tracks_pods(
    k8s: client.ApiClient, releases: Releases, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubernetes_listing, "PAGE", 2)  # three deployments: two pages
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    made: dict[Kind, set[str]] = {kind: set() for kind in kubernetes_listing.KINDS}
    versions = []
    for name in ("payments", "cart", "search"):
        created = apps.create_namespaced_deployment(namespace, deployment(name, 0, IMAGE))
        made["deployments"].add(created.metadata.uid)
        versions.append(int(created.metadata.resource_version))
    tracked = core.create_namespaced_pod(namespace, _pod("payments-canary-1", TRACKED))
    made["pods"].add(tracked.metadata.uid)
    core.create_namespaced_pod(namespace, _pod("unrelated", {"app": "other"}))
    hpa = client.AutoscalingV2Api(k8s).create_namespaced_horizontal_pod_autoscaler(
        namespace, _hpa("payments-hpa", "payments")
    )
    made["horizontalpodautoscalers"].add(hpa.metadata.uid)
    made["canaryreleases"].add(releases.create(release("payments", "v1", None))["metadata"]["uid"])

    for kind, uids in made.items():
        listing = list_live(k8s, kind, [namespace])
        assert listing.uids == uids, kind
        assert listing.version is not None and listing.version >= max(versions), kind
        everywhere = list_live(k8s, kind, [])  # cluster-wide mode
        assert uids <= everywhere.uids, kind
    assert list_live(k8s, "deployments", ["default"]).uids.isdisjoint(made["deployments"])


def _store_release(store: ReleaseStore, releases: Releases, name: str) -> dict[str, Any]:
    body = releases.create(release(name, "v1", None))
    store.put(body)
    return body


def test_what_a_watch_missed_the_deletion_of_is_set_aside_and_its_releases_decide_again(
    k8s: client.ApiClient, releases: Releases, namespace: str
) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    autoscaling = client.AutoscalingV2Api(k8s)
    store = ReleaseStore()
    kept = _store_release(store, releases, "payments")
    deleted = _store_release(store, releases, "retired")

    stable = apps.create_namespaced_deployment(namespace, deployment("payments", 0, IMAGE))
    pod = core.create_namespaced_pod(namespace, _pod("payments-canary-1", TRACKED))
    hpa = autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace, _hpa("payments-hpa", "payments")
    )
    # As the watch last saw them: the canary pod was crash-looping.
    looping = pod_record(_body(k8s, pod))
    assert looping is not None
    cluster = CachedCluster(k8s, store)
    cluster.deployments = {(namespace, "payments"): [deployment_record(_body(k8s, stable))]}
    cluster.pods = {(namespace, "payments", "canary"): [looping._replace(crash_looping=True)]}
    meta = hpa.metadata
    cluster.autoscalers = {
        (namespace, "payments"): [AutoscalerRecord(meta.name, meta.uid, meta.resource_version)]
    }
    assert cluster.read_pods(namespace, "payments", "canary", IMAGE).crash_looping
    assert cluster.read_deployment(namespace, "payments", "app") is not None
    assert cluster.read_autoscaler(namespace, "payments") == "payments-hpa"

    # Deleted while the watch was down: the indices still hold them.
    apps.delete_namespaced_deployment("payments", namespace)
    core.delete_namespaced_pod("payments-canary-1", namespace, grace_period_seconds=0)
    autoscaling.delete_namespaced_horizontal_pod_autoscaler("payments-hpa", namespace)
    releases.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "retired")
    # And one created just after the listing is read: it must stay.
    late: list[str] = []

    def listing_then_a_new_deployment(kind: Kind, namespaces: Sequence[str]) -> Listing:
        listing = list_live(k8s, kind, namespaces)
        if kind == "deployments" and not late:
            cart = apps.create_namespaced_deployment(namespace, deployment("cart", 0, IMAGE))
            cluster.deployments[(namespace, "cart")] = [deployment_record(_body(k8s, cart))]
            late.append(cart.metadata.uid)
        return listing

    woken: list[ReleaseKey] = []
    forgotten: list[tuple[ReleaseKey, str]] = []

    def forget(key: ReleaseKey, uid: str) -> None:
        forgotten.append((key, uid))
        store.delete_if(key, uid)

    sweeper = Sweeper(
        cluster,
        listing_then_a_new_deployment,
        [namespace],
        interval_s=300,
        wake=woken.append,
        forget=forget,
    )
    missed = {kind: _missed(kind) for kind in kubernetes_listing.KINDS}
    gone = sweeper.sweep()

    assert gone == {stable.metadata.uid, pod.metadata.uid, hpa.metadata.uid}
    assert cluster.read_pods(namespace, "payments", "canary", IMAGE) == PodHealth()
    assert cluster.read_deployment(namespace, "payments", "app") is None
    assert cluster.read_autoscaler(namespace, "payments") is None
    assert cluster.read_deployment(namespace, "cart", "app") is not None  # newer than the listing
    assert forgotten == [((namespace, "retired"), deleted["metadata"]["uid"])]
    assert store.keys() == [(namespace, "payments")]
    assert woken == [(namespace, "payments")]
    assert {kind: _missed(kind) - missed[kind] for kind in missed} == dict.fromkeys(missed, 1)
    assert kept["metadata"]["uid"] == store.get((namespace, "payments"))["metadata"]["uid"]

    # The indices keep them (kopf never drops them): found again, but news to no one.
    woken.clear()
    assert sweeper.sweep() == gone
    assert woken == []
    assert {kind: _missed(kind) - missed[kind] for kind in missed} == dict.fromkeys(missed, 1)


def _missed(kind: str) -> float:
    value = REGISTRY.get_sample_value("canary_watch_missed_deletions_total", {"kind": kind})
    return value or 0.0
