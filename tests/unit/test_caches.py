"""The watch caches: newest body wins, our own writes are not news, trimmed views read the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from controller.adapters.kubernetes import PodRecord, deployment_view, pod_health, pod_record
from controller.api.status import CanaryReleaseStatus, PostPromotionStatus
from controller.engine.observations import PodHealth
from controller.engine.watching import watching
from controller.runtime.caches import (
    CachedCluster,
    ReleaseStore,
    deployment_record,
    releases_for_deployment,
)
from controller.runtime.handlers import _watching, pod_index


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
        "managedFields": [
            {"manager": "helm", "fieldsV1": {"f:spec": {"f:template": {}, "f:replicas": {}}}},
            *[{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}}] * 9,
        ],
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
    # of the managed fields, only who owns spec.replicas is kept
    assert record["metadata"]["managedFields"] == [
        {"manager": "helm", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]
    assert deployment_view(record, "app").replicas_set_by == "helm"
    assert len(repr(record)) < len(repr(DEPLOYMENT)) / 5


def test_a_stalled_rollout_is_read_from_the_deployments_own_condition() -> None:
    view = deployment_view(deployment_record(DEPLOYMENT), "app")
    assert view.stalled == 'ReplicaSet "web-7d9f" has timed out progressing.'
    progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    healthy = {**DEPLOYMENT, "status": {**DEPLOYMENT["status"], "conditions": [progressing]}}
    assert deployment_view(healthy, "app").stalled is None


V1, V2 = "registry.example.com/web:v1", "registry.example.com/web:v2"


def pod(name: str, image: str = V2, *, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    waiting = {"waiting": {"reason": "CrashLoopBackOff"}} if restarts else {"running": {}}
    return {
        "metadata": {"name": name, **extra.get("metadata", {})},
        "spec": {"containers": [{"name": "app", "image": image}, {"name": "proxy", "image": "p"}]},
        "status": {
            "phase": extra.get("phase", "Running"),
            "containerStatuses": [
                {"restartCount": 0, "state": {"running": {}}},
                {"restartCount": restarts, "state": waiting},
            ],
        },
    }


def test_a_pod_record_keeps_restarts_crash_loops_and_images() -> None:
    assert pod_record(pod("web-1", restarts=5)) == PodRecord("web-1", 5, True, (V2, "p"))
    assert pod_record({"metadata": {"name": "web-2"}}) == PodRecord("web-2", 0, False, ())


def test_a_pod_that_no_longer_serves_has_no_record() -> None:
    gone = {"deletionTimestamp": "2026-12-03T10:00:00Z"}
    assert pod_record(pod("web-1", restarts=9, metadata=gone)) is None
    assert pod_record(pod("web-2", restarts=9, phase="Failed")) is None  # evicted
    assert pod_record(pod("web-3", phase="Succeeded")) is None


def test_only_the_pods_of_the_image_rolled_out_now_count() -> None:
    records = [pod_record(pod("old-1", V1, restarts=7)), pod_record(pod("new-1", V2))]
    assert pod_health([r for r in records if r is not None], V2) == PodHealth()
    assert pod_health([r for r in records if r is not None], V1) == PodHealth(("old-1",), 7)


def test_the_pod_index_keys_by_release_and_track_and_drops_pods_that_stop_serving() -> None:
    labels = {"canary.dev/release": "web", "canary.dev/track": "stable", "app": "web"}
    indexed = pod_index(namespace="shop", labels=labels, body=pod("web-1", restarts=3))
    assert indexed == {("shop", "web", "stable"): PodRecord("web-1", 3, True, (V2, "p"))}
    evicted = pod("web-1", restarts=3, phase="Failed")
    assert pod_index(namespace="shop", labels=labels, body=evicted) == {}  # {} purges it


def test_a_stable_pod_wakes_its_release_only_while_the_promotion_is_watched() -> None:
    """The handler reads the raw status; it agrees with the engine on what the engine wrote."""
    at = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    for phase, state in (
        ("Succeeded", "Watching"),
        ("Succeeded", "Passed"),
        ("RolledBack", "RolledBack"),
        ("Succeeded", None),
        ("Idle", None),
    ):
        watch = None
        if state is not None:
            watch = PostPromotionStatus(state=state, started_at=at, until=at + timedelta(hours=1))
        status = CanaryReleaseStatus(phase=phase, post_promotion=watch)
        body = {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
        assert _watching(body) == watching(status) == (state == "Watching"), (phase, state)
    assert not _watching(None) and not _watching({})


def test_each_track_reads_its_own_pods_from_the_index() -> None:
    cluster = CachedCluster(client.ApiClient(), ReleaseStore())
    cluster.deployments, cluster.autoscalers = {}, {}
    cluster.pods = {
        ("shop", "web", "canary"): [PodRecord("web-canary-1", 1, False, (V2,))],
        ("shop", "web", "stable"): [
            PodRecord("web-2", 4, True, (V2,)),
            PodRecord("web-1", 0, True, (V2,)),
            PodRecord("web-3", 2, False, (V2,)),
        ],
        ("other", "web", "stable"): [PodRecord("web-9", 9, True, (V2,))],
    }
    assert cluster.read_pods("shop", "web", "canary", V2) == PodHealth((), 1)
    assert cluster.read_pods("shop", "web", "stable", V2) == PodHealth(("web-1", "web-2"), 4)
    assert cluster.read_pods("shop", "web", "stable", V1) == PodHealth()
    assert cluster.read_pods("shop", "api", "stable", V2) == PodHealth()
