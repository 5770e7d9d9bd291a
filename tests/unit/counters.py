"""Simulated Prometheus counters for driving the sequential judge through the engine.

Per second and per track, requests and errors are drawn (Poisson, seeded)
or taken at their expected values, and a latency histogram is filled from a
log-normal. Queries are answered like `increase(x[Ns])` would be without
extrapolation: the counter now minus the counter N seconds ago. The query's
counter is recognised by name: `bucket` (histogram, by `le`), `error`, else
requests; its track by `track="canary"`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from scipy.stats import norm

from controller.adapters.ports import MetricsUnreachable

BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)
SIGMA = 0.25

RateFn = Callable[[float], float]
"""A per-second value as a function of seconds since the start."""


def constant(value: float) -> RateFn:
    return lambda _t: value


def step_at(second: float, before: float, after: float) -> RateFn:
    return lambda t: after if t >= second else before


@dataclass
class TrackRates:
    """Requests per second, error ratio and median latency (seconds): numbers or functions."""

    rps: RateFn | float
    error_ratio: RateFn | float = 0.01
    latency: RateFn | float = 0.1


def _at(value: RateFn | float, t: np.ndarray) -> np.ndarray:
    if callable(value):
        return np.array([value(s) for s in t], dtype=float)
    return np.full(len(t), float(value))


@dataclass
class SimulatedCounters:
    """A MetricsSource over `seconds` of simulated traffic from `start`."""

    start: datetime
    seconds: int
    tracks: dict[str, TrackRates]
    seed: int | None = 0
    down: Callable[[datetime], bool] = lambda _at: False
    _cum: dict[str, dict[str, np.ndarray]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed) if self.seed is not None else None
        t = np.arange(self.seconds) + 0.5
        for track, rates in self.tracks.items():
            rps, ratio, median = _at(rates.rps, t), _at(rates.error_ratio, t), _at(rates.latency, t)
            if rng is None:
                requests = rps
                errors = rps * ratio
            else:
                requests = rng.poisson(rps).astype(float)
                errors = rng.binomial(requests.astype(int), ratio).astype(float)
            cdf = norm.cdf((np.log(np.array(BUCKETS))[None, :] - np.log(median)[:, None]) / SIGMA)
            shares = np.diff(
                np.concatenate([np.zeros((len(t), 1)), cdf, np.ones((len(t), 1))], 1), axis=1
            )
            if rng is None:
                per_bucket = requests[:, None] * shares
            else:
                per_bucket = rng.multinomial(requests.astype(np.int64), shares).astype(float)
            cumulative_le = np.cumsum(per_bucket, axis=1)  # per second: <= each bound, then +Inf
            self._cum[track] = {
                "requests": np.concatenate([[0.0], np.cumsum(requests)]),
                "errors": np.concatenate([[0.0], np.cumsum(errors)]),
                "buckets": np.concatenate(
                    [np.zeros((1, len(BUCKETS) + 1)), np.cumsum(cumulative_le, 0)]
                ),
            }

    def _window(self, promql: str, at: datetime) -> tuple[str, int, int]:
        if self.down(at):
            raise MetricsUnreachable("connection refused")
        track = "canary" if 'track="canary"' in promql else "stable"
        match = re.search(r"\[(\d+)s\]", promql)
        assert match, promql
        end = int((at - self.start).total_seconds())
        begin = end - int(match.group(1))
        clamp = lambda s: min(max(s, 0), self.seconds)  # noqa: E731
        return track, clamp(begin), clamp(end)

    def query(self, promql: str, at: datetime) -> float | None:
        track, begin, end = self._window(promql, at)
        if track not in self._cum or end - begin <= 0:
            return None
        kind = "errors" if "error" in promql else "requests"
        series = self._cum[track][kind]
        return float(series[end] - series[begin])

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        track, begin, end = self._window(promql, at)
        if track not in self._cum or end - begin <= 0:
            return []
        counts = self._cum[track]["buckets"][end] - self._cum[track]["buckets"][begin]
        labels = [*(str(b) for b in BUCKETS), "+Inf"]
        return [({"le": le}, float(c)) for le, c in zip(labels, counts, strict=True)]


def lognormal_above(bound: float, median: float) -> float:
    """P(latency > bound) for the simulated log-normal: for stating expectations."""
    return float(1 - norm.cdf((math.log(bound) - math.log(median)) / SIGMA))
