"""Kubernetes reads for the gates, and the hook Jobs the controller creates.

Reads: Secrets and ConfigMaps (the environment gate and the database
connection string), the target's pod template, Jobs, CronJobs and
VolumeSnapshots (backup evidence), and the hook Jobs of a release.
Writes: only hook Jobs, each owned by its CanaryRelease (deleting the release
deletes them) and named by the engine, so creating one twice is a no-op; and
their deletion once the engine no longer needs them.

Secret values are decoded for the checks and never logged or returned in a
message.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.adapters.gate_ports import ApiMissing
from controller.api.spec import GROUP, KIND, VERSION, CanaryReleaseSpec
from controller.engine.actions import CreateHookJob
from controller.engine.gate_observations import JobState, JobView
from controller.gates.lint import FILE_MARKER

log = structlog.get_logger("controller.gates")
RELEASE_LABEL = "canary.dev/release"
HOOK_LABEL = "canary.dev/hook"
TAG_ANNOTATION = "canary.dev/tag"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
SNAPSHOT_GROUP, SNAPSHOT_VERSION, SNAPSHOTS = "snapshot.storage.k8s.io", "v1", "volumesnapshots"
EXTRACT_CONTAINER = "migration-files"
#: Prints every *.sql file under $1, sorted, each after a marker line naming it.
EXTRACT_SCRIPT = (
    'find "$1" -maxdepth 1 -type f -name "*.sql" | sort | while IFS= read -r f; do '
    f"printf '%s%s\\n' '{FILE_MARKER}' \"${{f##*/}}\"; cat \"$f\"; printf '\\n'; done"
)


def _not_found(exc: ApiException) -> bool:
    return bool(exc.status == 404)


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return cast(Mapping[str, Any], condition)
    return None


def job_view(obj: Mapping[str, Any]) -> JobView:
    """A Job's outcome from its conditions: Complete, Failed, or still running."""
    meta = obj.get("metadata") or {}
    created = _parse_time(meta.get("creationTimestamp"))
    assert created is not None, "the apiserver always sets creationTimestamp"
    state: JobState = "Running"
    message = ""
    if _condition(obj, "Complete") is not None:
        state = "Succeeded"
    elif (failed := _condition(obj, "Failed")) is not None:
        state = "Failed"
        message = f"{failed.get('reason', '')}: {failed.get('message', '')}".strip(": ")
    tag = (meta.get("annotations") or {}).get(TAG_ANNOTATION)
    return JobView(
        name=str(meta.get("name")), state=state, created_at=created, message=message, tag=tag
    )


class KubernetesGateObjects:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    def secret_data(self, namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if _not_found(exc):
                return None
            raise
        return {
            key: base64.b64decode(value).decode("utf-8", errors="replace")
            for key, value in (secret.data or {}).items()
        }

    def config_map_data(self, namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            config_map = self._core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if _not_found(exc):
                return None
            raise
        binary = dict.fromkeys((config_map.binary_data or {}).keys(), "")
        return {**binary, **(config_map.data or {})}

    def pod_template(self, namespace: str, deployment: str) -> Mapping[str, Any] | None:
        try:
            obj = self._apps.read_namespaced_deployment(deployment, namespace)
        except ApiException as exc:
            if _not_found(exc):
                return None
            raise
        template: Mapping[str, Any] = self._plain(obj)["spec"]["template"]
        return template

    def job_completed_at(self, namespace: str, name: str) -> tuple[bool, datetime | None]:
        try:
            job = self._plain(self._batch.read_namespaced_job(name, namespace))
        except ApiException as exc:
            if _not_found(exc):
                return False, None
            raise
        if _condition(job, "Complete") is None:
            return True, None
        return True, _parse_time((job.get("status") or {}).get("completionTime"))

    def cron_job_last_success(self, namespace: str, name: str) -> tuple[bool, datetime | None]:
        try:
            cron = self._plain(self._batch.read_namespaced_cron_job(name, namespace))
        except ApiException as exc:
            if _not_found(exc):
                return False, None
            raise
        return True, _parse_time((cron.get("status") or {}).get("lastSuccessfulTime"))

    def newest_ready_snapshot(
        self, namespace: str, name: str | None, selector: Mapping[str, str] | None
    ) -> datetime | None:
        args = (SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, SNAPSHOTS)
        items: list[dict[str, Any]]
        try:
            if name is not None:
                items = [
                    cast(dict[str, Any], self._custom.get_namespaced_custom_object(*args, name))
                ]
            else:
                labels = ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))
                listed = self._custom.list_namespaced_custom_object(*args, label_selector=labels)
                items = list(cast(dict[str, Any], listed).get("items") or [])
        except ApiException as exc:
            if not _not_found(exc):
                raise
            if name is not None and self._snapshots_served(namespace):
                return None  # the API exists; this snapshot does not
            raise ApiMissing(
                f"{SNAPSHOTS}.{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION} is not served"
            ) from exc
        times = []
        for item in items:
            status = item.get("status") or {}
            if status.get("readyToUse") is True:
                created = status.get("creationTime") or item["metadata"].get("creationTimestamp")
                if (when := _parse_time(created)) is not None:
                    times.append(when)
        return max(times) if times else None

    def _snapshots_served(self, namespace: str) -> bool:
        try:
            self._custom.list_namespaced_custom_object(
                SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, SNAPSHOTS, limit=1
            )
        except ApiException as exc:
            if _not_found(exc):
                return False
            raise
        return True

    def hook_jobs(self, namespace: str, release: str) -> tuple[JobView, ...]:
        selector = f"{RELEASE_LABEL}={release},{HOOK_LABEL}"
        jobs = self._batch.list_namespaced_job(namespace, label_selector=selector)
        return tuple(sorted((job_view(self._plain(j)) for j in jobs.items), key=lambda j: j.name))

    def job_log(self, namespace: str, job: str) -> str:
        pods = self._core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={job}")
        done = [p for p in pods.items if p.status and p.status.phase == "Succeeded"]
        if not done:
            raise LookupError(f"Job {job} has no succeeded pod")
        name = str(done[0].metadata.name if done[0].metadata else "")
        log = self._core.read_namespaced_pod_log(name, namespace, container=EXTRACT_CONTAINER)
        return str(log)


