"""The gates' Kubernetes reads and hook Jobs against the real apiserver (kwok runs the pods)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from controller.adapters.gate_ports import ApiMissing
from controller.adapters.kubernetes_gates import (
    JOB_NAME_LABEL,
    SNAPSHOT_GROUP,
    KubernetesGateObjects,
    create_hook_job,
    delete_hook_job,
    hook_job_manifest,
)
from controller.api.spec import CanaryReleaseSpec
from controller.engine.actions import CreateHookJob
from controller.runtime.gate_checks import GateChecker
from devenv.cluster import POD_BEHAVIOR_LABEL, LocalCluster
from tests.e2e.helpers import wait_for

SPEC = CanaryReleaseSpec.model_validate(
    {
        "targetRef": {"name": "payments"},
        "release": {"tag": "v2", "image": "registry.example.com/payments:{tag}"},
        "hooks": {
            "preRollout": {
                "timeout": "3m",
                "job": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "migrate",
                                    "image": "registry.example.com/payments:{tag}",
                                    "env": [{"name": "CANARY_TAG", "value": "kept"}],
                                }
                            ]
                        }
                    }
                },
            }
        },
        "gates": {"backup": {"maxAge": "1h", "cronJob": {"name": "db-backup"}}},
    }
)


def _release(namespace: str) -> dict[str, Any]:
    return {"metadata": {"name": "payments", "namespace": namespace, "uid": "0000-1111"}}


def test_secret_and_config_map_data_and_the_pod_template(
    k8s: client.ApiClient, namespace: str
) -> None:
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    data = {"url": base64.b64encode(b"postgresql://db/app").decode()}
    core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="db"), data=data)
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="m"), data={"001.sql": "SELECT 1;"}),
    )
    labels = {"app": "payments"}
    template = {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [{"name": "app", "image": "x", "env": [{"name": "A", "value": "1"}]}]
        },
    }
    body = {
        "metadata": {"name": "payments"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
    }
    apps.create_namespaced_deployment(namespace, body)
    objects = KubernetesGateObjects(k8s)
    assert objects.secret_data(namespace, "db") == {"url": "postgresql://db/app"}
    assert objects.secret_data(namespace, "nope") is None
    assert objects.config_map_data(namespace, "m") == {"001.sql": "SELECT 1;"}
    assert objects.config_map_data(namespace, "nope") is None
    read = objects.pod_template(namespace, "payments")
    assert read is not None and read["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"}
    ]


def test_hook_jobs_succeed_or_fail_as_kwok_runs_them(
    k8s: client.ApiClient, namespace: str, cluster: LocalCluster
) -> None:
    release = _release(namespace)
    ok = CreateHookJob("preRollout", "payments-pre-rollout-aaaa", "v2", "img:v2", "v1", "why")
    manifest = hook_job_manifest(release, SPEC, ok)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/payments:v2"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CANARY_TAG"] == "kept"  # the user's own value wins
    assert env["CANARY_REASON"] == "why" and env["CANARY_STABLE_TAG"] == "v1"
    assert (
        manifest["spec"]["backoffLimit"] == 0 and manifest["spec"]["activeDeadlineSeconds"] == 180
    )
    # The owner does not exist in this test: drop the reference so the GC leaves the Job alone.
    api_release = {"metadata": {**release["metadata"]}}

    def create(action: CreateHookJob, behavior: str | None = None) -> None:
        body = hook_job_manifest(api_release, SPEC, action)
        del body["metadata"]["ownerReferences"]
        if behavior:
            body["spec"]["template"]["metadata"]["labels"][POD_BEHAVIOR_LABEL] = behavior
        client.BatchV1Api(k8s).create_namespaced_job(namespace, body)

    create(ok)
    bad = CreateHookJob("preRollout", "payments-pre-rollout-bbbb", "v3", "img", "v1")
    create(bad, "fail")
    objects = KubernetesGateObjects(k8s)

    def finished() -> dict[str, str] | None:
        views = {j.name: j.state for j in objects.hook_jobs(namespace, "payments")}
        return views if "Running" not in views.values() and len(views) == 2 else None

    states = wait_for(finished, 90, "both hook Jobs to finish")
    assert states == {ok.job: "Succeeded", bad.job: "Failed"}
    failed = next(j for j in objects.hook_jobs(namespace, "payments") if j.name == bad.job)
    assert "BackoffLimitExceeded" in failed.message and failed.tag == "v3"
    exists, completed = objects.job_completed_at(namespace, ok.job)
    assert exists and completed is not None and completed <= datetime.now(UTC)
    assert objects.job_completed_at(namespace, bad.job) == (True, None)
    assert objects.job_completed_at(namespace, "nope") == (False, None)
    # Creating twice is a no-op; an invalid spec is refused with the apiserver's reason.
    assert create_hook_job(k8s, api_release, SPEC, ok) is None
    raw = SPEC.model_dump(by_alias=True, exclude_none=True)
    raw["hooks"]["preRollout"]["job"] = {"template": {"spec": {"containers": []}}}
    broken = CanaryReleaseSpec.model_validate(raw)
    invalid = CreateHookJob("preRollout", "payments-pre-rollout-cccc", "v2", "i", None)
    refused = create_hook_job(k8s, api_release, broken, invalid)
    assert refused is not None and "refused" in refused
    # A pruned Job goes with its pods; pruning one already gone is fine.
    core = client.CoreV1Api(k8s)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={bad.job}")
    assert pods.items
    delete_hook_job(k8s, namespace, bad.job)
    delete_hook_job(k8s, namespace, bad.job)
    assert [j.name for j in objects.hook_jobs(namespace, "payments")] == [ok.job]

    def pods_gone() -> bool:
        left = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={bad.job}")
        return not left.items

    wait_for(pods_gone, 60, "the pruned Job's pods to be deleted")
    # RBAC without `delete` on Jobs leaves the Job, and the pass goes on.
    nobody = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    nobody.set_default_header("Impersonate-User", "someone-without-rbac")
    try:
        delete_hook_job(nobody, namespace, ok.job)
    finally:
        nobody.close()
    assert [j.name for j in objects.hook_jobs(namespace, "payments")] == [ok.job]


def test_backup_evidence_from_a_cron_job(k8s: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s)
    cron = {
        "metadata": {"name": "db-backup"},
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "b", "image": "backup:1"}],
                        }
                    }
                }
            },
        },
    }
    batch.create_namespaced_cron_job(namespace, cron)
    checker = GateChecker(KubernetesGateObjects(k8s))
    now = datetime.now(UTC).replace(microsecond=0)
    [never] = checker.check(SPEC, namespace, "payments", "v2", now)
    assert never.reason == "NoBackup"
    last = now - timedelta(minutes=20)
    status = {"status": {"lastSuccessfulTime": last.isoformat().replace("+00:00", "Z")}}
    batch.patch_namespaced_cron_job_status("db-backup", namespace, status)
    [recent] = checker.check(SPEC, namespace, "payments", "v2", now)
    assert recent.verdict == "pass" and "20m old" in recent.message
    [old] = checker.check(SPEC, namespace, "payments", "v2", now + timedelta(hours=2))
    assert old.reason == "BackupTooOld"


SNAPSHOT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": f"volumesnapshots.{SNAPSHOT_GROUP}",
        # snapshot.storage.k8s.io is a protected group; this is the upstream CRD's approval.
        "annotations": {
            "api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/419"
        },
    },
    "spec": {
        "group": SNAPSHOT_GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "VolumeSnapshot",
            "plural": "volumesnapshots",
            "singular": "volumesnapshot",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def snapshot_api(k8s: client.ApiClient) -> Iterator[bool]:
    """The VolumeSnapshot CRD (its real group and version, a permissive schema)."""
    ext = client.ApiextensionsV1Api(k8s)
    name = SNAPSHOT_CRD["metadata"]["name"]  # type: ignore[index]
    existed = True
    try:
        ext.read_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        existed = False
    yield existed
    if not existed:
        try:
            ext.delete_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_backup_evidence_from_volume_snapshots(
    k8s: client.ApiClient, namespace: str, snapshot_api: bool
) -> None:
    objects = KubernetesGateObjects(k8s)
    if not snapshot_api:
        with pytest.raises(ApiMissing, match="volumesnapshots"):
            objects.newest_ready_snapshot(namespace, None, {"app": "db"})
        client.ApiextensionsV1Api(k8s).create_custom_resource_definition(SNAPSHOT_CRD)
    custom = client.CustomObjectsApi(k8s)
    args = (SNAPSHOT_GROUP, "v1", namespace, "volumesnapshots")

    def served() -> bool:
        try:
            custom.list_namespaced_custom_object(*args)
        except ApiException:
            return False
        return True

    wait_for(served, 30, "the VolumeSnapshot API")
    times = {
        "old": "2026-11-20T03:00:00Z",
        "new": "2026-11-23T03:00:00Z",
        "broken": "2026-11-24T03:00:00Z",
    }
    for name, created in times.items():
        body = {
            "apiVersion": f"{SNAPSHOT_GROUP}/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": f"db-{name}", "labels": {"app": "db"}},
            "spec": {"source": {"persistentVolumeClaimName": "db"}},
        }
        custom.create_namespaced_custom_object(*args, body)
        status = {"status": {"readyToUse": name != "broken", "creationTime": created}}
        custom.patch_namespaced_custom_object_status(*args, f"db-{name}", status)
    newest = objects.newest_ready_snapshot(namespace, None, {"app": "db"})
    assert newest == datetime(2026, 11, 23, 3, tzinfo=UTC)  # the broken one is not ready
    assert objects.newest_ready_snapshot(namespace, "db-old", None) == datetime(
        2026, 11, 20, 3, tzinfo=UTC
    )
    assert objects.newest_ready_snapshot(namespace, "db-missing", None) is None


def test_a_hook_job_outlives_the_ttl_its_spec_asked_for(
    k8s: client.ApiClient, namespace: str
) -> None:
    """The TTL controller would delete the finished Job before its outcome is read."""
    raw = SPEC.model_dump(by_alias=True, exclude_none=True)
    raw["hooks"]["preRollout"]["job"]["ttlSecondsAfterFinished"] = 0
    spec = CanaryReleaseSpec.model_validate(raw)
    action = CreateHookJob("preRollout", "payments-pre-rollout-dddd", "v2", "img:v2", "v1")
    body = hook_job_manifest(_release(namespace), spec, action)
    del body["metadata"]["ownerReferences"]  # no owner here: the GC must leave the Job alone
    assert "ttlSecondsAfterFinished" not in body["spec"]
    client.BatchV1Api(k8s).create_namespaced_job(namespace, body)
    objects = KubernetesGateObjects(k8s)

    def outcome() -> str | None:
        views = {j.name: j.state for j in objects.hook_jobs(namespace, "payments")}
        return views.get(action.job) if views.get(action.job) != "Running" else None

    assert wait_for(outcome, 90, "the hook Job to finish") == "Succeeded"
    time.sleep(5)  # the TTL controller acts within a second of completion
    assert outcome() == "Succeeded"
