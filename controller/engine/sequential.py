"""Judging counter metrics (errors/requests, latency) with the sequential tests.

Each analysis reads, per track, the counters' increase since the window
start. The difference from the previous read is one interval's counts; it is
folded into the evidence kept in the metric's status, so the evidence runs
across steps and weight changes for the whole release while status stays a
few dozen numbers. See docs/judge.md for the statistics.

Verdicts:

* ``fail``: a 'worse' or 'above the bound' test rejected its null (roll back);
* ``pass``: every 'not worse' / 'below the bound' test rejected its null;
* ``inconclusive``: not enough evidence yet. Never a rollback on its own; at
  the end of the last step `analysis.onInconclusive` decides.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from controller.api.spec import Analysis, Metric
from controller.api.status import TEST_LABELS, Evidence, OneSidedTest, Tally, Verdict
from controller.engine.judging import Judgement
from controller.engine.observations import Measurement, TrackCounts
from controller.judge import (
    Design,
    Increment,
    Running,
    above,
    begin,
    below,
    bound_at_or_above,
    bound_at_quantile,
    count_above,
    decision_log_e,
    fold,
    high_water,
    not_worse_than,
    quantile,
    rejects,
    worse_than,
)
from controller.judge import Tally as Counts
from controller.judge import increment as counts_since

RECENT_HALF_LIFE = timedelta(minutes=10)
"""How fast the 'lately' ratio in a reason forgets (display only: verdicts use all evidence)."""

SAME_WINDOW = timedelta(seconds=1)
"""Window starts are rendered in whole seconds: closer than this is the same window."""

FAIL_TESTS = ("worse", "above")


@dataclass(frozen=True)
class _Reading:
    """The current window's cumulative counts, as the tests consume them."""

    canary: Counts
    stable: Counts | None
    canary_over_max: float | None
    bound: float | None
    canary_value: float | None
    stable_value: float | None


def fail_level(analysis: Analysis) -> float:
    """Each 'fail' test's share of the release's false-alarm rate (Bonferroni)."""
    tests = sum(m.sequential_tests() for m in analysis.metrics)
    return analysis.false_alarm_rate / max(1, tests)


def designs(metric: Metric, analysis: Analysis) -> dict[str, Design]:
    """The one-sided tests a metric runs, by name; fixed for the whole release."""
    fail, passing = fail_level(analysis), analysis.false_alarm_rate
    out: dict[str, Design] = {}
    if metric.compare is not None:
        out["worse"] = worse_than(metric.compare.max_ratio, fail)
        out["notWorse"] = not_worse_than(metric.compare.max_ratio, passing)
    if metric.threshold is not None and metric.threshold.max is not None:
        bound = metric.threshold.max if metric.latency is None else 1.0 - metric.latency.quantile
        out["above"] = above(bound, fail)
        out["below"] = below(bound, passing)
    return out


def judge_counts(
    metric: Metric,
    analysis: Analysis,
    measured: Measurement,
    previous: Evidence | None,
    now: datetime,
) -> Judgement:
    if measured.unreachable:
        reason = f"Prometheus unreachable: {measured.error or 'no answer'}"
        return Judgement("inconclusive", reason, evidence=previous)
    if measured.error:
        return Judgement("error", f"query failed: {measured.error}", evidence=previous)
    canary, stable = measured.canary_counts, measured.stable_counts
    if canary is None or canary.requests is None or measured.window_start is None:
        if analysis.no_data == "fail":
            return Judgement("fail", "no data for the canary track (noData: fail)")
        reason = "no data for the canary track yet (noData: hold)"
        return Judgement("inconclusive", reason, evidence=previous)
    if not _finite_counts(canary) or (stable is not None and not _finite_counts(stable)):
        reason = "a counter read is not a finite number (NaN or +-Inf); this look is skipped"
        return Judgement("inconclusive", reason, evidence=previous)
    reading = _read(metric, canary, stable, previous)
    unjudgeable = _unjudgeable(metric, canary, reading)
    if unjudgeable is not None:
        return Judgement("inconclusive", unjudgeable, evidence=previous)
    evidence = _fold(metric, analysis, reading, measured.window_start, previous, now)
    verdict, reason = _verdict(metric, analysis, evidence, reading)
    return Judgement(verdict, reason, reading.canary_value, reading.stable_value, evidence)


