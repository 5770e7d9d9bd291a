"""The sequential judge and replay against a real Prometheus with backfilled history.

A day of traffic for both tracks (with a daily swing) is backfilled; the
canary breaks at a known time. Replay runs the release on the real engine
over that history and must report the rollback right after the incident,
and nothing before it. The benchmark's fast path must agree with the
engine reading the same counters through Prometheus.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from scipy.stats import norm

from bench.judge.scenarios import Setting
from bench.judge.through_prometheus import check
from controller.adapters.prometheus import PrometheusSource
from controller.api.spec import CanaryReleaseSpec
from controller.judge import normalise, parse_le, quantile
from controller.replay.replaying import replay
from devenv.backfill import Series, counter_series, request_series
from devenv.prometheus import PrometheusServer
from tests.fixtures_servers import BackfillFactory
from tests.replay_releases import SEL, errors_metric, web_release

DAY = datetime(2024, 3, 5, tzinfo=UTC)
START, END = DAY.timestamp(), DAY.timestamp() + 24 * 3600
INCIDENT = DAY + timedelta(hours=13)
STEP = 15.0
BOUNDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0)

RELEASE = web_release(
    [
        errors_metric(threshold={"max": 0.2}),
        {
            "name": "latency",
            "latency": {
                "buckets": "sum by (le) (increase("
                f"http_request_duration_seconds_bucket_total{{{SEL}}}[{{{{window}}}}]))"
            },
            "compare": {"maxRatio": 2},
        },
    ],
    pause="24h",
)


def _swing(base: float) -> Callable[[float], float]:
    """Requests/s with a +-80% daily swing: the judge must not care."""
    return lambda t: base * (1 + 0.8 * math.sin(2 * math.pi * (t - START) / 86400))


def _after_incident(before: float, after: float) -> Callable[[float], float]:
    incident = INCIDENT.timestamp()
    return lambda t: after if t >= incident else before


def _histogram(
    track: str, rps: Callable[[float], float], median: Callable[[float], float]
) -> list[Series]:
    """Latency buckets as counters: log-normal latencies with this median."""
    labels = {"namespace": "shop", "app": "web", "track": track}

    def share_below(le: float) -> Callable[[float], float]:
        return lambda t: rps(t) * float(norm.cdf((math.log(le) - math.log(median(t))) / 0.25))

    out = [
        counter_series(
            "http_request_duration_seconds_bucket",
            {**labels, "le": f"{le:g}"},
            START,
            END,
            STEP,
            share_below(le),
        )
        for le in BOUNDS
    ]
    out.append(
        counter_series(
            "http_request_duration_seconds_bucket", {**labels, "le": "+Inf"}, START, END, STEP, rps
        )
    )
    return out


def _day(
    *, canary_errors: Callable[[float], float], canary_latency: Callable[[float], float]
) -> list[Series]:
    canary_rps, stable_rps = _swing(10.0), _swing(90.0)
    return [
        *request_series(
            "shop", "web", "stable", start=START, end=END, step_s=STEP,
            rps=stable_rps, error_ratio=lambda _t: 0.01,
        ),
        *request_series(
            "shop", "web", "canary", start=START, end=END, step_s=STEP,
            rps=canary_rps, error_ratio=canary_errors,
        ),
        *_histogram("stable", stable_rps, lambda _t: 0.1),
        *_histogram("canary", canary_rps, canary_latency),
    ]  # fmt: skip


def _replay(server: PrometheusServer, start: datetime, hours: float) -> tuple[str, datetime | None]:
    spec = CanaryReleaseSpec.model_validate(RELEASE["spec"])
    source = PrometheusSource(server.url, timeout_s=30)
    try:
        timeline = replay(
            spec,
            source,
            start=start,
            end=start + timedelta(hours=hours),
            every=timedelta(minutes=1),
            namespace="shop",
            name="web",
        )
    finally:
        source.close()
    return (timeline.final.message or "", timeline.decided_at)


def test_replay_reports_the_rollback_right_after_a_known_error_regression(
    backfilled_prometheus: BackfillFactory,
) -> None:
    server = backfilled_prometheus(
        _day(
            canary_errors=_after_incident(0.01, 0.05),
            canary_latency=lambda _t: 0.1,
        )
    )
    message, decided = _replay(server, DAY + timedelta(minutes=30), hours=23)
    assert decided is not None, "replay found no rollback"
    assert INCIDENT < decided <= INCIDENT + timedelta(minutes=5)
    assert "metric errors" in message and "shown worse than 1.5x stable" in message


def test_replay_reports_a_latency_regression_and_nothing_on_a_good_day(
    backfilled_prometheus: BackfillFactory,
) -> None:
    server = backfilled_prometheus(
        _day(
            canary_errors=lambda _t: 0.01,
            canary_latency=_after_incident(0.1, 0.14),
        )
    )
    message, decided = _replay(server, DAY + timedelta(hours=6), hours=12)
    assert decided is not None and INCIDENT < decided <= INCIDENT + timedelta(minutes=5)
    assert "metric latency" in message
    # the same history before the incident: the release is promoted at the end of its pause
    spec = CanaryReleaseSpec.model_validate(
        {**RELEASE["spec"], "steps": [{"setWeight": 10}, {"pause": {"duration": "2h"}}]}  # type: ignore[dict-item]
    )
    source = PrometheusSource(server.url, timeout_s=30)
    good = replay(
        spec,
        source,
        start=DAY + timedelta(hours=1),
        end=DAY + timedelta(hours=4),
        every=timedelta(minutes=1),
        namespace="shop",
        name="web",
    )
    source.close()
    assert good.outcome == "Succeeded", good.final.message
    assert all(m.verdict == "pass" for m in good.looks[-1].metrics)


def test_replay_command_prints_the_timeline_as_json(
    backfilled_prometheus: BackfillFactory, tmp_path: pathlib.Path
) -> None:
    server = backfilled_prometheus(
        _day(canary_errors=_after_incident(0.01, 0.5), canary_latency=lambda _t: 0.1)
    )
    release = tmp_path / "release.yaml"
    release.write_text(yaml.safe_dump(RELEASE))
    start = (INCIDENT - timedelta(minutes=20)).isoformat()
    done = subprocess.run(
        [sys.executable, "-m", "controller", "replay", "-f", str(release), "--from", start,
         "--for", "1h", "--prometheus", server.url, "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"]["phase"] == "RolledBack"
    assert result["outcome"]["reason"] == "MetricBreach"
    rolled = datetime.fromisoformat(result["outcome"]["at"])
    # three or four looks, a minute apart here: the largest two-look burst is set aside, and
    # the evidence first climbs out of the deficit 20 good minutes left
    assert INCIDENT < rolled <= INCIDENT + timedelta(minutes=5)
    looks = result["timeline"]
    assert looks[0]["metrics"][0]["verdict"] in ("inconclusive", "pass")
    assert looks[-1]["metrics"][0]["verdict"] == "fail"
    assert "e-value" in looks[-1]["metrics"][0]["reason"]
    table = subprocess.run(
        [sys.executable, "-m", "controller", "replay", "-f", str(release), "--from", start,
         "--for", "1h", "--prometheus", server.url],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert table.returncode == 0 and "would have rolled back at" in table.stdout


def test_bucket_quantiles_match_prometheus_histogram_quantile(
    backfilled_prometheus: BackfillFactory,
) -> None:
    server = backfilled_prometheus(
        _day(canary_errors=lambda _t: 0.01, canary_latency=_after_incident(0.1, 0.2))
    )
    at = INCIDENT.timestamp() + 1800
    selector = 'namespace="shop",track="canary"'
    buckets_query = (
        f"sum by (le) (increase(http_request_duration_seconds_bucket_total{{{selector}}}[2h]))"
    )
    source = PrometheusSource(server.url)
    vector = source.query_vector(buckets_query, datetime.fromtimestamp(at, UTC))
    source.close()
    buckets = normalise((parse_le(labels["le"]), v) for labels, v in vector)
    for q in (0.5, 0.9, 0.99):
        expected = server.query_value(f"histogram_quantile({q}, {buckets_query})", at)
        assert quantile(buckets, q) == pytest.approx(expected, rel=1e-9)


def test_the_benchmark_fast_path_decides_as_the_engine_through_prometheus(
    tmp_path: pathlib.Path,
) -> None:
    subset = (
        (Setting(100, "swing", "errors_x2", horizon_s=3600), 2),
        (Setting(10, "flat", "latency_+25%", horizon_s=3600), 2),
        (Setting(30, "swing", "errors_x5", "missing_scrape", horizon_s=3600), 2),
        (Setting(100, "flat", horizon_s=1800), 1),
    )
    results = check(subset, tmp_path / "prometheus")
    assert [(r.fast_path_s, r.through_prometheus_s) for r in results if not r.agrees] == []
    assert sum(r.through_prometheus_s is not None for r in results) >= 5
