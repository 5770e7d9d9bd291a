"""Small helpers for end-to-end tests against the real control plane."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.api.spec import GROUP, PLURAL, VERSION

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except ApiException as exc:
            last = exc
        if last and not isinstance(last, ApiException):
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def healthy_traffic(traffic: Any, namespace: str, app: str = "payments") -> None:
    """Both tracks at 50 requests/s with 0.2% errors: what a good release looks like."""
    for track in ("stable", "canary"):
        traffic.set_rate(namespace, app, track, rps=50, error_ratio=0.002)


def adopted(releases: Releases, body: dict[str, Any], replicas: int, start: Callable[[], T]) -> T:
    """The target Deployment (at the release's tag), the release, then `start()`; once Idle."""
    name, spec = body["metadata"]["name"], body["spec"]["release"]
    releases.create_deployment(name, replicas, spec["image"].replace("{tag}", spec["tag"]))
    releases.create(body)
    started = start()
    releases.wait_phase(name, "Idle", timeout=30)
    return started


def deployment(name: str, replicas: int, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image},
                        {"name": "sidecar", "image": "registry.example.com/proxy:1.0"},
                    ]
                },
            },
        },
    }


def error_rate_query(app: str) -> str:
    selector = f'namespace="{{{{namespace}}}}",app="{app}",track="{{{{track}}}}"'
    return (
        f"sum(increase(http_request_errors_total{{{selector}}}[{{{{window}}}}]))"
        f" / sum(increase(http_requests_total{{{selector}}}[{{{{window}}}}]))"
    )


def release(
    name: str,
    tag: str,
    prometheus_url: str | None,
    *,
    steps: list[dict[str, Any]] | None = None,
    interval: str = "2s",
    unreachable_deadline: str = "10m",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"kind": "Deployment", "name": name},
        "release": {
            "tag": tag,
            "image": f"registry.example.com/{name}:{{tag}}",
            "container": "app",
        },
        "steps": steps or [{"setWeight": 10}, {"pause": {"duration": "8s"}}, {"setWeight": 100}],
    }
    if prometheus_url:
        spec["analysis"] = {
            "interval": interval,
            "prometheus": {"address": prometheus_url},
            "unreachableDeadline": unreachable_deadline,
            "metrics": [
                {
                    "name": "error-rate",
                    "query": error_rate_query(name),
                    "threshold": {"max": 0.05},
                    "compare": {"maxRatio": 3},
                }
            ],
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryRelease",
        "metadata": {"name": name},
        "spec": spec,
    }


class Releases:
    """CanaryRelease CRUD in one namespace, through the real apiserver."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def condition(
        self, name: str, type_: str, *, reason: str | None = None
    ) -> dict[str, Any] | None:
        """`name`'s condition of `type_` (with that `reason`, if given), or None."""
        found = [c for c in self.status(name).get("conditions") or [] if c["type"] == type_]
        return next((c for c in found if reason is None or c["reason"] == reason), None)

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body
        )

    def set_tag(self, name: str, tag: str) -> None:
        self.patch(name, {"spec": {"release": {"tag": tag}}})

    def wait_phase(self, name: str, phase: str, timeout: float = 90) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") == phase else None

        return wait_for(reached, timeout, f"{name} to reach {phase}")

    def deployment(self, name: str) -> client.V1Deployment | None:
        try:
            return self.apps.read_namespaced_deployment(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_deployment(self, name: str, replicas: int, image: str) -> None:
        self.apps.create_namespaced_deployment(self.namespace, deployment(name, replicas, image))

        def available() -> bool:
            dep = self.deployment(name)
            return bool(dep and dep.status and (dep.status.available_replicas or 0) >= replicas)

        wait_for(available, 60, f"deployment {name} Available")

    def events(self) -> list[client.CoreV1Event]:
        return list(self.core.list_namespaced_event(self.namespace).items)

    def event_reasons(self, name: str) -> list[str]:
        return [
            e.reason or ""
            for e in self.events()
            if e.involved_object
            and e.involved_object.name == name
            and e.involved_object.kind == "CanaryRelease"
        ]

    def wait_events(self, name: str, *reasons: str, timeout: float = 20) -> list[str]:
        """Until `name` has Events with every one of `reasons`; all its reasons.

        Events are recorded after the status write that caused them, so a
        phase seen in the status may come a moment before its Event.
        """
        wanted = set(reasons)
        return wait_for(
            lambda: (lambda got: got if wanted <= set(got) else None)(self.event_reasons(name)),
            timeout,
            f"Events {sorted(wanted)} for {name}",
        )


class Sampler:
    """Samples `read()` in the background while the block runs (None and API errors skipped)."""

    def __init__(self, read: Callable[[], int | None], interval: float = 0.1) -> None:
        self.read, self.interval = read, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(ApiException):
                value = self.read()
                if value is not None:
                    self.samples.append(value)
            self._stop.wait(self.interval)


class CapacityWatch(Sampler):
    """Samples serving capacity in the background, to prove it never dips.

    Capacity is the number of Ready, non-terminating pods behind the app label
    (both tracks), read in one LIST so every sample is a consistent snapshot.
    """

    def __init__(self, releases: Releases, name: str, interval: float = 0.1) -> None:
        self.releases, self.name = releases, name
        super().__init__(self.ready_pods, interval)

    def ready_pods(self) -> int:
        pods = self.releases.core.list_namespaced_pod(
            self.releases.namespace, label_selector=f"app={self.name}"
        )
        return sum(
            1
            for pod in pods.items
            if pod.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        )