def _finite_counts(counts: TrackCounts) -> bool:
    values = [counts.requests, counts.errors, *(c for _, c in counts.buckets)]
    return all(v is None or math.isfinite(v) for v in values)


def _unjudgeable(metric: Metric, canary: TrackCounts, reading: _Reading) -> str | None:
    """A latency histogram that cannot say how many canary requests are slow: hold."""
    if metric.latency is None or not canary.buckets:
        return None
    if reading.bound is not None and count_above(canary.buckets, reading.bound) is None:
        return (
            f"the canary's histogram has no bucket at the stable's bound {reading.bound:g}s "
            "(different buckets?): cannot count its slow requests"
        )
    if metric.threshold is not None and reading.canary_over_max is None:
        return (
            f"no finite bucket at or above threshold.max {metric.threshold.max:g}s: "
            "cannot tell which requests are slower"
        )
    return None


def _read(
    metric: Metric, canary: TrackCounts, stable: TrackCounts | None, previous: Evidence | None
) -> _Reading:
    if metric.latency is None:
        c = Counts(canary.errors or 0.0, canary.requests or 0.0)
        s = None
        if stable is not None and stable.requests is not None:
            s = Counts(stable.errors or 0.0, stable.requests)
        return _Reading(c, s, None, None, _ratio(c), _ratio(s) if s else None)
    q = metric.latency.quantile
    stable_buckets = stable.buckets if stable is not None and stable.requests is not None else ()
    bound = previous.bound if previous is not None and previous.bound is not None else None
    if bound is None and stable_buckets:
        bound = bound_at_quantile(stable_buckets, q)
    requests = canary.buckets[-1][1] if canary.buckets else 0.0
    c = Counts(_above(canary.buckets, bound), requests)
    s = None
    if stable_buckets and bound is not None:
        s = Counts(_above(stable_buckets, bound), stable_buckets[-1][1])
    over_max = None
    if metric.threshold is not None and metric.threshold.max is not None and canary.buckets:
        limit = bound_at_or_above([le for le, _ in canary.buckets], metric.threshold.max)
        over_max = count_above(canary.buckets, limit) if limit is not None else None
    canary_q = quantile(canary.buckets, q) if canary.buckets else None
    stable_q = quantile(stable_buckets, q) if stable_buckets else None
    return _Reading(c, s, over_max, bound, canary_q, stable_q)


def _above(buckets: tuple[tuple[float, float], ...], bound: float | None) -> float:
    if bound is None:
        return 0.0
    return count_above(buckets, bound) or 0.0


def _ratio(tally: Counts) -> float | None:
    return tally.events / tally.total if tally.total > 0 else None