# -- hook Jobs ------------------------------------------------------------------------


def _hook_job_spec(spec: CanaryReleaseSpec, action: CreateHookJob) -> dict[str, Any]:
    if action.hook == "migrationFiles":
        lint = spec.gates.migrations.lint if spec.gates and spec.gates.migrations else None
        source = lint.image if lint is not None else None
        if source is None:
            raise LookupError("spec.gates.migrations.lint.image is not set")
        seconds = int(source.timeout_length().total_seconds())
        container = {
            "name": EXTRACT_CONTAINER,
            "image": action.image,
            "command": ["sh", "-c", EXTRACT_SCRIPT, "sh", source.path],
        }
        return {
            "backoffLimit": 0,
            "activeDeadlineSeconds": seconds,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        }
    hook = spec.hooks.get(action.hook) if spec.hooks else None
    if hook is None:
        raise LookupError(f"spec.hooks.{action.hook} is not set")
    job_spec = copy.deepcopy(hook.job)
    # The finished Job is the run's outcome, and deleting it is how a human asks
    # for a run again: a TTL controller deleting it would run a migration twice
    # (a success gone before it was seen) or rerun a failed one every TTL.
    job_spec.pop("ttlSecondsAfterFinished", None)
    job_spec.setdefault("backoffLimit", 0)
    job_spec.setdefault("activeDeadlineSeconds", int(hook.timeout_length().total_seconds()))
    return job_spec


def _env(release: str, action: CreateHookJob) -> list[dict[str, str]]:
    values = {
        "CANARY_RELEASE": release,
        "CANARY_HOOK": action.hook,
        "CANARY_TAG": action.tag,
        "CANARY_IMAGE": action.image,
        "CANARY_STABLE_TAG": action.stable_tag or "",
        "CANARY_REASON": action.reason,
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def hook_job_manifest(
    release: Mapping[str, Any], spec: CanaryReleaseSpec, action: CreateHookJob
) -> dict[str, Any]:
    """The Job for a hook: the user's Job spec, {tag} filled in, CANARY_* variables added."""
    meta = release["metadata"]
    job_spec = _hook_job_spec(spec, action)
    labels = {RELEASE_LABEL: meta["name"], HOOK_LABEL: action.hook}
    template = job_spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    pod = template.setdefault("spec", {})
    pod.setdefault("restartPolicy", "Never")
    env = _env(meta["name"], action)
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        if isinstance(container.get("image"), str):
            container["image"] = container["image"].replace("{tag}", action.tag)
        defined = {e.get("name") for e in container.get("env") or []}
        container["env"] = [
            *(container.get("env") or []),
            *(e for e in env if e["name"] not in defined),
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": action.job,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {TAG_ANNOTATION: action.tag},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def create_hook_job(
    api_client: client.ApiClient,
    release: Mapping[str, Any],
    spec: CanaryReleaseSpec,
    action: CreateHookJob,
) -> str | None:
    """Create the Job unless it exists; the apiserver's refusal, if it refused it, else None."""
    body = hook_job_manifest(release, spec, action)
    try:
        batch = client.BatchV1Api(api_client)
        batch.create_namespaced_job(release["metadata"]["namespace"], cast(Any, body))
    except ApiException as exc:
        if exc.status == 409:
            return None  # created by an earlier reconcile
        if exc.status in (400, 422):
            return f"Job {action.job} for {action.hook} refused: {exc.reason}: {exc.body}"[:1024]
        raise
    return None


_refused_deletes: set[tuple[str, str]] = set()  # (namespace, job); said once per process


def delete_hook_job(api_client: client.ApiClient, namespace: str, job: str) -> None:
    """Delete a Job and, in the background, its pods; one already gone is fine.

    Housekeeping only: RBAC without `delete` on Jobs (a hand-made Role from
    before it was needed) leaves the Job and says so once, rather than failing
    the pass or asking again at every pass that reads the Jobs.
    """
    if (namespace, job) in _refused_deletes:
        return
    try:
        client.BatchV1Api(api_client).delete_namespaced_job(
            job, namespace, propagation_policy="Background"
        )
    except ApiException as exc:
        if exc.status == 403:
            _refused_deletes.add((namespace, job))
            log.warning("cannot delete a finished hook Job", job=job, error=str(exc.reason))
        elif not _not_found(exc):
            raise
