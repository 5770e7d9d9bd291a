"""Replay: a CanaryRelease's analysis over recorded Prometheus data, on the real engine.

Users tune `maxRatio`, `falseAlarmRate` and thresholds before trusting them:
"had this release run last Tuesday from 09:00, when would it have rolled
back, and why?". Replay answers with the very code that runs in the cluster:
`controller.engine.decide.decide` driven by a simulated clock, a simulated
cluster whose pods become Ready after a delay (`SimulatedWorld`), and
`controller.runtime.measuring.measure` querying Prometheus at each
evaluation instant of the past.

The recorded metrics are what they were: replay does not shift traffic, so
it answers the question for the canary and stable tracks as recorded. The
audit log (from the same Prometheus, or a PostgreSQL given by DSN) and the
watch after promotion are replayed too, and so are deploy windows (they depend
on the clock alone). The other gates and the hooks are not: they read the live
cluster and database, so replay leaves them out and says so.

A replay that could not judge says why instead of "no decision": a
Prometheus that does not answer, a query it rejects, or a window it holds no
data for (beyond its retention, or in the future) each end the replay with
`Timeline.problem`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from controller.adapters.ports import AuditLogSource, MetricsSource, MetricsUnreachable
from controller.api.gates import Gates
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, MetricResult
from controller.engine.actions import (
    Action,
    RecordEvent,
    ResetTraffic,
    SetHeaderRoute,
    SetTrafficWeight,
)
from controller.engine.gating import WINDOW_REASONS
from controller.engine.observations import Observed, RouteView
from controller.engine.watching import watch_due, watching
from controller.replay.world import SimulatedWorld
from controller.runtime.auditing import judge_audit_log
from controller.runtime.measuring import UntilRefused
from controller.runtime.watching import measure_after_promotion

TERMINAL = ("RolledBack", "Succeeded", "Failed")
_T = TypeVar("_T")


class _Answering(UntilRefused):
    """The runtime's round source, kept for the whole replay, that also counts timeouts.

    A query that timed out is held as inconclusive, as the controller holds it;
    a refused connection (a wrong address, no Prometheus) would be refused at
    every look of the window, so replay stops there (`refused`).
    """

    def __init__(self, source: MetricsSource) -> None:
        super().__init__(source)
        self.timeouts = 0
        """Queries answered by no result (a timeout, a 5xx): held, as in the controller."""

    def _ask(self, ask: Callable[[], _T]) -> _T:
        try:
            return super()._ask(ask)
        except MetricsUnreachable as exc:
            self.timeouts += not exc.connection
            raise


@dataclass(kw_only=True)
class ReplayWorld(SimulatedWorld):
    """The simulated cluster, its metrics answered by a real (recorded) Prometheus.

    Beyond the canary's metrics, it reads what the runtime reads: the audit
    log on the analysis schedule, and the post-promotion metrics while the
    promoted release is watched.
    """

    source: _Answering
    watch_source: _Answering
    audit: AuditLogSource | None = None
    routed: tuple[int, bool] = (0, False)
    """With spec.trafficRouting: the (weight, header route) the simulated route applies;
    replay moves no real traffic, but the engine waits for the route to show a weight."""

    def metrics_source(self) -> MetricsSource:
        return self.source

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SetTrafficWeight(weight=weight):
                    self.routed = (weight, self.routed[1])
                case SetHeaderRoute(enabled=enabled):
                    self.routed = (self.routed[0], enabled)
                case ResetTraffic():
                    self.routed = (0, False)
        super().apply(actions)

    def observe(self, now: datetime) -> Observed:
        observed = super().observe(now)
        if self.spec.traffic_routing is not None:
            observed = replace(observed, route=RouteView(*self.routed))
        analysis = self.spec.analysis
        if observed.measurements is not None and self.audit is not None and analysis:
            audit = self.audit
            assert observed.target is not None
            report = judge_audit_log(
                lambda: audit,
                self.spec,
                self.status,
                target=observed.target,
                canary=observed.canary,
                now=now,
            )
            observed = replace(observed, audit_log=report)
        if watch_due(self.spec, self.status, now):
            after = measure_after_promotion(
                self.watch_source,
                self.spec,
                self.status,
                namespace=self.namespace,
                name=self.name,
                at=now,
            )
            observed = replace(observed, post_promotion=after)
        return observed


@dataclass(frozen=True)
class Look:
    """One analysis: when, where the release stood, and every metric's judgement."""

    at: datetime
    phase: str
    step: int | None
    weight: int
    metrics: tuple[MetricResult, ...]
    audit: str | None = None
    """The audit log's verdict and reason, when it was judged at this look."""


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
    watch: list[Look] = field(default_factory=list)
    """The looks of the watch after promotion (its own metrics)."""
    events: list[Event] = field(default_factory=list)
    final: CanaryReleaseStatus = field(default_factory=CanaryReleaseStatus)
    decided_at: datetime | None = None
    not_replayed: tuple[str, ...] = ()
    problem: str | None = None
    """Why replay could not judge (then its outcome means nothing)."""

    @property
    def outcome(self) -> str:
        if self.problem is not None:
            return "NotJudged"
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
            "problem": self.problem,
            "notReplayed": list(self.not_replayed),
            "timeline": [_look_json(look) for look in self.looks],
            "watch": [_look_json(look) for look in self.watch],
            "events": [
                {"at": e.at.isoformat(), "type": e.type, "reason": e.reason, "message": e.message}
                for e in self.events
            ],
        }


