"""What the runtime observed, in the plain form the engine decides on.

The adapters translate Kubernetes objects and Prometheus answers into these
frozen records, so the engine never sees a client library type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controller.auditlog.reports import AuditReport
from controller.engine.gate_observations import GateObservations

KUBERNETES_PROGRESS_DEADLINE_S = 600
"""A Deployment's `progressDeadlineSeconds` when its spec does not set one."""


@dataclass(frozen=True)
class DeploymentView:
    name: str
    replicas: int
    image: str
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    generation: int = 1
    observed_generation: int = 1
    max_unavailable: str | None = None
    max_surge: str | None = None
    status_replicas: int | None = None
    """Pods of every revision (status.replicas): above `replicas` while old pods remain."""
    autoscaler: str | None = None
    """The HorizontalPodAutoscaler that owns `replicas`, if one targets this Deployment."""
    stalled: str | None = None
    """The Deployment controller's message when its rollout made no progress within
    `progressDeadlineSeconds` (condition Progressing=False, ProgressDeadlineExceeded).
    Kubernetes keeps this condition until the rollout progresses, even across a
    template change, so it may be older than the rollout now running."""
    progress_deadline_s: int = KUBERNETES_PROGRESS_DEADLINE_S
    """`spec.progressDeadlineSeconds`."""
    replicas_set_by: str | None = None
    """Who else (a field manager: kubectl, a GitOps tool) last set `replicas`; None when
    the controller did, or nobody can tell."""

    def settled(self, image: str, replicas: int) -> bool:
        """True once the Deployment controller has fully rolled out `image` at `replicas`.

        Ready and available counts include pods of the old image, so a rollout
        that still has an old pod next to a starting new one would look done:
        `status_replicas` (when observed) says no old pod is left.
        """
        leftover = self.status_replicas is not None and self.status_replicas > replicas
        return (
            self.image == image
            and self.replicas == replicas
            and self.observed_generation >= self.generation
            and self.updated_replicas >= replicas
            and self.available_replicas >= replicas
            and self.ready_replicas >= replicas
            and not leftover
        )


@dataclass(frozen=True)
class PodHealth:
    """Health of one track's pods: the built-in breach check reads this.

    For the canary throughout its steps; for stable during the watch after
    promotion, when its pods run the promoted image.
    """

    crash_looping: tuple[str, ...] = ()
    max_restarts: int = 0


@dataclass(frozen=True)
class TrackCounts:
    """Counter increases of one track since `Measurement.window_start`.

    `requests` is None when the track has no data. `errors` None with
    requests present means no error series exists yet: zero errors. For a
    latency metric, `buckets` holds (upper bound, cumulative count) per `le`.
    """

    requests: float | None
    errors: float | None = None
    buckets: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Measurement:
    """One metric evaluated for both tracks at one instant.

    `error` is a query Prometheus rejected (a configuration problem, never a
    breach); `unreachable` means no answer at all (never promote, never roll back).
    Counter metrics (errors/requests, latency) also carry the per-track counts
    and the instant their window starts.
    """

    metric: str
    canary: float | None
    stable: float | None
    query: str
    error: str | None = None
    unreachable: bool = False
    window_start: datetime | None = None
    canary_counts: TrackCounts | None = None
    stable_counts: TrackCounts | None = None


@dataclass(frozen=True)
class RouteView:
    """What a traffic router reports its route sends to the canary now.

    `weight` is None when there is nothing to steer (the route object or its
    rule is missing). `conflict` names another field manager that owns what the
    controller must write; `problem` is a misconfiguration. Either one holds
    the release where it is: the engine never forces a route.

    The route object is not the data plane. Where the gateway reports on the
    route, `rejected` says it refused it (not accepted, or its backends not
    resolved) and `pending` that it has not yet processed the latest change.
    Either way what is served may differ from `weight`, so no step counts as
    reached and nothing carrying traffic shrinks; unlike `problem`, the route
    stays writable, so an abort can still reset it.
    """

    weight: int | None
    header_route: bool = False
    conflict: str | None = None
    problem: str | None = None
    rejected: str | None = None
    pending: str | None = None

    @property
    def programmed(self) -> bool:
        """The gateway serves what the route object says (or does not report otherwise)."""
        return self.rejected is None and self.pending is None


@dataclass(frozen=True)
class Observed:
    target: DeploymentView | None
    canary: DeploymentView | None = None
    canary_pods: PodHealth = field(default_factory=PodHealth)
    measurements: tuple[Measurement, ...] | None = None
    command: str | None = None
    generation: int = 1
    audit_log: AuditReport | None = None
    post_promotion: tuple[Measurement, ...] | None = None
    gates: GateObservations | None = None
    route: RouteView | None = None
    stable_pods: PodHealth = field(default_factory=PodHealth)
