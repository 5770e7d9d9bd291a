"""The fast path checked end to end: the same counters through a real Prometheus.

`python -m bench.judge.through_prometheus` takes a few simulated releases
(bench/judge/scenarios.py), writes their counters as TSDB blocks of a real
Prometheus (promtool backfill, 15-second samples, a missing scrape left
out), replays each release with `controller.replay` (the real engine,
`PrometheusSource`, PromQL `increase()` with its extrapolation) and compares
the rollback time with the fast path's (bench/judge/judges.py). They must be
equal; the results go to bench/results/judge-prometheus.json.

A spiking scrape is not part of this check: it is a counter that goes down,
which Prometheus reads as a reset (that reading is what the fast path
models), but promtool refuses to backfill it.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from bench.judge.judges import sequential
from bench.judge.scenarios import LATENCY_BOUNDS, SCRAPE_S, Counters, Setting, simulate
from controller.adapters.prometheus import PrometheusSource
from controller.api.spec import CanaryReleaseSpec
from controller.replay.replaying import replay
from devenv.backfill import Series, openmetrics
from devenv.prometheus import PrometheusServer

START = datetime(2024, 1, 1, tzinfo=UTC)
RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"

SELECTOR = 'namespace="{{namespace}}",track="{{track}}"'
SPEC = {
    "targetRef": {"name": "web"},
    "release": {"tag": "v2", "image": "registry.example.com/web:{tag}"},
    "steps": [{"setWeight": 10}, {"pause": {"duration": "24h"}}, {"setWeight": 100}],
    "analysis": {
        "interval": f"{SCRAPE_S}s",
        "prometheus": {"address": "http://prometheus:9090"},
        "falseAlarmRate": 0.01,
        "metrics": [
            {
                "name": "errors",
                "errors": f"sum(increase(http_request_errors_total{{{SELECTOR}}}[{{{{window}}}}]))",
                "requests": f"sum(increase(http_requests_total{{{SELECTOR}}}[{{{{window}}}}]))",
                "compare": {"maxRatio": 1.5},
            },
            {
                "name": "latency",
                "latency": {
                    "buckets": "sum by (le) (increase("
                    f"http_request_duration_seconds_bucket_total{{{SELECTOR}}}[{{{{window}}}}]))",
                    "quantile": 0.99,
                },
                "compare": {"maxRatio": 2},
            },
        ],
    },
}
"""The benchmark's sequential judge as a CanaryRelease (bench/judge/judges.py)."""

SUBSET = (
    (Setting(100, "swing", "errors_x2", horizon_s=2 * 3600), 4),
    (Setting(10, "flat", "errors_x10", horizon_s=2 * 3600), 4),
    (Setting(100, "flat", "latency_+25%", horizon_s=2 * 3600), 3),
    (Setting(30, "swing", "errors_x1.5", "missing_scrape", horizon_s=2 * 3600), 3),
    (Setting(100, "swing", "none", "missing_scrape", horizon_s=3600), 2),
    (Setting(1000, "flat", horizon_s=3600), 1),
)
"""Settings and releases per setting: regressions to detect, and releases that must not
roll back; `bench.judge` runs them for 24 hours, here a few hours keep it to seconds."""


@dataclass(frozen=True)
class Agreement:
    rps: float
    traffic: str
    effect: str
    nuisance: str
    run: int
    fast_path_s: float | None
    through_prometheus_s: float | None

    @property
    def agrees(self) -> bool:
        return self.fast_path_s == self.through_prometheus_s


def _samples(increments: np.ndarray, skip: int) -> list[tuple[float, float]]:
    """Counter samples at START, START+15s, ...: 0 first, sample `skip` left out (-1: none)."""
    values = np.concatenate([[0.0], np.cumsum(increments)])
    t0 = START.timestamp()
    return [
        (t0 + k * SCRAPE_S, float(v)) for k, v in enumerate(values) if skip < 0 or k != skip + 1
    ]


