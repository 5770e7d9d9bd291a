"""The Kubernetes adapter against the real apiserver: status subresource, 409s, the canary clone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from controller.adapters.kubernetes import KubernetesCluster, deployment_view, event_name
from controller.adapters.ports import StatusConflict
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, HistoryEntry
from controller.engine.actions import (
    DeleteCanary,
    RecordEvent,
    ScaleCanary,
    ScaleStable,
    UpdateStable,
)
from controller.engine.observations import PodHealth
from controller.runtime.caches import deployment_record
from controller.runtime.clients import CountingApiClient
from devenv.cluster import BEHAVIOR_IMAGE
from tests.concurrent_calls import dropped_connections
from tests.e2e.helpers import Releases, release, wait_for

pytestmark = pytest.mark.usefixtures("crd")


@pytest.fixture
def adapter(k8s: client.ApiClient) -> KubernetesCluster:
    return KubernetesCluster(k8s)


def _payments(
    adapter: KubernetesCluster, releases: Releases, replicas: int, image: str
) -> tuple[dict[str, Any], CanaryReleaseSpec]:
    """A Deployment `payments` running `image` and its CanaryRelease, as the adapter reads it."""
    releases.create_deployment("payments", replicas, image)
    releases.create(release("payments", "v1", None))
    obj = adapter.read_release(releases.namespace, "payments")
    assert obj is not None
    return obj, CanaryReleaseSpec.model_validate(obj["spec"])


def test_status_round_trips_through_the_status_subresource(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    releases.create(release("payments", "v1", None))
    obj = adapter.read_release(namespace, "payments")
    assert obj is not None
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    status = CanaryReleaseStatus(
        phase="RolledBack",
        stable_tag="v1",
        canary_tag="v2",
        reason="MetricBreach",
        history=[HistoryEntry(tag="v2", outcome="RolledBack", reason="x", finished_at=now)],
    )
    adapter.write_status(namespace, "payments", obj["metadata"]["resourceVersion"], status)
    again = adapter.read_release(namespace, "payments")
    assert again is not None
    assert CanaryReleaseStatus.model_validate(again["status"]) == status
    # a write through the main resource does not touch status (subresource semantics)
    releases.patch("payments", {"status": {"phase": "Idle"}})
    assert releases.status("payments")["phase"] == "RolledBack"


def test_stale_resource_version_is_a_conflict(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    releases.create(release("payments", "v1", None))
    stale = adapter.read_release(namespace, "payments")
    assert stale is not None
    releases.set_tag("payments", "v2")  # someone else writes in between
    with pytest.raises(StatusConflict):
        adapter.write_status(
            namespace, "payments", stale["metadata"]["resourceVersion"], CanaryReleaseStatus()
        )


def test_canary_is_a_labelled_owned_clone_and_stable_updates_in_place(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    obj, spec = _payments(adapter, releases, 4, "registry.example.com/payments:v1")
    image = "registry.example.com/payments:v2"
    adapter.apply(obj, spec, ScaleCanary(image, 1))
    adapter.apply(obj, spec, ScaleCanary(image, 1))  # idempotent
    canary = releases.deployment("payments-canary")
    assert canary is not None and canary.spec.replicas == 1
    assert canary.metadata.owner_references[0].uid == obj["metadata"]["uid"]
    labels = canary.spec.template.metadata.labels
    assert labels["canary.dev/track"] == "canary" and labels["app"] == "payments"
    images = {c.name: c.image for c in canary.spec.template.spec.containers}
    assert images == {"app": image, "sidecar": "registry.example.com/proxy:1.0"}
    view = wait_for(
        lambda: (
            (v := adapter.read_deployment(namespace, "payments-canary", "app"))
            and v.ready_replicas == 1
            and v
        ),
        60,
        "canary Ready",
    )
    assert view.image == image

    adapter.apply(obj, spec, UpdateStable(image, 4, "0", "1"))
    stable = releases.deployment("payments")
    assert stable is not None
    assert stable.spec.strategy.rolling_update.max_unavailable == 0
    assert stable.spec.template.metadata.labels["canary.dev/track"] == "stable"
    assert {c.name: c.image for c in stable.spec.template.spec.containers}["app"] == image

    adapter.apply(obj, spec, DeleteCanary())
    adapter.apply(obj, spec, DeleteCanary())  # already gone: fine
    assert releases.deployment("payments-canary") is None
    adapter.record_event(obj, RecordEvent("Warning", "RolledBack", "because"))
    assert "RolledBack" in releases.event_reasons("payments")


def test_an_event_sent_again_under_its_key_is_recorded_once(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    """A new leader resends the outbox entries the old one recorded but had not cleared."""
    obj, _ = _payments(adapter, releases, 2, "registry.example.com/payments:v1")
    promoted = RecordEvent("Normal", "Promoted", "v2 runs on all 2 replicas")
    for _ in range(2):
        adapter.record_event(obj, promoted, key="0f3a")
        adapter.record_event(obj, RecordEvent("Normal", "StepAdvanced", "step 2/3"))
    assert sorted(releases.event_reasons("payments")) == [
        "Promoted",
        "StepAdvanced",
        "StepAdvanced",
    ]
    key = "0f3a" * 8  # an entry id's length
    assert len(event_name("p" * 253, key)) == 253
    assert event_name("p" * 219 + "-q" * 17, key) == "p" * 219 + "." + key  # no "-." inside
    hand_edited = RecordEvent("Normal", "Paused", "by hand")
    adapter.record_event(obj, hand_edited, key="Not_A/Name")  # no name can hold it
    assert releases.event_reasons("payments").count("Paused") == 1


def test_who_last_set_the_replicas_is_read_from_field_ownership(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    """The controller's own writes are its own; a `kubectl scale` after them is a human's."""
    obj, spec = _payments(adapter, releases, 4, "registry.example.com/payments:v1")

    def owner() -> tuple[str | None, str | None]:
        body = client.ApiClient().sanitize_for_serialization(
            releases.apps.read_namespaced_deployment("payments", namespace)
        )
        direct = adapter.read_deployment(namespace, "payments", "app")
        cached = deployment_view(deployment_record(body), "app")  # what the watch index keeps
        assert direct is not None
        return direct.replicas_set_by, cached.replicas_set_by

    assert owner()[0] is not None  # created by the test's client: someone else
    adapter.apply(obj, spec, ScaleStable(3))
    assert owner() == (None, None)  # the controller's own write
    releases.apps.patch_namespaced_deployment_scale(
        "payments", namespace, {"spec": {"replicas": 8}}, field_manager="kubectl"
    )
    assert owner() == ("kubectl", "kubectl")


def test_a_recreate_deployment_rolls_for_the_rollout_and_is_recreate_again_after(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    releases.create_deployment("payments", 2, "registry.example.com/payments:v1")
    releases.apps.patch_namespaced_deployment(
        "payments", namespace, {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}}
    )
    releases.create(release("payments", "v1", None))
    obj = adapter.read_release(namespace, "payments")
    assert obj is not None
    spec = CanaryReleaseSpec.model_validate(obj["spec"])
    view = adapter.read_deployment(namespace, "payments", "app")
    assert view is not None and view.max_unavailable is None  # how the engine sees Recreate
    image = "registry.example.com/payments:v2"
    adapter.apply(obj, spec, UpdateStable(image, 2, "0", "1"))
    strategy = releases.deployment("payments").spec.strategy  # type: ignore[union-attr]
    assert strategy.type == "RollingUpdate" and strategy.rolling_update.max_unavailable == 0
    adapter.apply(obj, spec, UpdateStable(image, 2, None, None, recreate=True))
    strategy = releases.deployment("payments").spec.strategy  # type: ignore[union-attr]
    assert strategy.type == "Recreate" and strategy.rolling_update is None


def test_a_promotion_labels_stable_pods_so_each_track_reads_its_own_health(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    """Promoted pods carry the release and track: the watch after promotion finds them."""
    image = f"{BEHAVIOR_IMAGE}:crash-as-stable"  # kwok crash-loops it only as stable
    obj, spec = _payments(adapter, releases, 2, f"{BEHAVIOR_IMAGE}:v1")
    good = f"{BEHAVIOR_IMAGE}:v1"
    assert adapter.read_pods(namespace, "payments", "stable", good) == PodHealth()  # unlabelled
    adapter.apply(obj, spec, ScaleCanary(image, 1))
    adapter.apply(obj, spec, UpdateStable(image, 2, "0", "1"))
    labels = releases.deployment("payments").spec.template.metadata.labels  # type: ignore[union-attr]
    assert labels["canary.dev/track"] == "stable" and labels["canary.dev/release"] == "payments"

    def crash_looping() -> PodHealth | None:
        health = adapter.read_pods(namespace, "payments", "stable", image)
        return health if len(health.crash_looping) == 2 else None

    health = wait_for(crash_looping, 90, "both promoted pods in CrashLoopBackOff")
    assert all(name.startswith("payments-") for name in health.crash_looping)
    assert health.max_restarts >= 1
    # the canary runs the same image, but kwok crashes it only under the stable label
    assert adapter.read_pods(namespace, "payments", "canary", image) == PodHealth()

    # the next promotion finds the labels in place: the patch replaces them
    adapter.apply(obj, spec, UpdateStable(good, 2, "0", "1"))

    def rolled() -> bool:
        dep = releases.deployment("payments")
        done = dep and dep.status and (dep.status.updated_replicas or 0) == 2
        return bool(
            done
            and (dep.status.available_replicas or 0) == 2
            and not dep.status.unavailable_replicas
        )

    wait_for(rolled, 90, "the good image on both replicas")
    # what crashed before is gone or going, and says nothing about what runs now
    wait_for(
        lambda: adapter.read_pods(namespace, "payments", "stable", image) == PodHealth(),
        60,
        "the crashed pods no longer counted",
    )
    assert adapter.read_pods(namespace, "payments", "stable", good) == PodHealth()
    selector = "canary.dev/release=payments,canary.dev/track=stable"
    labelled = releases.core.list_namespaced_pod(namespace, label_selector=selector).items
    serving = [p for p in labelled if not p.metadata.deletion_timestamp]
    assert [p.spec.containers[0].image for p in serving] == [good, good]


def test_missing_container_is_a_clear_error(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    releases.create_deployment("payments", 1, "registry.example.com/payments:v1")
    with pytest.raises(LookupError, match="container 'web' not found"):
        adapter.read_deployment(namespace, "payments", "web")


def test_the_hpa_of_a_deployment_is_found_by_its_scale_target(
    adapter: KubernetesCluster, k8s: client.ApiClient, namespace: str
) -> None:
    autoscaling = client.AutoscalingV2Api(k8s)
    assert adapter.read_autoscaler(namespace, "payments") is None
    for name, kind in (("other-hpa", "StatefulSet"), ("payments-hpa", "Deployment")):
        ref = {"apiVersion": "apps/v1", "kind": kind, "name": "payments"}
        body = {"metadata": {"name": name}, "spec": {"scaleTargetRef": ref, "maxReplicas": 5}}
        autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, body)
    assert adapter.read_autoscaler(namespace, "payments") == "payments-hpa"
    assert adapter.read_autoscaler(namespace, "checkout") is None


def test_a_stable_update_without_replicas_leaves_the_size_to_its_owner(
    adapter: KubernetesCluster, releases: Releases, namespace: str
) -> None:
    body = release("payments", "v1", None)
    releases.create_deployment("payments", 3, "registry.example.com/payments:v1")
    releases.create(body)
    obj = adapter.read_release(namespace, "payments")
    assert obj is not None
    spec = CanaryReleaseSpec.model_validate(body["spec"])
    releases.apps.patch_namespaced_deployment("payments", namespace, {"spec": {"replicas": 5}})
    adapter.apply(obj, spec, UpdateStable("registry.example.com/payments:v2", None, "0", "1"))
    after = releases.deployment("payments")
    assert after is not None and after.spec is not None
    assert after.spec.replicas == 5  # as its owner (an HPA) set it
    assert after.spec.template.spec.containers[0].image == "registry.example.com/payments:v2"


def test_each_thread_sharing_the_client_keeps_its_connection(
    k8s: client.ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """16 workers reading at once: urllib3's default pool of 10 would drop (and re-handshake)."""
    workers = 16
    shared = CountingApiClient(None, pool_size=workers + 2, configuration=k8s.configuration)
    core = client.CoreV1Api(shared)
    assert not dropped_connections(lambda: core.read_namespace(namespace), workers, caplog)
