"""What the runtime observed, in the plain form the engine decides on.

The adapters translate Kubernetes objects and Prometheus answers into these
frozen records, so the engine never sees a client library type.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def settled(self, image: str, replicas: int) -> bool:
        """True once the Deployment controller has fully rolled out `image` at `replicas`."""
        return (
            self.image == image
            and self.replicas == replicas
            and self.observed_generation >= self.generation
            and self.updated_replicas >= replicas
            and self.available_replicas >= replicas
            and self.ready_replicas >= replicas
        )


@dataclass(frozen=True)
class CanaryPods:
    """Health of the canary's pods: the built-in breach check reads this."""

    crash_looping: tuple[str, ...] = ()
    max_restarts: int = 0


@dataclass(frozen=True)
class Measurement:
    """One metric evaluated for both tracks at one instant.

    `error` is a query Prometheus rejected (a configuration problem, never a
    breach); `unreachable` means no answer at all (never promote, never roll back).
    """

    metric: str
    canary: float | None
    stable: float | None
    query: str
    error: str | None = None
    unreachable: bool = False


@dataclass(frozen=True)
class Observed:
    target: DeploymentView | None
    canary: DeploymentView | None = None
    canary_pods: CanaryPods = field(default_factory=CanaryPods)
    measurements: tuple[Measurement, ...] | None = None
    command: str | None = None
    generation: int = 1
