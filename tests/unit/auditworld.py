"""The simulated world of tests/unit/world.py, plus an audit log and a watch after promotion.

`MemoryAuditLog` is an in-memory implementation of the AuditLogSource
protocol: events are (time, action, track, count) tuples, counted exactly as the SQL
provider counts rows. The engine tests drive the real planning and statistics
through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.adapters.ports import AuditLogUnreachable
from controller.api.spec import CanaryReleaseSpec
from controller.auditlog import AuditPlan, AuditReport, AuditSample, plan_audit
from controller.auditlog.detection import detect
from controller.engine.observations import Observed
from controller.engine.watching import watch_due
from controller.runtime.auditing import canary_share
from controller.runtime.watching import measure_after_promotion
from tests.unit.world import World, make_spec

Event = tuple[datetime, str, str, int]  # when, action, track, how many


@dataclass
class MemoryAuditLog:
    events: list[Event] = field(default_factory=list)
    down: bool = False

    def _count(self, start: datetime, end: datetime, track: str | None) -> dict[str, float]:
        counts: dict[str, float] = {}
        for when, action, where, n in self.events:
            if start <= when < end and (track is None or where == track):
                counts[action] = counts.get(action, 0.0) + n
        return counts

    def fetch(self, plan: AuditPlan) -> AuditSample:
        if self.down:
            raise AuditLogUnreachable("connection refused")
        seen = frozenset(self._count(plan.history_start, plan.start, None))
        if plan.by_track:
            return AuditSample(
                canary=self._count(plan.start, plan.end, "canary"),
                stable=self._count(plan.start, plan.end, "stable"),
                seen_before=seen,
            )
        earliest = min((when for when, *_ in self.events), default=None)
        days = []
        for back in range(1, plan.baseline_days + 1):
            start, end = plan.baseline_window(back)
            if earliest is None or earliest > start:
                break
            days.append(self._count(start, end, None))
        return AuditSample(
            canary=self._count(plan.start, plan.end, None), baseline=tuple(days), seen_before=seen
        )


@dataclass
class _Values:
    value: Callable[[str, datetime], float | None]

    def query(self, promql: str, at: datetime) -> float | None:
        return self.value(promql, at)


@dataclass
class AuditWorld(World):
    audit: MemoryAuditLog = field(default_factory=MemoryAuditLog)
    after: Callable[[str, datetime], float | None] = lambda _q, _t: 0.01

    def observe(self, now: datetime) -> Observed:
        base = super().observe(now)
        report = None
        analysis = self.spec.analysis
        if base.measurements is not None and analysis and analysis.audit_log is not None:
            report = self.judge_audit_log(now, base)
        watch = None
        if watch_due(self.spec, self.status, now):
            watch = measure_after_promotion(
                _Values(self.after), self.spec, self.status, namespace="shop", name="app", at=now
            )
        return dataclasses.replace(base, audit_log=report, post_promotion=watch)

    def judge_audit_log(self, now: datetime, observed: Observed) -> AuditReport:
        analysis = self.spec.analysis
        assert analysis is not None and analysis.audit_log is not None
        plan = plan_audit(analysis.audit_log, self.status, now)
        try:
            sample = self.audit.fetch(plan)
        except AuditLogUnreachable as exc:
            return AuditReport("inconclusive", str(exc), now, unreachable=True)
        assert observed.target is not None
        share = canary_share(observed.target, observed.canary)
        return detect(analysis.audit_log, plan, sample, canary_share=share, now=now)


def spec_with(
    *,
    audit_log: dict[str, Any] | None = None,
    post_promotion: dict[str, Any] | None = None,
    steps: list[dict[str, object]] | None = None,
) -> CanaryReleaseSpec:
    raw = make_spec(steps=steps).model_dump(by_alias=True, exclude_none=True, mode="json")
    if audit_log is not None:
        raw["analysis"]["auditLog"] = audit_log
    if post_promotion is not None:
        raw["postPromotion"] = post_promotion
    return CanaryReleaseSpec.model_validate(raw)