def _buckets(
    requests: np.ndarray, slow: np.ndarray, bound: int, first_above: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-scrape increments of every `le` bucket, consistent with the slow counts at `bound`.

    The judge reads the stable's whole histogram once (the first scrape) and
    then only the bound it chose; the other buckets are filled in monotone
    in time and in `le`, keeping the first scrape's histogram exact.
    """
    total = np.cumsum(requests)
    at_bound = total - np.cumsum(slow)
    out = {}
    for i, le in enumerate(LATENCY_BOUNDS):
        cumulative = at_bound + (first_above[bound] - first_above[i])
        out[f"{le:g}"] = np.diff(np.concatenate([[0.0], cumulative]))
    out["+Inf"] = requests
    return out


def series_for(c: Counters, run: int, namespace: str) -> Iterator[Series]:
    """One simulated release's counters as Prometheus series, labelled by `namespace`."""
    for track in ("canary", "stable"):
        skip = int(c.missing[run]) if track == "canary" else -1
        labels = {"namespace": namespace, "app": "web", "track": track}
        requests = getattr(c, f"{track}_requests")[run]
        errors = getattr(c, f"{track}_errors")[run]
        yield Series("http_requests", labels, _samples(requests, skip))
        yield Series("http_request_errors", labels, _samples(errors, skip))
        first = c.first_stable_above[run] if track == "stable" else np.zeros(len(LATENCY_BOUNDS))
        slow = getattr(c, f"{track}_slow")[run]
        for le, increments in _buckets(requests, slow, int(c.bound[run]), first).items():
            yield Series(
                "http_request_duration_seconds_bucket",
                {**labels, "le": le},
                _samples(increments, skip),
            )


def check(subset: tuple[tuple[Setting, int], ...], work: pathlib.Path) -> list[Agreement]:
    """Backfill every release of the subset into one Prometheus and replay each."""
    runs: list[tuple[Setting, int, Counters, float]] = []
    series: list[Series] = []
    for index, (setting, count) in enumerate(subset):
        counters = simulate(setting, count, seed=100 + index)
        fast = sequential(counters)
        for run in range(count):
            series.extend(series_for(counters, run, f"r{index}-{run}"))
            runs.append((setting, run, counters, float(fast[run])))
    spec = CanaryReleaseSpec.model_validate(SPEC)
    server = PrometheusServer.start_backfilled(openmetrics(series), work)
    out = []
    try:
        source = PrometheusSource(server.url, timeout_s=30)
        for index, (setting, count) in enumerate(subset):
            for run in range(count):
                _, _, _, fast = next(r for r in runs if r[0] is setting and r[1] == run)
                timeline = replay(
                    spec,
                    source,
                    start=START,
                    end=START + timedelta(seconds=setting.horizon_s),
                    every=timedelta(seconds=SCRAPE_S),
                    namespace=f"r{index}-{run}",
                    name="web",
                )
                decided = timeline.decided_at if timeline.outcome == "RolledBack" else None
                engine = (decided - START).total_seconds() if decided else None
                out.append(
                    Agreement(
                        setting.rps,
                        setting.traffic,
                        setting.effect,
                        setting.nuisance,
                        run,
                        None if math.isinf(fast) else fast,
                        engine,
                    )
                )
        source.close()
    finally:
        server.stop()
    return out


def _when(seconds: float | None) -> str:
    return "no rollback" if seconds is None else f"rollback at {seconds:.0f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.judge.through_prometheus")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "judge-prometheus.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="judge-prometheus-") as work:
        results = check(SUBSET, pathlib.Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps([{**asdict(r), "agrees": r.agrees} for r in results], indent=1) + "\n"
    )
    for r in results:
        mark = "ok " if r.agrees else "DIFFERENT"
        print(
            f"{mark} {r.rps:>5g} rps {r.traffic:5} {r.effect:13} {r.nuisance:14} run {r.run}: "
            f"fast path {_when(r.fast_path_s)}, through Prometheus {_when(r.through_prometheus_s)}"
        )
    print(f"wrote {args.out}")
    return 0 if all(r.agrees for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
