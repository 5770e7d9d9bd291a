"""What the engine asks the runtime to do. Every action is idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ScaleCanary:
    """Create or update the canary Deployment (a clone of the target) at this image and size."""

    image: str
    replicas: int


@dataclass(frozen=True)
class ScaleStable:
    replicas: int


@dataclass(frozen=True)
class UpdateStable:
    """Set the stable Deployment's image, size and rolling-update bounds in one patch.

    `replicas` None leaves the size alone: an HPA owns it (see Decision.autoscaled).
    Bounds of None leave the strategy alone; `recreate` restores a Recreate strategy
    that a stable rollout had replaced with a rolling one.
    """

    image: str
    replicas: int | None
    max_unavailable: str | None
    max_surge: str | None
    recreate: bool = False


@dataclass(frozen=True)
class DeleteCanary:
    pass


@dataclass(frozen=True)
class RecordEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class SetTrafficWeight:
    """Send exactly `weight`% of the route's requests to the canary Service."""

    weight: int


@dataclass(frozen=True)
class SetHeaderRoute:
    """Add (or remove) the route that sends header-matched requests to the canary."""

    enabled: bool


@dataclass(frozen=True)
class ResetTraffic:
    """Everything back to stable: weight 0 and no header route."""


TrafficAction = SetTrafficWeight | SetHeaderRoute | ResetTraffic


@dataclass(frozen=True)
class CheckGates:
    """Not a change to the world: the engine asks the runtime to check the gates for `tag`
    and decide again with the results (it asks only when a release is about to start)."""

    tag: str


@dataclass(frozen=True)
class CreateHookJob:
    """Create the Job `job` for a hook (or the migration-file extraction) unless it exists."""

    hook: str
    job: str
    tag: str
    image: str
    stable_tag: str | None
    reason: str = ""


@dataclass(frozen=True)
class DeleteHookJob:
    """Delete a finished hook Job (and its pods) that no longer records anything."""

    job: str


Action = (
    ScaleCanary
    | ScaleStable
    | UpdateStable
    | DeleteCanary
    | RecordEvent
    | SetTrafficWeight
    | SetHeaderRoute
    | ResetTraffic
    | CheckGates
    | CreateHookJob
    | DeleteHookJob
)
