"""Kubernetes I/O for the controller: read Deployments and pods, apply actions, write status.

Calls go through the official client and are retried with bounded backoff
(tenacity) on transient errors: connection failures, 429 and 5xx. A 409 on
status is not retried here: it means our read is stale, and the runtime
reconciles again from a fresh read.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from controller.adapters.kubernetes_gates import create_hook_job, delete_hook_job
from controller.adapters.ports import StatusConflict
from controller.adapters.routers.protocol import TrafficRouter
from controller.api.spec import GROUP, KIND, PLURAL, VERSION, CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import (
    Action,
    CreateHookJob,
    DeleteCanary,
    DeleteHookJob,
    RecordEvent,
    ScaleCanary,
    ScaleStable,
    UpdateStable,
)
from controller.engine.observations import (
    KUBERNETES_PROGRESS_DEADLINE_S,
    DeploymentView,
    PodHealth,
)

TRACK_LABEL = "canary.dev/track"
RELEASE_LABEL = "canary.dev/release"
COMMAND_ANNOTATION = "canary.dev/command"
#: On a release with trafficRouting: its deletion waits until the route is back on stable.
ROUTE_FINALIZER = "canary.dev/route"
COMPONENT = "canary-controller"

T = TypeVar("T")


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (0, 429, 500, 502, 503, 504)
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


_retrying = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.2, max=3.0),
    reraise=True,
)


def api_message(exc: ApiException) -> str:
    """The apiserver's own words for a refusal (its Status message), else the HTTP reason."""
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.reason
    return str(message)


def canary_name(target: str) -> str:
    return f"{target}-canary"[:253]


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return _retrying(fn)(*args, **kwargs)


def _container_index(containers: list[dict[str, Any]], name: str | None) -> int:
    if name is None:
        return 0
    for i, container in enumerate(containers):
        if container.get("name") == name:
            return i
    raise LookupError(f"container {name!r} not found in the pod template")


FIELD_MANAGER = "canary-controller"


