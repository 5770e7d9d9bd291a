"""Watching a release after its promotion, and rolling stable back on a breach.

The checklist's "Monitoring After Deployment": a release that passed its
canary can still fail at full traffic. For `spec.postPromotion.duration`
after the promotion the controller keeps measuring absolute bounds (there is
no other track to compare with). A breach rolls the stable Deployment back to
the image it ran before, kept in status for this purpose. The image change is
an ordinary rolling update of stable, driven with maxUnavailable 0 by
`settle`, so serving capacity never dips; the strategy is restored after.

An unreachable Prometheus or a rejected query is never a breach here either.
"""

from __future__ import annotations

import math
from datetime import datetime

from controller.api.spec import CanaryReleaseSpec, Metric
from controller.api.status import (
    MAX_HISTORY,
    CanaryReleaseStatus,
    HistoryEntry,
    MetricResult,
    PostPromotionStatus,
)
from controller.engine.context import Decision
from controller.engine.health import pod_trouble
from controller.engine.observations import Measurement
from controller.engine.rollout import start_stable_rollout

BREACH = "PostPromotionBreach"


def start_watch(d: Decision) -> None:
    """Called on promotion: remember what ran before, and watch if the spec asks to."""
    watch = d.spec.post_promotion
    if watch is None:
        d.status.post_promotion = None
        return
    d.status.post_promotion = PostPromotionStatus(
        state="Watching", started_at=d.now, until=d.now + watch.duration_length()
    )
    # A watch of pod health alone measures nothing: only its end is due.
    d.status.next_analysis_at = d.now + watch.interval_length() if watch.metrics else None


def end_watch(status: CanaryReleaseStatus) -> None:
    """Something else now happens to stable: the watch of the last promotion is over."""
    if status.post_promotion is not None and status.post_promotion.state == "Watching":
        status.post_promotion.state = "Ended"
        if status.phase == "Succeeded":
            status.next_analysis_at = None


def watching(status: CanaryReleaseStatus) -> bool:
    """The promoted release is still under watch: its stable pods and metrics are judged."""
    watch = status.post_promotion
    return status.phase == "Succeeded" and watch is not None and watch.state == "Watching"


def watch_due(spec: CanaryReleaseSpec, status: CanaryReleaseStatus, now: datetime) -> bool:
    """The runtime measures the post-promotion metrics only when this is True."""
    watch = status.post_promotion
    if spec.post_promotion is None or not spec.post_promotion.metrics or watch is None:
        return False
    if not watching(status) or now >= watch.until:
        return False
    return status.next_analysis_at is None or now >= status.next_analysis_at


def judge_after_promotion(d: Decision) -> str | None:
    """Fold this round of measurements in; return the rollback message on a breach."""
    spec, status = d.spec.post_promotion, d.status
    watch = status.post_promotion
    if watch is None or not watching(status):
        return None
    if spec is None:  # removed mid-watch
        end_watch(status)
        return None
    unhealthy = pod_trouble(d.observed.stable_pods, d.spec.health_check, "stable")
    if unhealthy is not None:
        return f"after promotion, {unhealthy[1]}"
    measurements = d.observed.post_promotion
    if not spec.metrics:  # none to measure (possibly removed mid-watch): only the end is due
        status.next_analysis_at = None
    elif measurements is not None:
        by_name = {m.metric: m for m in measurements}
        results = [_judge(metric, by_name.get(metric.name), d.now) for metric in spec.metrics]
        watch.metrics = results
        status.next_analysis_at = d.now + spec.interval_length()
        breach = next((r for r in results if r.verdict == "fail"), None)
        if breach is not None:
            return (
                f"after promotion, metric {breach.name}: {breach.reason} "
                f"(query: {breach.query}; measured at {breach.measured_at.isoformat()})"
            )
    if d.now >= watch.until:
        watch.state, status.next_analysis_at = "Passed", None
        d.event("WatchPassed", f"{status.stable_tag} stayed within bounds for {spec.duration}")
    return None


def _judge(metric: Metric, measured: Measurement | None, now: datetime) -> MetricResult:
    def result(verdict: str, reason: str, value: float | None = None) -> MetricResult:
        return MetricResult.model_validate(
            {
                "name": metric.name,
                "canary_value": value,
                "verdict": verdict,
                "reason": reason,
                "measured_at": now,
                "query": measured.query if measured else None,
            }
        )

    if measured is None or measured.unreachable:
        why = measured.error if measured and measured.error else "not measured"
        return result("inconclusive", f"Prometheus unreachable: {why}")
    if measured.error:
        return result("error", f"query failed: {measured.error}")
    value = measured.canary
    if value is None or math.isnan(value):
        return result("inconclusive", "no data yet")
    bound = metric.threshold
    assert bound is not None, "postPromotion metrics have thresholds (validated)"
    if bound.max is not None and value > bound.max:
        return result("fail", f"value {value:.4g} > max {bound.max:.4g}", value)
    if bound.min is not None and value < bound.min:
        return result("fail", f"value {value:.4g} < min {bound.min:.4g}", value)
    return result("pass", f"value {value:.4g} within bounds", value)


def roll_back_promotion(d: Decision, message: str) -> bool:
    """Put the previous image back on stable; False when there is none to go back to."""
    status = d.status
    watch = status.post_promotion
    previous, promoted = status.previous_stable_image, status.stable_tag
    if previous is None or watch is None:
        d.event(BREACH, f"{message}; no previous image to roll back to", warning=True)
        if watch is not None:
            watch.state, status.next_analysis_at = "Breached", None
        return False
    # settle() acts while a strategy is saved; it rolls the image with maxUnavailable 0,
    # then restores this strategy.
    start_stable_rollout(d)
    if promoted is not None:
        entry = HistoryEntry(
            tag=promoted,
            outcome="RolledBack",
            reason=f"{BREACH}: {message}",
            started_at=watch.started_at,
            finished_at=d.now,
        )
        status.history = [*status.history, entry][-MAX_HISTORY:]
    d.event(
        "RolledBack",
        f"{BREACH}: {message}; rolling back to {status.previous_stable_tag or previous}",
        warning=True,
    )
    watch.state = "RolledBack"
    # The rolled-back tag is kept as canary_tag, so it is not adopted or retried by itself.
    status.canary_tag = promoted
    status.stable_tag, status.stable_image = status.previous_stable_tag, previous
    status.previous_stable_tag = status.previous_stable_image = None
    status.phase, status.reason, status.message = "RolledBack", BREACH, message
    status.next_analysis_at = None
    return True