def _fold(
    metric: Metric,
    analysis: Analysis,
    reading: _Reading,
    window_start: datetime,
    previous: Evidence | None,
    now: datetime,
) -> Evidence:
    """Count what is new since the previous read and fold it into every test."""
    zero = Counts(0.0, 0.0)
    if previous is None:
        # the first read of the release; a latency bound read off this very
        # data must not judge it, so that interval only anchors the counts
        start: str = "anchor" if metric.latency is not None else "fresh"
    elif abs(previous.window_start - window_start) <= SAME_WINDOW:
        start = "anchor" if previous.bound is None and reading.bound is not None else "same"
    elif window_start >= previous.counted_at - SAME_WINDOW:
        start = "fresh"  # a new step: its window holds only data not counted yet
    else:
        start = "anchor"  # a window overlapping counted data (e.g. after a resume)
    base_canary = base_stable = zero
    base_over = 0.0
    if start == "same" and previous is not None:
        base_canary = Counts(previous.canary.events, previous.canary.total)
        base_stable = Counts(previous.stable.events, previous.stable.total)
        base_over = previous.canary_over_max or 0.0
    elif start == "anchor":
        base_canary, base_stable = reading.canary, reading.stable or zero
        base_over = reading.canary_over_max or 0.0
    inc_canary = counts_since(base_canary, reading.canary)
    inc_stable = counts_since(base_stable, reading.stable) if reading.stable else zero
    over = Counts(reading.canary_over_max or 0.0, reading.canary.total)
    inc_over = counts_since(Counts(base_over, base_canary.total), over)

    looks = previous.looks if previous is not None else 0
    counting = start != "anchor"
    looks += counting
    # the interval in seconds into the window (the release): the floors telescope over it
    since = (previous.counted_at - window_start).total_seconds() if previous is not None else 0.0
    until = (now - window_start).total_seconds()
    tests = []
    stored: dict[str, OneSidedTest] = {t.test: t for t in previous.tests} if previous else {}
    for name, design in designs(metric, analysis).items():
        fingerprint = design_fingerprint(design)
        state = _stored_state(stored.get(name), design, fingerprint)
        if counting and name in ("worse", "notWorse") and reading.stable is not None:
            split = Increment(
                inc_canary.events, inc_canary.total, inc_stable.events, inc_stable.total
            )
            state = fold(state, design, split, since, until)
        elif counting and name in ("above", "below"):
            events = inc_canary.events if metric.latency is None else inc_over.events
            state = fold(state, design, Increment(events, inc_canary.total), since, until)
        log_e = float(decision_log_e(state, design))
        tests.append(
            OneSidedTest(
                test=name,
                design=fingerprint,
                e_value=_rounded(math.exp(min(700.0, log_e))),
                needed=_rounded(math.exp(design.log_threshold)),
                log_products=[float(v) for v in state.products],
                recent=[float(v) for v in state.recent],
                largest_burst=[float(v) for v in state.largest],
            )
        )

    counted = previous.counted_canary if previous is not None else Tally()
    expected = previous.expected_canary_events if previous is not None else 0.0
    # the same, fading with a RECENT_HALF_LIFE, so the reason shows what happens now
    fade = 0.5 ** ((until - since) / RECENT_HALF_LIFE.total_seconds())
    recent = previous.recent if previous is not None else Tally()
    recent = Tally(events=recent.events * fade, total=recent.total * fade)
    if reading.stable is not None and inc_stable.total > 0 and inc_canary.total > 0:
        counted = Tally(
            events=counted.events + inc_canary.events, total=counted.total + inc_canary.total
        )
        predicted = inc_stable.events * inc_canary.total / inc_stable.total
        expected += predicted
        recent = Tally(events=recent.events + inc_canary.events, total=recent.total + predicted)
    canary_hw = high_water(base_canary, reading.canary) if start == "same" else reading.canary
    stable_now = reading.stable or zero
    stable_hw = high_water(base_stable, stable_now) if start == "same" else stable_now
    return Evidence(
        window_start=window_start,
        counted_at=now,
        canary=Tally(events=canary_hw.events, total=canary_hw.total),
        stable=Tally(events=stable_hw.events, total=stable_hw.total),
        canary_over_max=None
        if reading.canary_over_max is None
        else max(base_over, reading.canary_over_max),
        bound=reading.bound,
        counted_canary=counted,
        expected_canary_events=_rounded(expected),
        recent=Tally(events=_rounded(recent.events), total=_rounded(recent.total)),
        looks=looks,
        tests=tests,
    )


def design_fingerprint(design: Design) -> str:
    """What a test's evidence is evidence for: its null, alternatives, weights and level."""
    numbers = (design.null, *design.alternatives, *design.weights, design.level)
    text = design.kind + ":" + ",".join(f"{n:.9g}" for n in numbers)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stored_state(stored: OneSidedTest | None, design: Design, fingerprint: str) -> Running:
    """A test's state from status; a fresh one if absent or from another design.

    Evidence gathered against one null or level is no evidence against another:
    lowering `maxRatio` from 4 to 1.5 must not let "not 4x worse" pass as "not
    1.5x worse". (A status written before the fingerprint existed is kept.)
    """
    size = len(design.alternatives)
    if stored is None or len(stored.log_products) != size:
        return begin(design)
    if stored.design and stored.design != fingerprint:
        return begin(design)

    def vector(values: list[float]) -> np.ndarray:
        return np.asarray(values if len(values) == size else [0.0] * size, dtype=np.float64)

    return Running(vector(stored.log_products), vector(stored.recent), vector(stored.largest_burst))


