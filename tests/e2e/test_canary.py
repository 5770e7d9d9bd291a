"""The canary controller as a process against the real control plane and Prometheus."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from controller.adapters.kubernetes import COMMAND_ANNOTATION
from devenv.cluster import BEHAVIOR_IMAGE, NODE_NAMES
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import (
    CapacityWatch,
    Releases,
    adopted,
    deployment,
    healthy_traffic,
    release,
    wait_for,
)

IMAGE = "registry.example.com/payments:{}"


def _image_of(releases: Releases, name: str) -> str:
    dep = releases.deployment(name)
    assert dep is not None
    containers = dep.spec.template.spec.containers
    return next(c.image for c in containers if c.name == "app")


def _wait_image(releases: Releases, name: str, image: str) -> None:
    """The status is written before the actions it decides (a lost write must not
    leave an action done twice), so a phase read can lead the Deployment by a pass."""
    wait_for(lambda: _image_of(releases, name) == image, 30, f"{name} at {image}")


def test_healthy_release_goes_from_ten_percent_to_full(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    healthy_traffic(traffic, namespace)
    body = release("payments", "v1", prometheus.url)
    adopted(releases, body, 10, lambda: controller(namespace))
    assert releases.status("payments")["stableTag"] == "v1"

    with CapacityWatch(releases, "payments") as capacity:
        releases.set_tag("payments", "v2")
        wait_for(lambda: releases.deployment("payments-canary"), 30, "canary Deployment")
        paused = releases.wait_phase("payments", "Paused", timeout=60)
        assert paused["canaryWeight"] == 10 and paused["canaryTag"] == "v2"
        canary = releases.deployment("payments-canary")
        assert canary is not None and canary.spec.replicas == 1
        assert _image_of(releases, "payments-canary") == IMAGE.format("v2")
        assert canary.spec.template.metadata.labels["canary.dev/track"] == "canary"
        stable = releases.deployment("payments")
        assert stable is not None and stable.spec.replicas == 9
        done = releases.wait_phase("payments", "Succeeded", timeout=120)

    assert _image_of(releases, "payments") == IMAGE.format("v2")
    wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")
    stable = releases.deployment("payments")
    assert stable is not None and stable.spec.replicas == 10
    assert done["stableTag"] == "v2" and done["previousStableTag"] == "v1"
    assert [(h["tag"], h["outcome"]) for h in done["history"]] == [("v2", "Succeeded")]
    assert all(m["verdict"] == "pass" for m in done["metrics"])
    assert min(capacity.samples) >= 10, f"capacity dipped: {min(capacity.samples)}"
    releases.wait_events("payments", "ReleaseStarted", "StepAdvanced", "Promoting", "Promoted")


def test_error_regression_rolls_back_and_says_why(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    healthy_traffic(traffic, namespace)
    steps = [{"setWeight": 10}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    body = release("payments", "v1", prometheus.url, steps=steps)
    adopted(releases, body, 10, lambda: controller(namespace))
    with CapacityWatch(releases, "payments") as capacity:
        releases.set_tag("payments", "v2")
        releases.wait_phase("payments", "Paused", timeout=60)
        traffic.set_rate(namespace, "payments", "canary", rps=50, error_ratio=0.4)
        status = releases.wait_phase("payments", "RolledBack", timeout=60)
        wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")

    assert status["reason"] == "MetricBreach"
    message = status["message"]
    # whichever bound the rising canary ratio crossed first: the absolute max or 3 x stable
    assert "metric error-rate" in message
    assert "> max 0.05" in message or "> 3 x stable" in message
    assert "http_request_errors_total" in message and 'track="canary"' in message
    breach = next(m for m in status["metrics"] if m["name"] == "error-rate")
    assert breach["verdict"] == "fail" and breach["canaryValue"] > 3 * breach["stableValue"]
    assert _image_of(releases, "payments") == IMAGE.format("v1")
    stable = releases.deployment("payments")
    assert stable is not None and stable.spec.replicas == 10
    assert min(capacity.samples) >= 10, f"capacity dipped: {min(capacity.samples)}"
    assert status["history"][-1]["outcome"] == "RolledBack"
    releases.wait_events("payments", "RolledBack")
    # the same tag is not retried by itself
    time.sleep(3)
    assert releases.status("payments")["phase"] == "RolledBack"
    assert releases.deployment("payments-canary") is None


def test_killed_during_pause_resumes_the_same_step(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    healthy_traffic(traffic, namespace)
    steps = [{"setWeight": 25}, {"pause": {"duration": "25s"}}, {"setWeight": 100}]
    body = release("payments", "v1", prometheus.url, steps=steps)
    first = adopted(releases, body, 4, lambda: controller(namespace))
    releases.set_tag("payments", "v2")
    paused = releases.wait_phase("payments", "Paused", timeout=60)
    started = paused["stepStartedAt"]
    time.sleep(3)
    first.kill()
    time.sleep(8)  # the step's clock keeps running while nobody watches
    controller(namespace)
    time.sleep(4)
    after = releases.status("payments")
    assert after["currentStepIndex"] == 1 and after["stepStartedAt"] == started
    done = releases.wait_phase("payments", "Succeeded", timeout=90)
    promoted_at = datetime.fromisoformat(done["history"][-1]["finishedAt"])
    step_start = datetime.fromisoformat(started)
    # resumed, not restarted: promotion comes ~25s after the original step start,
    # well before 25s after the restart (which was >11s later)
    assert (promoted_at - step_start).total_seconds() < 25 + 11


def test_prometheus_down_holds_then_carries_on(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    healthy_traffic(traffic, namespace)
    own = PrometheusServer.start(tmp_path / "prom")
    own.add_target(traffic.address, {"source": "traffic-simulator"})
    own.wait_for_target(traffic.address)
    try:
        releases.create_deployment("payments", 4, IMAGE.format("v1"))
        steps = [{"setWeight": 25}, {"pause": {"duration": "5s"}}, {"setWeight": 100}]
        body = release("payments", "v1", own.url, steps=steps, unreachable_deadline="3s")
        releases.create(body)
        controller(namespace)
        releases.wait_phase("payments", "Idle", timeout=30)
        port = own.port
        own.stop()
        releases.set_tag("payments", "v2")

        def unreachable_condition() -> dict[str, str] | None:
            return releases.condition(
                "payments", "AnalysisAvailable", reason="PrometheusUnreachable"
            )

        cond = wait_for(unreachable_condition, 60, "PrometheusUnreachable condition")
        assert cond["status"] == "False" and "unreachable" in cond["message"]
        time.sleep(8)  # the pause is long over: still no promotion, no rollback
        held = releases.status("payments")
        assert held["phase"] == "Paused" and held["reason"] == "AwaitingAnalysis"
        assert _image_of(releases, "payments") == IMAGE.format("v1")
        releases.wait_events("payments", "PrometheusUnreachable")

        own = PrometheusServer.start(tmp_path / "prom", port=port)
        done = releases.wait_phase("payments", "Succeeded", timeout=90)
        assert done["stableTag"] == "v2"
    finally:
        own.stop()


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"steps": [{"scale": 3}]}, "each step must set exactly one of setWeight or pause"),
        ({"steps": [{"setWeight": 120}]}, "should be less than or equal to 100"),
        ({"steps": [{"pause": {"duration": "ten minutes"}}]}, "should match"),
    ],
)
def test_invalid_release_is_rejected_by_the_apiserver(
    releases: Releases, patch: dict[str, object], message: str
) -> None:
    body = release("payments", "v1", None)
    body["spec"].update(patch)
    with pytest.raises(ApiException) as caught:
        releases.create(body)
    assert caught.value.status == 422
    assert message in caught.value.body


def test_missing_target_gives_a_clear_status(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    releases.create(release("ghost", "v2", None))
    controller(namespace)
    status = releases.wait_phase("ghost", "Failed", timeout=30)
    assert status["reason"] == "TargetNotFound"
    assert "'ghost' not found" in status["message"]
    releases.create_deployment("ghost", 2, "registry.example.com/ghost:v1")
    done = releases.wait_phase("ghost", "Succeeded", timeout=60)
    assert done["stableTag"] == "v2"


def test_two_namespaces_progress_independently(
    k8s,
    crd: str,
    namespace: str,
    controller: ControllerFactory,  # type: ignore[no-untyped-def]
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
    request: pytest.FixtureRequest,
) -> None:
    from kubernetes import client

    from tests.fixtures_cluster import namespace_name

    other = namespace_name(request.node.name + "-b")
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        wait_for(lambda: core.read_namespaced_service_account("default", other), 30, "SA")
        good, bad = Releases(k8s, namespace), Releases(k8s, other)
        healthy_traffic(traffic, namespace)
        healthy_traffic(traffic, other)
        traffic.set_rate(other, "payments", "canary", rps=50, error_ratio=0.5)
        for rel in (good, bad):
            rel.create_deployment("payments", 4, IMAGE.format("v1"))
            rel.create(release("payments", "v1", prometheus.url))
        controller(namespace, other)
        for rel in (good, bad):
            rel.wait_phase("payments", "Idle", timeout=30)
            rel.set_tag("payments", "v2")
        assert good.wait_phase("payments", "Succeeded", timeout=120)["stableTag"] == "v2"
        assert bad.wait_phase("payments", "RolledBack", timeout=60)["stableTag"] == "v1"
    finally:
        core.delete_namespace(other)


def test_crash_looping_canary_is_rolled_back(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    releases.create_deployment("payments", 4, IMAGE.format("v1"))
    steps = [{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    releases.create(release("payments", "v1", None, steps=steps))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)
    releases.set_tag("payments", "v2")
    wait_for(lambda: releases.deployment("payments-canary"), 30, "canary Deployment")
    # make the canary's new pods crash-loop (kwok stage selected by this label)
    releases.apps.patch_namespaced_deployment(
        "payments-canary",
        namespace,
        {
            "spec": {
                "template": {"metadata": {"labels": {"kwok.canary.dev/behavior": "crash-loop"}}}
            }
        },
    )
    status = releases.wait_phase("payments", "RolledBack", timeout=90)
    assert status["reason"] in ("CanaryCrashLooping", "CanaryRestarting")
    assert "payments-canary" in status["message"] or "restarted" in status["message"]
    wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")
    assert _image_of(releases, "payments") == IMAGE.format("v1")


def _promote_a_build_that_crashes_as_stable(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    progress_deadline_s: int | None = None,
) -> dict[str, Any]:
    """v1 on 4 replicas, then `crash-as-stable` through a short canary: its status once
    promoted and watched (for 10 min, pod health only), before its pods crash."""
    target = deployment("payments", 4, f"{BEHAVIOR_IMAGE}:v1")
    if progress_deadline_s is not None:
        target["spec"]["progressDeadlineSeconds"] = progress_deadline_s
    releases.apps.create_namespaced_deployment(namespace, target)
    body = release("payments", "v1", None, steps=[{"setWeight": 25}, {"pause": {"duration": "2s"}}])
    body["spec"]["release"]["image"] = f"{BEHAVIOR_IMAGE}:{{tag}}"
    body["spec"]["postPromotion"] = {"duration": "10m"}
    releases.create(body)
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=60)
    releases.set_tag("payments", "crash-as-stable")
    return releases.wait_phase("payments", "Succeeded", timeout=90)


def test_promoted_pods_that_crash_loop_during_the_watch_are_rolled_back(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    """A build that passes its canary and crash-loops once it carries all the traffic
    (kwok's crash-as-stable, 20 s after the pods start): the watch after promotion,
    with no metric and no Prometheus at all, puts the previous image back."""
    promoted = _promote_a_build_that_crashes_as_stable(releases, namespace, controller)
    assert promoted["postPromotion"]["state"] == "Watching"
    assert _image_of(releases, "payments") == f"{BEHAVIOR_IMAGE}:crash-as-stable"
    status = releases.wait_phase("payments", "RolledBack", timeout=90)
    assert status["reason"] == "PostPromotionBreach"
    assert "after promotion, stable pod payments-" in status["message"]
    assert "is in CrashLoopBackOff" in status["message"]
    assert status["postPromotion"]["state"] == "RolledBack"
    assert status["stableTag"] == "v1" and status["canaryTag"] == "crash-as-stable"
    _wait_image(releases, "payments", f"{BEHAVIOR_IMAGE}:v1")

    def serving_again() -> bool:
        dep = releases.deployment("payments")
        return bool(dep and dep.status and (dep.status.available_replicas or 0) >= 4)

    wait_for(serving_again, 60, "the previous image serving on all 4 replicas")
    releases.wait_events("payments", "Promoted", "RolledBack")


@contextlib.contextmanager
def _no_room(releases: Releases) -> Iterator[None]:
    """Every node cordoned: no new pod schedules until the block ends."""

    def cordon(flag: bool) -> None:
        for node in NODE_NAMES:
            releases.core.patch_node(node, {"spec": {"unschedulable": flag}})

    cordon(True)
    try:
        yield
    finally:
        cordon(False)


def test_a_rollback_that_cannot_roll_out_is_reported_until_it_does(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    """The promoted build crash-loops and is rolled back, but the cluster has no room
    left for the previous image's pods: the rollback's own rollout stalls. The release
    says so (RollbackProgressing=False, a RollbackStalled Event) instead of a quiet
    RolledBack, and says when the rollout completes once there is room again."""
    _promote_a_build_that_crashes_as_stable(releases, namespace, controller, progress_deadline_s=10)
    with _no_room(releases):  # before the promoted pods crash, 20 s after they start
        status = releases.wait_phase("payments", "RolledBack", timeout=90)
        assert status["reason"] == "PostPromotionBreach"

        def stalled() -> dict[str, Any] | None:
            found = releases.condition("payments", "RollbackProgressing")
            return found if found and found["status"] == "False" else None

        condition = wait_for(stalled, 90, "RollbackProgressing=False")
        assert condition["reason"] == "ProgressDeadlineExceeded"
        assert f"rolling stable back to {BEHAVIOR_IMAGE}:v1" in condition["message"]
        assert "timed out progressing" in condition["message"]
        releases.wait_events("payments", "RollbackStalled")
        assert releases.status("payments")["phase"] == "RolledBack"

    def completed() -> dict[str, Any] | None:
        found = releases.condition("payments", "RollbackProgressing")
        return found if found and found["reason"] == "Completed" else None

    done = wait_for(completed, 120, "RollbackProgressing=True/Completed")
    assert done["status"] == "True"
    stable = releases.deployment("payments")
    assert stable is not None and (stable.status.available_replicas or 0) >= 4
    assert _image_of(releases, "payments") == f"{BEHAVIOR_IMAGE}:v1"


def test_a_promotion_the_deployment_cannot_finish_is_rolled_back(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    """A human forces a build whose pods never become Ready onto every replica: the
    Deployment's progressDeadlineSeconds (10 s here) ends it, and the old pods serve
    throughout (maxUnavailable 0 during a promotion)."""
    target = deployment("payments", 4, f"{BEHAVIOR_IMAGE}:v1")
    target["spec"]["progressDeadlineSeconds"] = 10
    releases.apps.create_namespaced_deployment(namespace, target)
    body = release("payments", "v1", None, steps=[{"setWeight": 25}, {"pause": {}}])
    body["spec"]["release"]["image"] = f"{BEHAVIOR_IMAGE}:{{tag}}"
    releases.create(body)
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=60)
    with CapacityWatch(releases, "payments") as capacity:
        releases.set_tag("payments", "not-ready")
        wait_for(lambda: releases.deployment("payments-canary"), 30, "canary Deployment")
        command = {COMMAND_ANNOTATION: "promote-full e2e"}
        releases.patch("payments", {"metadata": {"annotations": command}})
        releases.wait_phase("payments", "Promoting", timeout=30)
        _wait_image(releases, "payments", f"{BEHAVIOR_IMAGE}:not-ready")
        status = releases.wait_phase("payments", "RolledBack", timeout=120)
        wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")
    assert status["reason"] == "PromotionStalled"
    assert "progressDeadlineSeconds" in status["message"]
    assert "timed out progressing" in status["message"]
    assert _image_of(releases, "payments") == f"{BEHAVIOR_IMAGE}:v1"
    assert min(capacity.samples) >= 4, f"capacity dipped: {min(capacity.samples)}"
