"""The watch caches: newest body wins, our own writes are not news, trimmed views read the same."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from controller.adapters.kubernetes import deployment_view, pod_record
from controller.engine.observations import PodHealth
from controller.runtime.caches import (
    CachedCluster,
    ReleaseStore,
    deployment_record,
    releases_for_deployment,
)


def body(name: str, version: str, target: str = "web", uid: str = "u1") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": name, "uid": uid, "resourceVersion": version},
        "spec": {"targetRef": {"name": target}},
    }


def test_an_older_or_repeated_version_does_not_replace_the_newer() -> None:
    store = ReleaseStore()
    assert store.put(body("a", "10"))
    assert store.put(body("a", "12"))
    assert not store.put(body("a", "11"))  # a watch event from before our write
    assert not store.put(body("a", "12"))  # the echo of our own status write
    assert store.get(("shop", "a"))["metadata"]["resourceVersion"] == "12"  # type: ignore[index]


def test_a_recreated_object_replaces_the_old_one_whatever_its_version() -> None:
    store = ReleaseStore()
    store.put(body("a", "50", uid="old"))
    assert store.put(body("a", "3", uid="new"))
    assert store.get(("shop", "a"))["metadata"]["uid"] == "new"  # type: ignore[index]


def test_deployment_changes_find_the_releases_that_target_them_and_the_canarys_owner() -> None:
    store = ReleaseStore()
    store.put(body("a", "1", target="web"))
    store.put(body("b", "1", target="web"))
    store.put(body("c", "1", target="api"))
    assert sorted(releases_for_deployment(store, "shop", "web", {})) == [
        ("shop", "a"),
        ("shop", "b"),
    ]
    canary_labels = {"canary.dev/release": "c", "canary.dev/track": "canary"}
    assert releases_for_deployment(store, "shop", "api-canary", canary_labels) == [("shop", "c")]
    store.put(body("a", "2", target="api"))  # retargeted
    assert releases_for_deployment(store, "shop", "web", {}) == [("shop", "b")]
    store.delete(("shop", "b"))
    assert releases_for_deployment(store, "shop", "web", {}) == []


DEPLOYMENT = {
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "generation": 7,
        "resourceVersion": "99",
        "labels": {"app": "web"},
        "annotations": {"deployment.kubernetes.io/revision": "3", "big": "x" * 5000},
        "managedFields": [{"manager": "kubectl"}] * 10,
    },
    "spec": {
        "replicas": 6,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 2},
        },
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "proxy:1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "app", "image": "web:v1", "ports": [{"containerPort": 80}]},
                ]
            },
        },
    },
    "status": {
        "replicas": 6,
        "readyReplicas": 5,
        "availableReplicas": 5,
        "updatedReplicas": 6,
        "observedGeneration": 7,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "web-7d9f" has timed out progressing.',
            },
        ],
    },
}


def test_a_trimmed_deployment_gives_the_same_view_for_every_container() -> None:
    record = deployment_record(DEPLOYMENT)
    for container in (None, "sidecar", "app"):
        assert deployment_view(record, container) == deployment_view(DEPLOYMENT, container)
    assert "managedFields" not in record["metadata"]
    assert len(repr(record)) < len(repr(DEPLOYMENT)) / 5


def test_a_stalled_rollout_is_read_from_the_deployments_own_condition() -> None:
    view = deployment_view(deployment_record(DEPLOYMENT), "app")
    assert view.stalled == 'ReplicaSet "web-7d9f" has timed out progressing.'
    progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    healthy = {**DEPLOYMENT, "status": {**DEPLOYMENT["status"], "conditions": [progressing]}}
    assert deployment_view(healthy, "app").stalled is None


def test_a_pod_record_keeps_restarts_and_crash_loops() -> None:
    status = {
        "containerStatuses": [
            {"restartCount": 2, "state": {"running": {}}},
            {"restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        ]
    }
    assert pod_record("web-canary-1", status) == ("web-canary-1", 5, True)
    assert pod_record("web-canary-2", {}) == ("web-canary-2", 0, False)


def test_each_track_reads_its_own_pods_from_the_index() -> None:
    cluster = CachedCluster(client.ApiClient(), ReleaseStore())
    cluster.deployments, cluster.autoscalers = {}, {}
    cluster.pods = {
        ("shop", "web", "canary"): [("web-canary-1", 1, False)],
        ("shop", "web", "stable"): [("web-2", 4, True), ("web-1", 0, True), ("web-3", 2, False)],
        ("other", "web", "stable"): [("web-9", 9, True)],
    }
    assert cluster.read_pods("shop", "web", "canary") == PodHealth((), 1)
    assert cluster.read_pods("shop", "web", "stable") == PodHealth(("web-1", "web-2"), 4)
    assert cluster.read_pods("shop", "api", "stable") == PodHealth()
