"""The working state of one decision: inputs, the status being built, the actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controller.api.spec import CanaryReleaseSpec
from controller.api.status import MAX_HISTORY, CanaryReleaseStatus, HistoryEntry, Outcome
from controller.engine.actions import Action, RecordEvent
from controller.engine.observations import DeploymentView, Observed

ACTIVE_PHASES = ("Progressing", "Paused", "Promoting")


@dataclass
class Decision:
    spec: CanaryReleaseSpec
    status: CanaryReleaseStatus
    observed: Observed
    now: datetime
    actions: list[Action] = field(default_factory=list)
    force_advance: bool = False
    force_promotion: bool = False
    analysed: bool = False

    @property
    def target(self) -> DeploymentView:
        assert self.observed.target is not None, "decided only once the target is observed"
        return self.observed.target

    @property
    def active(self) -> bool:
        return self.status.phase in ACTIVE_PHASES

    @property
    def autoscaled(self) -> bool:
        """An HPA owns the target's replica count: stable is never resized, only its image.

        Resizing it would start a tug of war the HPA wins every sync; instead
        the canary runs as extra pods beside it, sized from its live count.
        """
        target = self.observed.target
        return target is not None and target.autoscaler is not None

    @property
    def total_replicas(self) -> int:
        if self.autoscaled:
            return self.target.replicas
        if self.status.target_replicas is not None:
            return self.status.target_replicas
        return self.target.replicas

    @property
    def stable_replicas_to_set(self) -> int | None:
        """What a stable update writes to `spec.replicas`: nothing when an HPA owns it."""
        return None if self.autoscaled else self.total_replicas

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.actions.append(RecordEvent("Warning" if warning else "Normal", reason, message))

    def record_history(self, outcome: Outcome, reason: str) -> None:
        tag = self.status.canary_tag
        if tag is None:
            return
        entry = HistoryEntry(
            tag=tag,
            outcome=outcome,
            reason=reason,
            started_at=self.status.release_started_at,
            finished_at=self.now,
        )
        self.status.history = [*self.status.history, entry][-MAX_HISTORY:]