def replicas_entries(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The managedFields entries that own `spec.replicas`."""
    return [
        entry
        for entry in metadata.get("managedFields") or []
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]


def replicas_owner(metadata: Mapping[str, Any]) -> str | None:
    """Who last set `spec.replicas`, from the apiserver's field ownership (None: unknown)."""
    owners = [str(entry.get("manager")) for entry in replicas_entries(metadata)]
    if not owners or FIELD_MANAGER in owners:
        return None
    return owners[-1]


def deployment_view(obj: dict[str, Any], container: str | None) -> DeploymentView:
    spec, status = obj.get("spec", {}), obj.get("status", {}) or {}
    containers = spec["template"]["spec"]["containers"]
    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    is_rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
    return DeploymentView(
        name=obj["metadata"]["name"],
        replicas=int(spec.get("replicas", 1)),
        image=containers[_container_index(containers, container)]["image"],
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        generation=int(obj["metadata"].get("generation") or 1),
        observed_generation=int(status.get("observedGeneration") or 0),
        status_replicas=int(status.get("replicas") or 0),
        max_unavailable=str(rolling.get("maxUnavailable", "25%")) if is_rolling else None,
        max_surge=str(rolling.get("maxSurge", "25%")) if is_rolling else None,
        stalled=_stalled(status),
        progress_deadline_s=int(
            spec.get("progressDeadlineSeconds") or KUBERNETES_PROGRESS_DEADLINE_S
        ),
        replicas_set_by=replicas_owner(obj["metadata"]),
    )


def _stalled(status: dict[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status")) == ("Progressing", "False") and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return str(condition.get("message") or "progress deadline exceeded")
    return None


class PodRecord(NamedTuple):
    """What the health check needs of one pod; the watch keeps only this, not the body."""

    name: str
    restarts: int
    """The most restarts of any of its containers."""
    crash_looping: bool
    images: tuple[str, ...]
    uid: str = ""
    version: str = ""
    """uid and resourceVersion: what tells a pod deleted unseen (runtime/phantoms.py)."""


def pod_record(pod: Mapping[str, Any]) -> PodRecord | None:
    """None for a pod that no longer serves: terminating, or finished (evicted, say).

    Such a pod can linger after its ReplicaSet was replaced, restarts and all;
    it says nothing about what runs now.
    """
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") in ("Failed", "Succeeded"):
        return None
    restarts, looping = 0, False
    for container in status.get("containerStatuses") or []:
        restarts = max(restarts, int(container.get("restartCount") or 0))
        waiting = (container.get("state") or {}).get("waiting") or {}
        looping = looping or waiting.get("reason") == "CrashLoopBackOff"
    containers = (pod.get("spec") or {}).get("containers") or []
    images = tuple(str(c.get("image")) for c in containers)
    uid, version = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
    return PodRecord(str(meta.get("name")), restarts, looping, images, uid, version)


def pod_health(records: Iterable[PodRecord], image: str) -> PodHealth:
    """The health of the pods that run `image`: those of an older rollout do not count."""
    pods = [record for record in records if image in record.images]
    return PodHealth(
        crash_looping=tuple(sorted({pod.name for pod in pods if pod.crash_looping})),
        max_restarts=max((pod.restarts for pod in pods), default=0),
    )


def autoscaled_deployment(hpa: dict[str, Any]) -> str | None:
    """The Deployment an HPA (autoscaling/v2, as JSON) scales, or None for another kind."""
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    group = str(ref.get("apiVersion") or "apps/v1").split("/")[0]
    if ref.get("kind") != "Deployment" or group != "apps":
        return None
    name = ref.get("name")
    return str(name) if name else None


class KubernetesCluster:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._autoscaling = client.AutoscalingV2Api(api_client)

    # -- reading ---------------------------------------------------------

    def read_release(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = cast(
                dict[str, Any],
                _call(
                    self._custom.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def _read_deployment_raw(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = _call(self._apps.read_namespaced_deployment, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], self._api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    def read_deployment(
        self, namespace: str, name: str, container: str | None
    ) -> DeploymentView | None:
        raw = self._read_deployment_raw(namespace, name)
        return None if raw is None else deployment_view(raw, container)

    def read_autoscaler(self, namespace: str, deployment: str) -> str | None:
        """The HorizontalPodAutoscaler whose scaleTargetRef is this Deployment, if any."""
        hpas = _call(self._autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace)
        raw = cast(dict[str, Any], self._api.sanitize_for_serialization(hpas))  # type: ignore[no-untyped-call]
        for hpa in raw.get("items") or []:
            if autoscaled_deployment(hpa) == deployment:
                return str(hpa["metadata"]["name"])
        return None

    def read_pods(self, namespace: str, release: str, track: str, image: str) -> PodHealth:
        selector = f"{RELEASE_LABEL}={release},{TRACK_LABEL}={track}"
        pods = _call(self._core.list_namespaced_pod, namespace, label_selector=selector)
        raw = cast(dict[str, Any], self._api.sanitize_for_serialization(pods))  # type: ignore[no-untyped-call]
        records = (pod_record(pod) for pod in raw.get("items") or [])
        return pod_health((r for r in records if r is not None), image)

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key does not exist."""
        try:
            secret = _call(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 403:
                raise PermissionError(f"not allowed to read Secret {namespace}/{name}") from exc
            raise
        encoded = (secret.data or {}).get(key)
        if encoded is None:
            return None
        return base64.b64decode(encoded).decode("utf-8").strip()

    # -- writing ---------------------------------------------------------

    def write_status(
        self, namespace: str, name: str, resource_version: str, status: CanaryReleaseStatus
    ) -> None:
        self.replace_status(namespace, name, resource_version, status)

    def replace_status(
        self, namespace: str, name: str, resource_version: str, status: CanaryReleaseStatus
    ) -> dict[str, Any]:
        """Replace the status subresource, guarded by resourceVersion (optimistic concurrency).

        Returns the object as stored, so a cache can hold what was written.
        """
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        try:
            written = _call(
                self._custom.replace_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise StatusConflict(f"{namespace}/{name} changed since it was read") from exc
            raise
        return cast(dict[str, Any], written)

    def set_route_finalizer(self, release: dict[str, Any], present: bool) -> dict[str, Any] | None:
        """Add or remove the route finalizer; the release as stored, None when it is gone.

        Guarded by resourceVersion: a release changed meanwhile is a
        StatusConflict, and the caller reads it again.
        """
        meta = release["metadata"]
        current = list(meta.get("finalizers") or [])
        wanted = [f for f in current if f != ROUTE_FINALIZER] + (
            [ROUTE_FINALIZER] if present else []
        )
        if wanted == current:
            return release
        body = {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": wanted}}
        try:
            stored = _call(
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                body,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise StatusConflict(f"{meta['namespace']}/{meta['name']} changed") from exc
            raise
        return cast(dict[str, Any], stored)

    def apply(self, release: dict[str, Any], spec: CanaryReleaseSpec, action: Action) -> None:
        namespace = release["metadata"]["namespace"]
        target = spec.target_ref.name
        match action:
            case ScaleCanary(image=image, replicas=replicas):
                self._ensure_canary(release, spec, image, replicas)
            case ScaleStable(replicas=replicas):
                self._patch_deployment(target, namespace, {"spec": {"replicas": replicas}})
            case UpdateStable():
                self._update_stable(release, spec, action)
            case DeleteCanary():
                self._delete_canary(namespace, target)
            case RecordEvent():
                self.record_event(release, action)
            case CreateHookJob():
                refused = create_hook_job(self._api, release, spec, action)
                if refused is not None:
                    self.record_event(release, RecordEvent("Warning", "HookJobRefused", refused))
            case DeleteHookJob(job=job):
                delete_hook_job(self._api, namespace, job)

    def _patch_deployment(self, name: str, namespace: str, patch: Any) -> None:
        """As the controller's own field manager: who set `replicas` is read back from it."""
        _call(
            self._apps.patch_namespaced_deployment,
            name,
            namespace,
            patch,
            field_manager=FIELD_MANAGER,
        )

    def _ensure_canary(
        self, release: dict[str, Any], spec: CanaryReleaseSpec, image: str, replicas: int
    ) -> None:
        namespace = release["metadata"]["namespace"]
        name = canary_name(spec.target_ref.name)
        existing = self._read_deployment_raw(namespace, name)
        if existing is None:
            stable = self._read_deployment_raw(namespace, spec.target_ref.name)
            if stable is None:
                raise LookupError(f"target Deployment {spec.target_ref.name} disappeared")
            body = canary_manifest(release, spec, stable, image, replicas)
            try:
                _call(
                    self._apps.create_namespaced_deployment,
                    namespace,
                    body,
                    field_manager=FIELD_MANAGER,
                )
            except ApiException as exc:
                if exc.status != 409:  # created by an earlier, interrupted attempt
                    raise
            return
        containers = existing["spec"]["template"]["spec"]["containers"]
        index = _container_index(containers, spec.release.container)
        patch = [
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
            {
                "op": "replace",
                "path": f"/spec/template/spec/containers/{index}/image",
                "value": image,
            },
        ]
        self._patch_deployment(name, namespace, patch)

    def _update_stable(
        self, release: dict[str, Any], spec: CanaryReleaseSpec, action: UpdateStable
    ) -> None:
        namespace, name = release["metadata"]["namespace"], spec.target_ref.name
        current = self._read_deployment_raw(namespace, name)
        if current is None:
            raise LookupError(f"target Deployment {name} disappeared")
        containers = current["spec"]["template"]["spec"]["containers"]
        index = _container_index(containers, spec.release.container)
        patch: list[dict[str, Any]] = [
            {
                "op": "replace",
                "path": f"/spec/template/spec/containers/{index}/image",
                "value": action.image,
            },
        ]
        if action.replicas is not None:  # None: an HPA owns the size
            patch.append({"op": "replace", "path": "/spec/replicas", "value": action.replicas})
        if containers[index]["image"] != action.image:
            # Pods roll anyway: label them as this release's stable track at no
            # extra restart, so the watch after promotion can find them.
            labels = {TRACK_LABEL: "stable", RELEASE_LABEL: release["metadata"]["name"]}
            patch.extend(
                {
                    "op": "add",
                    "path": "/spec/template/metadata/labels/" + key.replace("/", "~1"),
                    "value": value,
                }
                for key, value in labels.items()
            )
        if action.recreate:
            patch.append({"op": "add", "path": "/spec/strategy", "value": {"type": "Recreate"}})
        elif action.max_unavailable is not None and action.max_surge is not None:
            rolling = {
                "maxUnavailable": _int_or_string(action.max_unavailable),
                "maxSurge": _int_or_string(action.max_surge),
            }
            patch.append(
                {
                    "op": "add",
                    "path": "/spec/strategy",
                    "value": {"type": "RollingUpdate", "rollingUpdate": rolling},
                }
            )
        self._patch_deployment(name, namespace, patch)

    def _delete_canary(self, namespace: str, target: str) -> None:
        try:
            _call(
                self._apps.delete_namespaced_deployment,
                canary_name(target),
                namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def traffic_router(self, release: dict[str, Any], spec: CanaryReleaseSpec) -> TrafficRouter:
        from controller.adapters.routers.registry import router_for  # it imports this module

        return router_for(self._api, release, spec)

    def record_event(
        self, release: dict[str, Any], event: RecordEvent, key: str | None = None
    ) -> None:
        """With a `key`, the Event is named after it, so sending it again (a new
        leader resending an outbox entry the old one recorded) finds it there.
        A key no object name can hold (a hand-edited status) gets a generated
        name instead: recorded, at the price of a possible repeat."""
        meta = release["metadata"]
        if key is not None and not _NAME_PART.fullmatch(key):
            key = None
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=event_name(meta["name"], key) if key else None,
                generate_name=None if key else f"{meta['name']}.",
                namespace=meta["namespace"],
            ),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=event.reason,
            message=event.message[:1024],
            type=event.type,
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            _call(self._core.create_namespaced_event, meta["namespace"], body)
        except ApiException as exc:
            if not (key and exc.status == 409):
                raise


_NAME_PART = re.compile(r"[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?")


def event_name(release: str, key: str) -> str:
    """`<release>.<key>`, within the 253 characters of an object name."""
    return f"{release[: 252 - len(key)].rstrip('-.')}.{key}"


def _int_or_string(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def canary_manifest(
    release: dict[str, Any],
    spec: CanaryReleaseSpec,
    stable: dict[str, Any],
    image: str,
    replicas: int,
) -> dict[str, Any]:
    """The canary Deployment: the target's pod template with the new image and a track label.

    It is owned by the CanaryRelease, so deleting the release removes it, and it
    rolls with maxUnavailable 0 so a superseding tag never dips its capacity.
    """
    meta = release["metadata"]
    name = canary_name(spec.target_ref.name)
    template = copy.deepcopy(stable["spec"]["template"])
    labels = {
        **(template.get("metadata", {}).get("labels") or {}),
        TRACK_LABEL: "canary",
        RELEASE_LABEL: meta["name"],
    }
    template.setdefault("metadata", {})["labels"] = labels
    containers = template["spec"]["containers"]
    containers[_container_index(containers, spec.release.container)]["image"] = image
    selector = copy.deepcopy(stable["spec"]["selector"])
    selector.setdefault("matchLabels", {}).update({TRACK_LABEL: "canary"})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {TRACK_LABEL: "canary", RELEASE_LABEL: meta["name"]},
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
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": template,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
        },
    }