def _look_json(look: Look) -> dict[str, Any]:
    return {
        "at": look.at.isoformat(),
        "phase": look.phase,
        "step": look.step,
        "weight": look.weight,
        "metrics": [
            m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in look.metrics
        ],
        "auditLog": look.audit,
    }


def replayable(spec: CanaryReleaseSpec) -> tuple[CanaryReleaseSpec, tuple[str, ...]]:
    """The spec without what replay cannot replay, and the names of what it left out.

    Deploy windows stay: they depend on the clock alone, and a promotion held
    until a window opens is part of the answer to "when would it have ended?".
    """
    left_out = []
    gates = spec.gates
    if gates is not None and gates.model_copy(update={"windows": None}) != Gates():
        left_out.append("gates (they read the live cluster and database; taken as passed)")
    if spec.hooks is not None:
        left_out.append("hooks (their Jobs are not run; taken as succeeded)")
    windows = gates.windows if gates is not None else None
    kept = Gates(windows=windows) if windows is not None else None
    return spec.model_copy(update={"gates": kept, "hooks": None}), tuple(left_out)


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
    audit: AuditLogSource | None = None,
    watch_source: MetricsSource | None = None,
) -> Timeline:
    """Run the release from `start` (when its tag appears) to `end`, ticking every `every`.

    `audit` reads the audit log when the spec has one; `watch_source` answers
    the post-promotion metrics (default: `source`).
    """
    if spec.release.tag is None:
        raise ValueError("spec.release.tag is not set: nothing to release")
    if spec.analysis is None:
        raise ValueError("spec.analysis is not set: nothing to replay")
    if every <= timedelta(0) or end <= start:
        raise ValueError("need a positive --every and --to after --from")
    if spec.analysis.audit_log is not None and audit is None:
        raise ValueError("spec.analysis.auditLog is set: replay needs a source for it")
    spec, left_out = replayable(spec)
    answering = _Answering(source)
    world = ReplayWorld(
        spec=spec,
        start=start,
        source=answering,
        watch_source=answering if watch_source is None else _Answering(watch_source),
        audit=audit,
        replicas=replicas,
        ready_delay=ready_delay,
        stable_image=spec.release.image_for(f"{spec.release.tag}-previous"),
        namespace=namespace,
        name=name,
    )
    timeline = Timeline(name=name, namespace=namespace, start=start, end=end, not_replayed=left_out)
    now = start
    while now <= end:
        actions = world.tick(now)
        status = world.status
        for action in actions:
            if isinstance(action, RecordEvent):
                timeline.events.append(Event(now, action.type, action.reason, action.message))
        _record_looks(timeline, status, now)
        timeline.problem = _problem(world, timeline, now)
        if timeline.problem is not None:
            break
        if status.phase in TERMINAL and not watching(status) and timeline.decided_at is None:
            timeline.decided_at = now
            if stop_at_decision:
                break
        now += every
    timeline.final = world.status
    held = world.status.reason in WINDOW_REASONS  # never started: no query was due
    if timeline.problem is None and not held and not _any_data(timeline):
        timeouts = world.source.timeouts + world.watch_source.timeouts
        slow = f" ({timeouts} queries went unanswered: timeouts or 5xx)" if timeouts else ""
        timeline.problem = (
            f"no query returned data in this window{slow}: is it within Prometheus's "
            "retention, and do the labels match?"
        )
    return timeline


def _record_looks(timeline: Timeline, status: CanaryReleaseStatus, now: datetime) -> None:
    audit = status.audit_log if status.audit_log and status.audit_log.measured_at == now else None
    if (status.metrics and status.metrics[0].measured_at == now) or audit is not None:
        timeline.looks.append(
            Look(
                now,
                status.phase,
                status.current_step_index,
                status.canary_weight,
                tuple(status.metrics),
                f"{audit.verdict} {audit.reason}" if audit is not None else None,
            )
        )
    watch = status.post_promotion
    if watch is not None and watch.metrics and watch.metrics[0].measured_at == now:
        timeline.watch.append(Look(now, status.phase, None, 100, tuple(watch.metrics)))


def _problem(world: ReplayWorld, timeline: Timeline, now: datetime) -> str | None:
    """A reason to stop: Prometheus did not answer, or rejected a query."""
    for source in (world.source, world.watch_source):
        if source.refused is not None:
            return f"Prometheus did not answer at {now.isoformat()}: {source.refused}"
    for look in timeline.looks[-1:] + timeline.watch[-1:]:
        if look.at == now:
            broken = next((m for m in look.metrics if m.verdict == "error"), None)
            if broken is not None:
                return f"metric {broken.name}: {broken.reason}"
    audit = world.status.audit_log
    if audit is None or audit.measured_at != now:
        return None
    if audit.verdict == "error" or audit.unreachable_since is not None:
        return f"audit log: {audit.reason}"
    return None


def _any_data(timeline: Timeline) -> bool:
    looks = timeline.looks + timeline.watch
    return any(look.audit is not None for look in looks) or any(
        m.canary_value is not None or m.stable_value is not None
        for look in looks
        for m in look.metrics
    )
