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
    """Set the stable Deployment's image, size and rolling-update bounds in one patch."""

    image: str
    replicas: int
    max_unavailable: str | None
    max_surge: str | None


@dataclass(frozen=True)
class DeleteCanary:
    pass


@dataclass(frozen=True)
class RecordEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = ScaleCanary | ScaleStable | UpdateStable | DeleteCanary | RecordEvent
