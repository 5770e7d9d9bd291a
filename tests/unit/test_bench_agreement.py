"""The benchmark's fast path decides exactly as the engine does, look by look.

`bench/judge` runs the sequential judge over thousands of releases at once;
its numbers only mean something if they are the engine's numbers. Here the
same simulated counters are fed, look by look, to
`controller.engine.sequential.judge_counts` (as `Measurement`s, the way the
runtime hands them over) and the first failing look must be the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bench.judge.judges import sequential
from bench.judge.scenarios import LATENCY_BOUNDS, Counters, Setting, simulate
from controller.api.spec import Analysis
from controller.api.status import Evidence
from controller.engine.observations import Measurement, TrackCounts
from controller.engine.sequential import judge_counts

T0 = datetime(2026, 3, 1, tzinfo=UTC)

ANALYSIS = Analysis.model_validate(
    {
        "interval": "30s",
        "prometheus": {"address": "http://prometheus:9090"},
        "falseAlarmRate": 0.01,
        "metrics": [
            {
                "name": "errors",
                "errors": "errors{track='{{track}}'}",
                "requests": "requests{track='{{track}}'}",
                "compare": {"maxRatio": 1.5},
            },
            {
                "name": "latency",
                "latency": {"buckets": "buckets{track='{{track}}'}", "quantile": 0.99},
                "compare": {"maxRatio": 2},
            },
        ],
    }
)


def _buckets(total: float, above: dict[float, float]) -> tuple[tuple[float, float], ...]:
    return (*((le, total - a) for le, a in sorted(above.items())), (float("inf"), total))


def _engine_fail_times(c: Counters) -> list[float]:
    """Each run through the engine's judge, look by look; the first 'fail' (or inf)."""
    canary_requests = c.reads(c.canary_requests)
    stable_requests = c.reads(c.stable_requests, canary=False)
    canary_errors, stable_errors = c.reads(c.canary_errors), c.reads(c.stable_errors, False)
    canary_slow, stable_slow = c.reads(c.canary_slow), c.reads(c.stable_slow, canary=False)
    errors_metric, latency_metric = ANALYSIS.metrics
    out = []
    for r in range(c.runs):
        bound = LATENCY_BOUNDS[c.bound[r]]
        evidence: dict[str, Evidence | None] = {"errors": None, "latency": None}
        failed = np.inf
        for j, seconds in enumerate(c.look_times):
            now = T0 + timedelta(seconds=float(seconds))
            errors = Measurement(
                "errors",
                None,
                None,
                "errors",
                window_start=T0,
                canary_counts=TrackCounts(canary_requests[r, j], canary_errors[r, j]),
                stable_counts=TrackCounts(stable_requests[r, j], stable_errors[r, j]),
            )
            if j == 0:  # the stable's whole first histogram: the judge picks its bound here
                above = dict(zip(LATENCY_BOUNDS, c.first_stable_above[r], strict=True))
            else:
                above = {bound: stable_slow[r, j]}
            latency = Measurement(
                "latency",
                None,
                None,
                "buckets",
                window_start=T0,
                canary_counts=TrackCounts(
                    canary_requests[r, j],
                    buckets=_buckets(canary_requests[r, j], {bound: canary_slow[r, j]}),
                ),
                stable_counts=TrackCounts(
                    stable_requests[r, j], buckets=_buckets(stable_requests[r, j], above)
                ),
            )
            verdicts = []
            for metric, measured in ((errors_metric, errors), (latency_metric, latency)):
                judged = judge_counts(metric, ANALYSIS, measured, evidence[metric.name], now)
                evidence[metric.name] = judged.evidence
                verdicts.append(judged.verdict)
            if j == 0:
                assert evidence["latency"] is not None and evidence["latency"].bound == bound
            if "fail" in verdicts:
                failed = float(seconds)
                break
        out.append(failed)
    return out


@pytest.mark.parametrize(
    ("rps", "effect", "nuisance"),
    [
        (100, "errors_x2", "none"),
        (10, "errors_x10", "none"),
        (10, "latency_+25%", "none"),
        (100, "none", "spiking_scrape"),
        (30, "errors_x1.5", "missing_scrape"),
    ],
)
def test_fast_path_fails_at_the_same_look_as_the_engine(
    rps: int, effect: str, nuisance: str
) -> None:
    setting = Setting(rps, "swing", effect, nuisance, horizon_s=3 * 3600)  # type: ignore[arg-type]
    counters = simulate(setting, runs=4, seed=rps)
    fast = sequential(counters)
    engine = _engine_fail_times(counters)
    assert list(fast) == engine
    if effect != "none":
        assert np.isfinite(fast).any(), "the scenario should make the judge decide"
