"""What the controller knows from its watches, so a reconcile reads memory, not the apiserver.

Four watches feed it, all run by kopf: CanaryReleases (kept here whole,
because a reconcile decides on them), Deployments, HorizontalPodAutoscalers
and the pods of a release's tracks (kept as kopf indices, trimmed to the
fields the engine reads). kopf holds every
other handler back until the indices have their initial listing, so a
reconcile never mistakes "not listed yet" for "does not exist".

A cache can lag. For Deployments that is harmless: every action sets an
absolute value, so acting on a stale view repeats an idempotent request. For
the release itself a lag would decide on an old status, so status writes go
through the cache (the response is stored), a body only ever replaces an
older one (by resourceVersion), and a 409 still makes the caller re-read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from controller.adapters.kubernetes import (
    RELEASE_LABEL,
    KubernetesCluster,
    deployment_view,
    pod_health,
    replicas_entries,
)
from controller.api.status import CanaryReleaseStatus
from controller.engine.observations import DeploymentView, PodHealth

ReleaseKey = tuple[str, str]  # (namespace, name)


class Indexed(NamedTuple):
    """One object a watch holds: which, as of when, and in which namespace."""

    uid: str
    version: str
    key: tuple[str, ...]
    """Its index key, which starts with its namespace."""


class AutoscalerRecord(NamedTuple):
    """What the HPA index keeps of one HPA."""

    name: str
    uid: str = ""
    version: str = ""


def _version(body: Mapping[str, Any]) -> int | None:
    value = str(body.get("metadata", {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


class ReleaseStore:
    """The newest CanaryRelease bodies seen, and which Deployment each one targets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[ReleaseKey, dict[str, Any]] = {}
        self._targets: dict[tuple[str, str], set[str]] = {}

    def put(self, body: dict[str, Any]) -> bool:
        """Keep `body` unless a newer version is known; True when it was new to us."""
        meta = body["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        with self._lock:
            known = self._bodies.get(key)
            if known is not None and known["metadata"].get("uid") == meta.get("uid"):
                old, new = _version(known), _version(body)
                if old is not None and new is not None and new <= old:
                    return False
            self._retarget(key, known, body)
            self._bodies[key] = body
            return True

    def delete(self, key: ReleaseKey) -> None:
        with self._lock:
            self._retarget(key, self._bodies.pop(key, None), None)

    def delete_if(self, key: ReleaseKey, uid: str) -> bool:
        """Delete the body if it is still that object, not one created since under its name."""
        with self._lock:
            known = self._bodies.get(key)
            if known is None or known["metadata"].get("uid") != uid:
                return False
            self._retarget(key, self._bodies.pop(key), None)
            return True

    def indexed(self) -> list[Indexed]:
        with self._lock:
            return [
                Indexed(str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""), key)
                for key, meta in ((k, b["metadata"]) for k, b in self._bodies.items())
            ]

    def get(self, key: ReleaseKey) -> dict[str, Any] | None:
        with self._lock:
            return self._bodies.get(key)

    def keys(self) -> list[ReleaseKey]:
        with self._lock:
            return list(self._bodies)

    def targeting(self, namespace: str, deployment: str) -> list[ReleaseKey]:
        with self._lock:
            return [(namespace, name) for name in self._targets.get((namespace, deployment), ())]

    def _retarget(
        self, key: ReleaseKey, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        for body, add in ((old, False), (new, True)):
            target = _target_of(body)
            if target is None:
                continue
            names = self._targets.setdefault((key[0], target), set())
            if add:
                names.add(key[1])
            else:
                names.discard(key[1])
                if not names:
                    del self._targets[(key[0], target)]


def _target_of(body: dict[str, Any] | None) -> str | None:
    if body is None:
        return None
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    return target if isinstance(target, str) else None


def releases_for_deployment(
    store: ReleaseStore, namespace: str, name: str, labels: Mapping[str, str]
) -> list[ReleaseKey]:
    """The releases a Deployment change concerns: the canary's owner, and any targeting it."""
    keys = store.targeting(namespace, name)
    owner = labels.get(RELEASE_LABEL)
    if owner:
        keys.append((namespace, owner))
    return keys


def deployment_record(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `deployment_view` reads, and no more: the index holds every Deployment."""
    meta, spec = body.get("metadata", {}), body.get("spec", {})
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    return {
        "metadata": {
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "generation": meta.get("generation"),
            "resourceVersion": meta.get("resourceVersion"),
            "managedFields": [  # only who owns spec.replicas (see replicas_owner)
                {"manager": entry.get("manager"), "fieldsV1": {"f:spec": {"f:replicas": {}}}}
                for entry in replicas_entries(meta)
            ],
        },
        "spec": {
            "replicas": spec.get("replicas", 1),
            "strategy": dict(spec.get("strategy") or {}),
            "progressDeadlineSeconds": spec.get("progressDeadlineSeconds"),
            "template": {
                "spec": {
                    "containers": [
                        {"name": c.get("name"), "image": c.get("image")} for c in containers
                    ]
                }
            },
        },
        "status": dict(body.get("status") or {}),
    }


def _identity(value: Any) -> tuple[str, str]:
    """uid and resourceVersion of an index value: a Deployment record or a NamedTuple."""
    if isinstance(value, dict):
        meta = value.get("metadata") or {}
        return str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
    return str(value.uid), str(value.version)


def _snapshot(read: Callable[[], Iterable[Any] | None], attempts: int = 3) -> list[Any]:
    """A list of what `read` iterates; kopf mutates indices on its event loop, we read elsewhere."""
    for _ in range(attempts):
        try:
            return list(read() or ())
        except RuntimeError:  # changed size during iteration: read again
            continue
    return []


def _keys(index: Mapping[Any, Iterable[Any]] | None) -> list[Any]:
    return _snapshot(lambda: index, attempts=5)  # every key: a longer read, more to retry


def _values(index: Mapping[Any, Iterable[Any]] | None, key: Any) -> list[Any]:
    """A snapshot of one index entry."""
    return _snapshot(lambda: index.get(key) if index is not None else None)


class CachedCluster(KubernetesCluster):
    """The Kubernetes adapter with reads served from the watches; writes go to the apiserver."""

    def __init__(self, api_client: Any, releases: ReleaseStore) -> None:
        super().__init__(api_client)
        self.releases = releases
        self.deployments: Mapping[Any, Iterable[Any]] | None = None
        self.pods: Mapping[Any, Iterable[Any]] | None = None
        self.autoscalers: Mapping[Any, Iterable[Any]] | None = None
        #: uids of objects deleted while a watch was down, which its index still
        #: holds (runtime/phantoms.py): every read skips them.
        self.gone: frozenset[str] = frozenset()

    @property
    def synced(self) -> bool:
        return (
            self.deployments is not None and self.pods is not None and self.autoscalers is not None
        )

    def read_release(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.releases.get((namespace, name))

    def refresh_release(self, namespace: str, name: str) -> None:
        """After a conflict: the apiserver's copy replaces ours."""
        body = super().read_release(namespace, name)
        if body is None:
            self.releases.delete((namespace, name))
        else:
            self.releases.put(body)

    def read_deployment(
        self, namespace: str, name: str, container: str | None
    ) -> DeploymentView | None:
        if not self.synced:
            return super().read_deployment(namespace, name, container)
        found = self._live(self.deployments, (namespace, name))
        return deployment_view(found[0], container) if found else None

    def read_autoscaler(self, namespace: str, deployment: str) -> str | None:
        if not self.synced:
            return super().read_autoscaler(namespace, deployment)
        found = self._live(self.autoscalers, (namespace, deployment))
        return min(record.name for record in found) if found else None

    def read_pods(self, namespace: str, release: str, track: str, image: str) -> PodHealth:
        if not self.synced:
            return super().read_pods(namespace, release, track, image)
        return pod_health(self._live(self.pods, (namespace, release, track)), image)

    def indexed(self, kind: str) -> list[Indexed]:
        """Every object an index holds (the sweep for deleted ones reads this)."""
        if kind == "canaryreleases":
            return self.releases.indexed()
        index = {
            "deployments": self.deployments,
            "pods": self.pods,
            "horizontalpodautoscalers": self.autoscalers,
        }[kind]
        return [
            Indexed(*_identity(value), key) for key in _keys(index) for value in _values(index, key)
        ]

    def _live(self, index: Mapping[Any, Iterable[Any]] | None, key: Any) -> list[Any]:
        gone = self.gone
        found = _values(index, key)
        return [v for v in found if _identity(v)[0] not in gone] if gone else found

    def set_route_finalizer(self, release: dict[str, Any], present: bool) -> dict[str, Any] | None:
        stored = super().set_route_finalizer(release, present)
        if stored is not None and stored is not release:
            self.releases.put(stored)
        return stored

    def write_status(
        self, namespace: str, name: str, resource_version: str, status: CanaryReleaseStatus
    ) -> None:
        written = self.replace_status(namespace, name, resource_version, status)
        self.releases.put(written)
