"""Replay: a CanaryRelease's analysis over recorded Prometheus data, on the real engine.

Users tune `maxRatio`, `falseAlarmRate` and thresholds before trusting them:
"had this release run last Tuesday from 09:00, when would it have rolled
back, and why?". Replay answers with the very code that runs in the cluster:
`controller.engine.decide.decide` driven by a simulated clock, a simulated
cluster whose pods become Ready after a delay (`SimulatedWorld`), and
`controller.runtime.measuring.measure` querying Prometheus at each
evaluation instant of the past.

The recorded metrics are what they were: replay does not shift traffic, so
it answers the question for the canary and stable tracks as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.adapters.ports import MetricsSource
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, MetricResult
from controller.engine.actions import RecordEvent
from controller.replay.world import SimulatedWorld

TERMINAL = ("RolledBack", "Succeeded", "Failed")


@dataclass(kw_only=True)
class ReplayWorld(SimulatedWorld):
    """The simulated cluster, its metrics answered by a real (recorded) Prometheus."""

    source: MetricsSource

    def metrics_source(self) -> MetricsSource:
        return self.source


@dataclass(frozen=True)
class Look:
    """One analysis: when, where the release stood, and every metric's judgement."""

    at: datetime
    phase: str
    step: int | None
    weight: int
    metrics: tuple[MetricResult, ...]


@dataclass(frozen=True)
class Event:
    at: datetime
    type: str
    reason: str
    message: str


@dataclass
class Timeline:
    """What replay saw: every analysis, every Event, and how the release ended."""

    name: str
    namespace: str
    start: datetime
    end: datetime
    looks: list[Look] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    final: CanaryReleaseStatus = field(default_factory=CanaryReleaseStatus)
    decided_at: datetime | None = None

    @property
    def outcome(self) -> str:
        return self.final.phase if self.final.phase in TERMINAL else "Undecided"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "outcome": {
                "phase": self.outcome,
                "at": self.decided_at.isoformat() if self.decided_at else None,
                "afterSeconds": (self.decided_at - self.start).total_seconds()
                if self.decided_at
                else None,
                "reason": self.final.reason,
                "message": self.final.message,
            },
            "timeline": [
                {
                    "at": look.at.isoformat(),
                    "phase": look.phase,
                    "step": look.step,
                    "weight": look.weight,
                    "metrics": [
                        m.model_dump(mode="json", by_alias=True, exclude_none=True)
                        for m in look.metrics
                    ],
                }
                for look in self.looks
            ],
            "events": [
                {"at": e.at.isoformat(), "type": e.type, "reason": e.reason, "message": e.message}
                for e in self.events
            ],
        }


def replay(
    spec: CanaryReleaseSpec,
    source: MetricsSource,
    *,
    start: datetime,
    end: datetime,
    every: timedelta,
    namespace: str = "default",
    name: str = "release",
    replicas: int = 10,
    ready_delay: timedelta = timedelta(seconds=20),
    stop_at_decision: bool = True,
) -> Timeline:
    """Run the release from `start` (when its tag appears) to `end`, ticking every `every`."""
    if spec.release.tag is None:
        raise ValueError("spec.release.tag is not set: nothing to release")
    if spec.analysis is None:
        raise ValueError("spec.analysis is not set: nothing to replay")
    if every <= timedelta(0) or end <= start:
        raise ValueError("need a positive --every and --to after --from")
    world = ReplayWorld(
        spec=spec,
        start=start,
        source=source,
        replicas=replicas,
        ready_delay=ready_delay,
        stable_image=spec.release.image_for(f"{spec.release.tag}-previous"),
        namespace=namespace,
        name=name,
    )
    timeline = Timeline(name=name, namespace=namespace, start=start, end=end)
    now = start
    while now <= end:
        actions = world.tick(now)
        status = world.status
        for action in actions:
            if isinstance(action, RecordEvent):
                timeline.events.append(Event(now, action.type, action.reason, action.message))
        if status.metrics and status.metrics[0].measured_at == now:
            timeline.looks.append(
                Look(
                    now,
                    status.phase,
                    status.current_step_index,
                    status.canary_weight,
                    tuple(status.metrics),
                )
            )
        if status.phase in TERMINAL and timeline.decided_at is None:
            timeline.decided_at = now
            if stop_at_decision:
                break
        now += every
    timeline.final = world.status
    return timeline
