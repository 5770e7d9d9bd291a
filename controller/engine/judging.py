"""Judging one measurement against a metric's bounds.

An unreachable Prometheus or a rejected query is never a breach and never a
pass: the release holds, so an outage of the monitoring cannot roll back a
good release or promote a bad one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.api.spec import Metric
from controller.api.status import Evidence, Verdict
from controller.engine.observations import Measurement


@dataclass(frozen=True)
class Judgement:
    """A verdict with its reason; counter metrics also bring the values and evidence to keep."""

    verdict: Verdict
    reason: str
    canary_value: float | None = None
    stable_value: float | None = None
    evidence: Evidence | None = None


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def judge_metric(metric: Metric, measured: Measurement, no_data: str) -> Judgement:
    if measured.unreachable:
        return Judgement("inconclusive", f"Prometheus unreachable: {measured.error or 'no answer'}")
    if measured.error:
        return Judgement("error", f"query failed: {measured.error}")
    if measured.canary is None or _missing(measured.canary):
        if no_data == "fail":
            return Judgement("fail", "no data for the canary track (noData: fail)")
        return Judgement("inconclusive", "no data for the canary track yet (noData: hold)")
    canary = measured.canary
    passed: list[str] = []
    if metric.threshold is not None:
        bound = metric.threshold
        if bound.max is not None and canary > bound.max:
            return Judgement("fail", f"canary {_fmt(canary)} > max {_fmt(bound.max)}")
        if bound.min is not None and canary < bound.min:
            return Judgement("fail", f"canary {_fmt(canary)} < min {_fmt(bound.min)}")
        passed.append(_threshold_text(canary, bound.min, bound.max))
    if metric.compare is not None:
        ratio = metric.compare.max_ratio
        stable = measured.stable
        if stable is None or _missing(stable):
            return Judgement("inconclusive", "no data for the stable track to compare against")
        if canary > stable * ratio and not (stable == 0 and canary == 0):
            if stable == 0:
                return Judgement(
                    "inconclusive", f"stable is 0, ratio undefined for canary {_fmt(canary)}"
                )
            return Judgement(
                "fail", f"canary {_fmt(canary)} > {_fmt(ratio)} x stable {_fmt(stable)}"
            )
        passed.append(f"canary {_fmt(canary)} <= {_fmt(ratio)} x stable {_fmt(stable)}")
    return Judgement("pass", "; ".join(passed))


def _threshold_text(value: float, low: float | None, high: float | None) -> str:
    parts = []
    if low is not None:
        parts.append(f"min {_fmt(low)}")
    if high is not None:
        parts.append(f"max {_fmt(high)}")
    return f"canary {_fmt(value)} within " + ", ".join(parts)
