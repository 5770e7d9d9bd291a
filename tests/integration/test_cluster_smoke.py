"""The local control plane behaves like a real cluster where the controller needs it.

If these fail, every other integration/e2e test would fail confusingly, so
they pin down each capability on its own: version, nodes, workloads going
Ready through kube-controller-manager + scheduler + kwok, CRDs with a status
subresource, Job completion, and the kwok pod behaviors (fail, crash-loop,
not-ready) later tests use to simulate a bad canary.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from kubernetes import client

from devenv.cluster import (
    BEHAVIOR_IMAGE,
    K8S_VERSION,
    POD_BEHAVIOR_LABEL,
    POD_DELAY_ANNOTATION,
    LocalCluster,
)
from tests.fixtures_cluster import namespace_name

T = TypeVar("T")

DEADLINE = 60.0
IMAGE = "registry.example.com/app:v1"


def eventually(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def condition(obj: Any, kind: str) -> str | None:
    """Status of condition ``kind`` on a typed object, or None if absent."""
    for cond in obj.status.conditions or []:
        if cond.type == kind:
            return str(cond.status)
    return None


def pod_template(
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    restart_policy: str = "Always",
    image: str = IMAGE,
) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels, "annotations": annotations or {}},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "app", "image": image}]},
    }


def deployment(
    name: str,
    replicas: int,
    extra_labels: dict[str, str] | None = None,
    image: str = IMAGE,
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": pod_template({**labels, **(extra_labels or {})}, image=image),
        },
    }


def job(
    name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": pod_template(labels or {}, annotations, restart_policy="Never"),
        },
    }


def pods(k8s: client.ApiClient, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector=selector).items)


# --------------------------------------------------------------------------- basics


def test_version_is_the_built_release(k8s: client.ApiClient) -> None:
    assert client.VersionApi(k8s).get_code().git_version == K8S_VERSION


def test_at_least_two_kwok_nodes_are_ready(k8s: client.ApiClient) -> None:
    nodes = client.CoreV1Api(k8s).list_node(label_selector="type=kwok").items
    ready = [n.metadata.name for n in nodes if condition(n, "Ready") == "True"]
    assert len(ready) >= 2, f"ready kwok nodes: {ready}"


def test_kubectl_helper_talks_to_the_cluster(cluster: LocalCluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["gitVersion"] == K8S_VERSION
    assert out["serverVersion"]["gitVersion"] == K8S_VERSION


def test_namespace_names_are_valid_labels() -> None:
    name = namespace_name("test_something[" + "x" * 100 + "-Case_1]")
    assert len(name) <= 63
    assert name.replace("-", "").isalnum() and name == name.lower()
    assert name[0].isalpha() and name[-1].isalnum()


# --------------------------------------------------------------------------- workloads


def test_deployment_becomes_available(k8s: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=3))

    def available() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment_status("web", namespace)
        ok = condition(d, "Available") == "True" and d.status.ready_replicas == 3
        return d if ok else None

    d = eventually(available, "Deployment web Available with 3 ready replicas")
    assert d.status.updated_replicas == 3
    running = pods(k8s, namespace, "app=web")
    assert len(running) == 3
    assert {p.status.phase for p in running} == {"Running"}
    assert all(p.status.pod_ip and p.spec.node_name for p in running)


def test_job_pod_is_completed_by_kwok(k8s: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_job(namespace, job("once"))

    j = eventually(
        lambda: (lambda j: j if condition(j, "Complete") == "True" else None)(
            batch.read_namespaced_job_status("once", namespace)
        ),
        "Job once Complete",
    )
    assert j.status.succeeded == 1


# --------------------------------------------------------------------------- CRDs


@pytest.fixture
def widget_crd(k8s: client.ApiClient) -> Any:
    """A throwaway namespaced CRD with a status subresource (unique group per test)."""
    group = f"s{uuid.uuid4().hex[:8]}.smoke.canary.dev"
    name = f"widgets.{group}"
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        },
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(k8s)
    ext.create_custom_resource_definition(crd)
    try:
        eventually(
            lambda: condition(ext.read_custom_resource_definition(name), "Established") == "True",
            f"CRD {name} Established",
        )
        yield group
    finally:
        ext.delete_custom_resource_definition(name)


def test_crd_status_subresource(k8s: client.ApiClient, namespace: str, widget_crd: str) -> None:
    objs = client.CustomObjectsApi(k8s)
    ref = {"group": widget_crd, "version": "v1", "namespace": namespace, "plural": "widgets"}
    created = objs.create_namespaced_custom_object(
        **ref,
        body={
            "apiVersion": f"{widget_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
            "status": {"phase": "Ignored"},
        },
    )
    assert "status" not in created, "status on create must be dropped"

    # Through /status: status changes, spec changes are dropped, generation stays.
    patched = objs.patch_namespaced_custom_object_status(
        **ref, name="w", body={"spec": {"size": 99}, "status": {"phase": "Ready"}}
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"] == {"size": 1}
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]

    # Through the main resource: spec changes (generation bumps), status is ignored.
    patched = objs.patch_namespaced_custom_object(
        **ref, name="w", body={"spec": {"size": 2}, "status": {"phase": "Hacked"}}
    )
    assert patched["spec"] == {"size": 2}
    assert patched["status"] == {"phase": "Ready"}
    assert patched["metadata"]["generation"] == created["metadata"]["generation"] + 1


# --------------------------------------------------------------------------- kwok behaviors


def test_fail_label_fails_a_job(k8s: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_job(
        namespace,
        job(
            "doomed", labels={POD_BEHAVIOR_LABEL: "fail"}, annotations={POD_DELAY_ANNOTATION: "2s"}
        ),
    )

    j = eventually(
        lambda: (lambda j: j if condition(j, "Failed") == "True" else None)(
            batch.read_namespaced_job_status("doomed", namespace)
        ),
        "Job doomed Failed",
    )
    assert j.status.failed == 1 and not j.status.succeeded
    reasons = {c.type: c.reason for c in j.status.conditions}
    assert reasons["Failed"] == "BackoffLimitExceeded"
    [pod] = pods(k8s, namespace, "job-name=doomed")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1


def test_crash_loop_label_keeps_pods_unready_and_restarting(
    k8s: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(
        namespace, deployment("crashy", replicas=1, extra_labels={POD_BEHAVIOR_LABEL: "crash-loop"})
    )

    def restarted_twice() -> client.V1Pod | None:
        found = pods(k8s, namespace, "app=crashy")
        statuses = found[0].status.container_statuses if found else None
        return found[0] if statuses and statuses[0].restart_count >= 2 else None

    pod = eventually(restarted_twice, "crash-looping pod with restartCount >= 2")
    status = pod.status.container_statuses[0]
    assert pod.status.phase == "Running"
    assert condition(pod, "Ready") == "False"
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.state.running is None and status.state.terminated is None
    assert status.last_state.terminated.exit_code == 1
    d = apps.read_namespaced_deployment_status("crashy", namespace)
    assert not d.status.ready_replicas and condition(d, "Available") == "False"


def test_not_ready_label_runs_without_readiness(k8s: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(
        namespace, deployment("lame", replicas=2, extra_labels={POD_BEHAVIOR_LABEL: "not-ready"})
    )

    def running() -> list[client.V1Pod] | None:
        found = pods(k8s, namespace, "app=lame")
        ok = len(found) == 2 and all(p.status.phase == "Running" for p in found)
        return found if ok else None

    for pod in eventually(running, "2 Running pods"):
        assert condition(pod, "Ready") == "False"
        assert pod.status.container_statuses[0].state.running is not None
        assert pod.status.container_statuses[0].ready is False


def test_a_behaviour_image_breaks_only_the_tag_that_names_it(
    k8s: client.ApiClient, namespace: str
) -> None:
    """One Deployment template, two tags: the bad build crash-loops, the other runs."""
    apps = client.AppsV1Api(k8s)
    for name, tag in (("bad-build", "crash-loop"), ("good-build", "v1")):
        apps.create_namespaced_deployment(
            namespace, deployment(name, replicas=1, image=f"{BEHAVIOR_IMAGE}:{tag}")
        )

    def crash_looping() -> client.V1Pod | None:
        found = pods(k8s, namespace, "app=bad-build")
        statuses = found[0].status.container_statuses if found else None
        waiting = statuses[0].state.waiting if statuses else None
        return found[0] if waiting and waiting.reason == "CrashLoopBackOff" else None

    bad = eventually(crash_looping, "the crash-loop image in CrashLoopBackOff")
    assert condition(bad, "Ready") == "False"
    good = eventually(
        lambda: (lambda d: d if d.status.ready_replicas == 1 else None)(
            apps.read_namespaced_deployment_status("good-build", namespace)
        ),
        "the other tag Ready",
    )
    assert condition(good, "Available") == "True"
