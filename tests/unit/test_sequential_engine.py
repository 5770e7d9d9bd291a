"""The sequential judge inside the engine: on-call stories over simulated counters.

The release runs on the in-memory cluster of controller/replay with its
metrics read, through `measure`, from simulated Prometheus counters
(tests/unit/counters.py): requests, errors and a latency histogram per track.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.adapters.ports import MetricsSource
from controller.api.spec import CanaryReleaseSpec
from controller.engine.actions import RecordEvent
from controller.engine.observations import Measurement, TrackCounts
from controller.engine.sequential import fail_level, judge_counts
from controller.replay.world import SimulatedWorld
from tests.unit.counters import SimulatedCounters, TrackRates, step_at

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SEL = 'namespace="{{namespace}}",track="{{track}}"'
ERRORS = {
    "name": "errors",
    "errors": f"sum(increase(http_request_errors_total{{{SEL}}}[{{{{window}}}}]))",
    "requests": f"sum(increase(http_requests_total{{{SEL}}}[{{{{window}}}}]))",
    "compare": {"maxRatio": 1.5},
}
LATENCY = {
    "name": "latency",
    "latency": {
        "buckets": f"sum by (le) (increase(http_request_duration_seconds_bucket{{{SEL}}}"
        "[{{window}}]))",
        "quantile": 0.99,
    },
    "compare": {"maxRatio": 2},
}


def spec(*metrics: dict[str, Any], pause: str = "1h", **analysis: Any) -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "app"},
            "release": {"tag": "v2", "image": "registry.example.com/app:{tag}"},
            "steps": [{"setWeight": 10}, {"pause": {"duration": pause}}, {"setWeight": 100}],
            "analysis": {
                "interval": "30s",
                "prometheus": {"address": "http://prometheus:9090"},
                "metrics": list(metrics or (ERRORS, LATENCY)),
                **analysis,
            },
        }
    )


@dataclass(kw_only=True)
class CounterWorld(SimulatedWorld):
    counters: SimulatedCounters

    def metrics_source(self) -> MetricsSource:
        return self.counters


def run(
    release: CanaryReleaseSpec,
    canary: TrackRates,
    stable: TrackRates,
    hours: float = 2,
    **counters: Any,
) -> CounterWorld:
    seconds = int(hours * 3600) + 120
    source = SimulatedCounters(T0, seconds, {"canary": canary, "stable": stable}, **counters)
    world = CounterWorld(spec=release, start=T0, counters=source)
    world.run(until=timedelta(hours=hours), every=timedelta(seconds=10))
    return world


def first(world: CounterWorld, phase: str) -> datetime:
    return next(t for t, status, *_ in world.log if status.phase == phase)


def test_a_good_canary_passes_and_is_promoted_after_the_pause() -> None:
    world = run(spec(), TrackRates(10), TrackRates(90))
    assert world.status.phase == "Succeeded"
    promoting = next(s for _, s, *_ in world.log if s.phase == "Promoting")
    assert {m.name: m.verdict for m in promoting.metrics} == {"errors": "pass", "latency": "pass"}
    reason = promoting.metrics[0].reason
    assert "shown not 1.5x stable worse" in reason and "e-value" in reason
    assert "canary errors" in reason and "x stable's rate" in reason


def test_a_regression_rolls_back_naming_the_ratio_and_the_evidence() -> None:
    regression = T0 + timedelta(minutes=20)
    canary = TrackRates(10, error_ratio=step_at(1200, 0.01, 0.05))
    world = run(spec(), canary, TrackRates(90))
    assert world.status.phase == "RolledBack" and world.status.reason == "MetricBreach"
    message = world.status.message or ""
    assert "metric errors" in message and "shown worse than 1.5x stable" in message
    assert "e-value" in message and ">= 400" in message  # 2 / (0.01 / 2 tests)
    assert timedelta(0) < first(world, "RolledBack") - regression <= timedelta(minutes=5)


def test_a_latency_regression_rolls_back_on_the_tail_share() -> None:
    canary = TrackRates(10, latency=step_at(600, 0.1, 0.13))
    world = run(spec(), canary, TrackRates(90))
    assert world.status.phase == "RolledBack"
    assert "metric latency" in (world.status.message or "")
    assert "slow requests" in (world.status.message or "")
    assert "p99 canary" in (world.status.message or "")


def test_a_fault_shared_by_both_tracks_is_not_the_canary_s_fault() -> None:
    fault = step_at(1800, 0.01, 0.2)
    world = run(spec(ERRORS), TrackRates(10, fault), TrackRates(90, fault))
    assert "RolledBack" not in {s.phase for _, s, *_ in world.log}
    assert world.status.phase == "Succeeded"


def test_an_absolute_bound_catches_what_both_tracks_do_together() -> None:
    bounded = {**ERRORS, "threshold": {"max": 0.05}}
    fault = step_at(1800, 0.01, 0.2)
    world = run(spec(bounded), TrackRates(10, fault), TrackRates(90, fault))
    assert world.status.phase == "RolledBack"
    assert "shown above max 0.05" in (world.status.message or "")


def test_the_daily_swing_does_not_fool_it() -> None:
    swing = lambda t: 1 + 0.8 * __import__("math").sin(t / 3000)  # noqa: E731
    canary = TrackRates(lambda t: 10 * swing(t), error_ratio=lambda t: 0.01 * swing(t))
    stable = TrackRates(lambda t: 90 * swing(t), error_ratio=lambda t: 0.01 * swing(t))
    world = run(spec(pause="6h"), canary, stable, hours=6.5)
    assert world.status.phase == "Succeeded"


@pytest.mark.parametrize(
    ("choice", "phase", "reason"),
    [("hold", "Paused", "AwaitingAnalysis"), ("promote", "Succeeded", None),
     ("rollback", "RolledBack", "AnalysisInconclusive")],
)  # fmt: skip
def test_at_the_end_of_the_window_inconclusive_is_the_user_s_choice(
    choice: str, phase: str, reason: str | None
) -> None:
    """0.2 requests/s to the canary cannot show much in 10 minutes: inconclusive at the end."""
    release = spec(ERRORS, pause="10m", onInconclusive=choice)
    world = run(release, TrackRates(0.2), TrackRates(1.8), hours=0.5)
    assert world.status.phase == phase
    assert world.status.reason == reason
    inconclusive = [s for _, s, *_ in world.log if s.metrics]
    assert inconclusive[0].metrics[0].verdict == "inconclusive"
    assert "RolledBack" not in {s.phase for _, s, *_ in world.log[: len(world.log) // 3]}
    if choice == "rollback":
        assert "onInconclusive: rollback" in (world.status.message or "")
    if choice == "promote":
        events = [
            a.message for *_, acts, _ in world.log for a in acts if isinstance(a, RecordEvent)
        ]
        assert any("onInconclusive: promote" in e for e in events)


def test_an_unreachable_prometheus_holds_and_keeps_the_evidence() -> None:
    down = lambda at: T0 + timedelta(minutes=10) <= at < T0 + timedelta(minutes=20)  # noqa: E731
    world = run(spec(pause="30m"), TrackRates(10), TrackRates(90), hours=1, down=down)
    during = next(s for t, s, *_ in world.log if t == T0 + timedelta(minutes=15))
    before = next(s for t, s, *_ in world.log if t == T0 + timedelta(minutes=9, seconds=50))
    assert during.metrics[0].verdict == "inconclusive"
    assert "Prometheus unreachable" in during.metrics[0].reason
    assert during.metrics[0].evidence == before.metrics[0].evidence
    assert world.status.phase == "Succeeded"


def test_status_stays_small_over_a_day() -> None:
    world = run(spec(pause="24h"), TrackRates(10), TrackRates(90), hours=24, seed=None)
    sizes = [
        len(json.dumps(s.model_dump(mode="json", by_alias=True, exclude_none=True)))
        for t, s, *_ in world.log
        if t in (T0 + timedelta(hours=1), T0 + timedelta(hours=23))
    ]
    assert sizes[1] <= sizes[0] * 1.1 and sizes[1] < 8000
    evidence = world.status.metrics[0].evidence
    assert evidence is not None and evidence.looks > 2000


def test_alpha_is_shared_by_every_sequential_test() -> None:
    bounded = {**ERRORS, "threshold": {"max": 0.05}}
    release = spec(bounded, LATENCY, falseAlarmRate=0.03)
    assert release.analysis is not None
    assert fail_level(release.analysis) == pytest.approx(0.01)  # 3 'fail' tests


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"query": "up"}, "exactly one of query, errors"),
        ({"requests": None}, "errors and requests go together"),
        ({"compare": {"maxRatio": 0.9}}, "must be > 1"),
        ({"threshold": {"min": 0.1}}, "threshold.max only"),
        ({"threshold": {"max": 2}}, "error ratio in \\(0, 1\\)"),
    ],
)
def test_invalid_counter_metrics_name_the_problem(patch: dict[str, Any], message: str) -> None:
    metric = {k: v for k, v in {**ERRORS, **patch}.items() if v is not None}
    with pytest.raises(ValidationError, match=message):
        spec(metric)


def measurement(canary: tuple[float, float], stable: tuple[float, float] | None) -> Measurement:
    """(errors, requests) per track, cumulative since the release start."""
    return Measurement(
        "errors",
        None,
        None,
        "q",
        window_start=T0,
        canary_counts=TrackCounts(canary[1], canary[0]),
        stable_counts=None if stable is None else TrackCounts(stable[1], stable[0]),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    dropped=st.integers(1, 118),
    ratio=st.sampled_from([1.0, 2.0]),
)
def test_a_look_with_no_data_changes_no_verdict(seed: int, dropped: int, ratio: float) -> None:
    """Counters are cumulative: a look that returns nothing (an empty or missing scrape at
    that instant) only means the next look counts two intervals at once."""
    rng = np.random.default_rng(seed)
    release = spec(ERRORS)
    assert release.analysis is not None
    metric, analysis = release.analysis.metrics[0], release.analysis
    cum = np.zeros(4)
    clean = missing = None
    verdicts: dict[str, list[str]] = {"clean": [], "missing": []}
    for look in range(120):
        cum += [rng.poisson(10 * 30 * 0.01 * ratio), 300, rng.poisson(90 * 30 * 0.01), 2700]
        now = T0 + timedelta(seconds=30 * (look + 1))
        measured = measurement((cum[0], cum[1]), (cum[2], cum[3]))
        judged = judge_counts(metric, analysis, measured, clean, now)
        clean = judged.evidence
        verdicts["clean"].append(judged.verdict)
        empty = Measurement("errors", None, None, "q", window_start=T0)
        judged = judge_counts(
            metric, analysis, empty if look == dropped else measured, missing, now
        )
        missing = judged.evidence
        verdicts["missing"].append(judged.verdict)
    assert verdicts["clean"][-1] == verdicts["missing"][-1]
    assert ("fail" in verdicts["clean"]) == ("fail" in verdicts["missing"])