def _rounded(value: float) -> float:
    """Six significant digits: enough to decide, and status does not churn on noise."""
    return float(f"{value:.6g}")


def _verdict(
    metric: Metric, analysis: Analysis, evidence: Evidence, reading: _Reading
) -> tuple[Verdict, str]:
    by_design = designs(metric, analysis)

    def decided(t: OneSidedTest) -> bool:
        design = by_design.get(t.test)
        # `evidence` was folded this look: each test carries this design's fingerprint
        return design is not None and bool(rejects(_stored_state(t, design, t.design), design))

    failed = [t for t in evidence.tests if t.test in FAIL_TESTS and decided(t)]
    passing = [t for t in evidence.tests if t.test not in FAIL_TESTS]
    summary = _summary(metric, evidence, reading)
    if failed:
        return "fail", f"{summary}; {_shown(metric, failed[0])}: fail"
    if passing and all(decided(t) for t in passing):
        shown = "; ".join(_shown(metric, t) for t in passing)
        return "pass", f"{summary}; {shown}: pass"
    pending = ", ".join(
        f"{TEST_LABELS[t.test]} e-value {t.e_value:.3g} (decides at {t.needed:.3g})"
        for t in evidence.tests
    )
    return "inconclusive", f"{summary}; {pending or 'no test configured'}: inconclusive"


def _shown(metric: Metric, test: OneSidedTest) -> str:
    if test.test == "worse":
        what = f"shown worse than {_effect(metric)}"
    elif test.test == "notWorse":
        what = f"shown not {_effect(metric)} worse"
    else:
        what = f"shown {test.test} max {_bound(metric)}"
    return f"{what} (e-value {test.e_value:.3g} >= {test.needed:.3g})"


def _effect(metric: Metric) -> str:
    assert metric.compare is not None
    return f"{metric.compare.max_ratio:g}x stable"


def _bound(metric: Metric) -> str:
    assert metric.threshold is not None and metric.threshold.max is not None
    if metric.latency is not None:
        return f"{metric.threshold.max:g}s"
    return f"{metric.threshold.max:.4g}"


def _summary(metric: Metric, evidence: Evidence, reading: _Reading) -> str:
    """What the data say, in the units a human checks: counts, ratios, quantiles."""
    parts = []
    observed, expected = evidence.counted_canary.events, evidence.expected_canary_events
    if metric.compare is not None:
        if reading.stable is None or (reading.bound is None and metric.latency is not None):
            parts.append("waiting for stable traffic to compare against")
        elif expected > 0:
            kind = "errors" if metric.latency is None else "slow requests"
            lately = evidence.recent
            now = f"{lately.events / lately.total:.2f}x" if lately.total > 0 else "n/a"
            parts.append(
                f"canary {kind} {now} stable's rate lately, {observed / expected:.2f}x over "
                f"the release ({observed:.0f} vs {expected:.1f} expected)"
            )
        else:
            parts.append(f"canary {observed:.0f} events, none expected yet at stable's rate")
    if metric.latency is not None:
        q = f"p{metric.latency.quantile * 100:g}"
        canary_q = _seconds(reading.canary_value)
        stable_q = _seconds(reading.stable_value)
        bound = f", slow = above {reading.bound:g}s" if reading.bound is not None else ""
        parts.append(f"{q} canary {canary_q} vs stable {stable_q}{bound}")
    elif reading.canary_value is not None:
        stable_text = f"{reading.stable_value:.3%}" if reading.stable_value is not None else "n/a"
        canary_text = f"{reading.canary_value:.3%}"
        parts.append(f"error ratio over the release canary {canary_text} vs stable {stable_text}")
    return ", ".join(parts)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}s"
