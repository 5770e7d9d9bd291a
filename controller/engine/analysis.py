"""Folding a round of measurements into status, and deciding when the next is due."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from controller.api.spec import CanaryReleaseSpec
from controller.api.status import MAX_TREND, CanaryReleaseStatus, MetricResult
from controller.engine.conditions import condition_status, set_condition
from controller.engine.context import ACTIVE_PHASES, Decision
from controller.engine.judging import judge_metric
from controller.engine.observations import Measurement
from controller.engine.quick_rollback import QUICK_ROLLBACK
from controller.engine.sequential import judge_counts

ANALYSIS = "AnalysisAvailable"


def analysis_due(spec: CanaryReleaseSpec, status: CanaryReleaseStatus, now: datetime) -> bool:
    """The runtime asks this before deciding, and measures only when it is True."""
    if spec.analysis is None or status.phase not in ACTIVE_PHASES or status.canary_tag is None:
        return False
    if status.reason == QUICK_ROLLBACK:
        return False  # no canary to judge while the previous tag is put back
    return status.next_analysis_at is None or now >= status.next_analysis_at


def analysis_window(status: CanaryReleaseStatus, now: datetime) -> timedelta:
    """Counters are compared since the current step started: the canary's share was constant."""
    start = status.step_started_at or status.release_started_at or now
    return max(now - start, timedelta(0))


def release_window(status: CanaryReleaseStatus, now: datetime) -> timedelta:
    """Counter metrics (errors/latency) read since the release started.

    The sequential judge differences successive reads into intervals, each
    with its own traffic split, so a weight change needs no new window, and
    one window for the whole release means no interval is counted twice.
    """
    start = status.release_started_at or status.step_started_at or now
    return max(now - start, timedelta(0))


def analysis_passed(d: Decision) -> bool:
    """Every metric's latest verdict in this release is pass."""
    analysis = d.spec.analysis
    if analysis is None:
        return True
    started = d.status.release_started_at
    latest = {r.name: r for r in d.status.metrics}
    return all(
        (r := latest.get(m.name)) is not None
        and r.verdict == "pass"
        and (started is None or r.measured_at >= started)
        for m in analysis.metrics
    )


def inconclusive_choice(d: Decision) -> str | None:
    """`analysis.onInconclusive` when only the sequential judge's lack of evidence blocks promotion.

    Applies when every metric measured in this release is `pass`, or
    `inconclusive` from a counter metric that did count data at its latest
    look: an unreachable Prometheus, a rejected query or a missing stable
    track is never 'inconclusive' in this sense, so they keep holding.
    """
    analysis = d.spec.analysis
    if analysis is None:
        return None
    started = d.status.release_started_at
    latest = {r.name: r for r in d.status.metrics}
    undecided = 0
    for metric in analysis.metrics:
        r = latest.get(metric.name)
        if r is None or (started is not None and r.measured_at < started):
            return None
        if r.verdict == "pass":
            continue
        counted = r.evidence is not None and r.evidence.counted_at == r.measured_at
        if r.verdict != "inconclusive" or not metric.sequential or not counted:
            return None
        if metric.compare is not None and r.stable_value is None:
            return None  # no stable data to compare against: not 'inconclusive', hold
        undecided += 1
    return analysis.on_inconclusive if undecided else None


def inconclusive_message(d: Decision) -> str:
    """Why the end of the window came without a verdict, metric by metric."""
    undecided = [r for r in d.status.metrics if r.verdict == "inconclusive"]
    details = "; ".join(f"{r.name}: {r.reason}" for r in undecided)
    return f"no verdict at the end of the last step (onInconclusive: rollback): {details}"


def apply_measurements(d: Decision, measurements: tuple[Measurement, ...]) -> MetricResult | None:
    """Judge every metric; return the first breach, if any."""
    analysis = d.spec.analysis
    assert analysis is not None
    by_name = {m.metric: m for m in measurements}
    previous = {r.name: r for r in d.status.metrics}
    results = []
    for metric in analysis.metrics:
        measured = by_name.get(metric.name) or Measurement(
            metric.name, None, None, metric.display_query(), error="not measured", unreachable=True
        )
        prior = previous.get(metric.name)
        if metric.sequential:
            evidence = prior.evidence if prior is not None else None
            judgement = judge_counts(metric, analysis, measured, evidence, d.now)
            canary, stable = judgement.canary_value, judgement.stable_value
        else:
            judgement = judge_metric(metric, measured, analysis.no_data)
            canary, stable = measured.canary, measured.stable
        trend = list(prior.trend) if prior is not None else []
        if canary is not None and not math.isnan(canary):
            trend = [*trend, canary][-MAX_TREND:]
        results.append(
            MetricResult(
                name=metric.name,
                canary_value=_finite(canary),
                stable_value=_finite(stable),
                verdict=judgement.verdict,
                reason=judgement.reason,
                measured_at=d.now,
                query=measured.query,
                trend=trend,
                evidence=judgement.evidence,
            )
        )
    d.status.metrics = results
    d.status.next_analysis_at = d.now + analysis.interval_length()
    _track_availability(d, measurements)
    return next((r for r in results if r.verdict == "fail"), None)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _track_availability(d: Decision, measurements: tuple[Measurement, ...]) -> None:
    """Raise a condition and one Event when Prometheus stays unreachable or rejects a query."""
    analysis = d.spec.analysis
    assert analysis is not None
    status, now = d.status, d.now
    unreachable = [m for m in measurements if m.unreachable]
    broken = [m for m in measurements if m.error and not m.unreachable]
    was = condition_status(status.conditions, ANALYSIS)
    if unreachable:
        since = status.prometheus_unreachable_since or now
        status.prometheus_unreachable_since = since
        if now - since < analysis.unreachable_length():
            return
        message = (
            f"Prometheus at {analysis.prometheus.address} unreachable since "
            f"{since.isoformat()}: {unreachable[0].error}; holding (no promotion, no rollback)"
        )
        status.conditions = set_condition(
            status.conditions, ANALYSIS, "False", "PrometheusUnreachable", message, now
        )
        if was != "False":
            d.event("PrometheusUnreachable", message, warning=True)
        return
    status.prometheus_unreachable_since = None
    if broken:
        message = f"metric {broken[0].metric}: Prometheus rejected the query: {broken[0].error}"
        status.conditions = set_condition(
            status.conditions, ANALYSIS, "False", "QueryError", message, now
        )
        if was != "False":
            d.event("QueryError", message, warning=True)
        return
    status.conditions = set_condition(
        status.conditions, ANALYSIS, "True", "Measured", "all metrics measured", now
    )
    if was == "False":
        d.event("AnalysisAvailable", "all metrics measured again")
