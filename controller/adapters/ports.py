"""The seams between the engine's world and real systems, one per external system.

The runtime and replay talk only to these protocols; the Kubernetes and
Prometheus adapters implement them, and tests can substitute in-memory ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from controller.adapters.routers.protocol import TrafficRouter
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.auditlog.samples import AuditPlan, AuditSample
from controller.engine.actions import Action, RecordEvent
from controller.engine.observations import DeploymentView, PodHealth


class QueryRejected(Exception):
    """Prometheus answered, and said the query is wrong: a configuration error."""


class MetricsUnreachable(Exception):
    """Prometheus did not answer: the analysis holds, it never fails on this.

    `connection` is True when no connection could be made at all, so every
    other query to the same address would fail the same way; a query that
    timed out or got a 5xx says nothing about the next one.
    """

    def __init__(self, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection


class StatusConflict(Exception):
    """Someone else wrote the object since we read it; reconcile again from a fresh read."""


class MetricsSource(Protocol):
    def query(self, promql: str, at: datetime) -> float | None:
        """One instant value (None for no data); raises QueryRejected or MetricsUnreachable."""

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        """Every series with its labels (histogram buckets by `le`); raises as `query` does."""


class AuditLogUnreachable(Exception):
    """The audit database or Prometheus did not answer in time: hold, never a breach."""


class AuditLogRejected(Exception):
    """The audit source answered with an error (no such table, bad query, no Secret)."""


class AuditLogSource(Protocol):
    def fetch(self, plan: AuditPlan) -> AuditSample:
        """Counts per action for the plan's windows; raises AuditLogUnreachable or -Rejected."""


class Cluster(Protocol):
    def read_release(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def read_deployment(
        self, namespace: str, name: str, container: str | None
    ) -> DeploymentView | None: ...

    def read_pods(self, namespace: str, release: str, track: str, image: str) -> PodHealth:
        """One track's serving pods of a release that run `image`.

        `track` is "canary", or "stable" once a promotion labelled stable's pods.
        """
        ...

    def read_autoscaler(self, namespace: str, deployment: str) -> str | None:
        """The HorizontalPodAutoscaler that owns this Deployment's replica count, if any."""
        ...

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None: ...

    def write_status(
        self, namespace: str, name: str, resource_version: str, status: CanaryReleaseStatus
    ) -> None: ...

    def apply(self, release: dict[str, Any], spec: CanaryReleaseSpec, action: Action) -> None: ...

    def record_event(
        self, release: dict[str, Any], event: RecordEvent, key: str | None = None
    ) -> None:
        """Recording the same `key` twice records one Event."""
        ...

    def traffic_router(self, release: dict[str, Any], spec: CanaryReleaseSpec) -> TrafficRouter:
        """The router `spec.trafficRouting` names (see controller/adapters/routers)."""
        ...

    def set_route_finalizer(self, release: dict[str, Any], present: bool) -> dict[str, Any] | None:
        """Hold the release's deletion until its route is reset; None when it is gone."""
        ...
