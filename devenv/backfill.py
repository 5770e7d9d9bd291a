"""Synthetic metric history for backfilled Prometheus servers.

Baseline and anomaly tests need "24 hours of traffic with a known incident at a
known time". Scraping for 24 hours is not an option, so we generate counter
samples from a per-second *rate function*, write them as OpenMetrics text and
let ``promtool`` turn them into TSDB blocks (:func:`devenv.prometheus.backfill`).

:func:`prometheus_increase` re-implements Prometheus 2.x ``increase()``
extrapolation so tests can state expected values honestly instead of with a
loose tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

RateFn = Callable[[float], float]
"""Per-second rate as a function of Unix time (seconds)."""

Sample = tuple[float, float]
"""(Unix seconds, value)."""


@dataclass(frozen=True)
class Series:
    """One counter time series: family name (without ``_total``), labels, samples."""

    family: str
    labels: Mapping[str, str]
    samples: list[Sample] = field(repr=False)

    @property
    def metric_name(self) -> str:
        """The sample name Prometheus stores, e.g. ``http_requests_total``."""
        return f"{self.family}_total"

    def value_at(self, t: float) -> float:
        """The counter's last sampled value at or before ``t`` (what a query sees)."""
        best = math.nan
        for ts, value in self.samples:
            if ts > t:
                break
            best = value
        return best

    def lines(self) -> Iterator[str]:
        """OpenMetrics sample lines for this series."""
        prefix = f"{self.metric_name}{_format_labels(self.labels)}"
        for ts, value in self.samples:
            yield f"{prefix} {_format_number(value)} {_format_number(ts)}"


def _format_number(x: float) -> str:
    """Integers without a trailing ``.0`` (smaller files); otherwise full precision."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _escape(value: str) -> str:
    """Escape a label value per the OpenMetrics text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_labels(labels: Mapping[str, str]) -> str:
    """``{a="b",c="d"}`` in sorted order, or empty."""
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def counter_samples(
    start: float, end: float, step_s: float, rate_fn: RateFn, initial: float = 0.0
) -> list[Sample]:
    """Counter samples every ``step_s`` from ``start`` to ``end`` inclusive.

    The increment over ``(t - step, t]`` is ``rate_fn(t - step/2) * step`` (midpoint
    rule), which is exact for rates that are piecewise constant between sample
    times -- so put anomaly boundaries on the sampling grid.
    """
    if step_s <= 0 or end < start:
        raise ValueError("need step_s > 0 and end >= start")
    count = int((end - start) // step_s) + 1
    samples: list[Sample] = [(start, initial)]
    value = initial
    for k in range(1, count):
        t = start + k * step_s
        rate = rate_fn(t - step_s / 2)
        if rate < 0:
            raise ValueError(f"negative rate {rate} at {t}")
        value += rate * step_s
        samples.append((t, value))
    return samples


def counter_series(
    name: str,
    labels: Mapping[str, str],
    start: float,
    end: float,
    step_s: float,
    rate_fn: RateFn,
    initial: float = 0.0,
) -> Series:
    """A counter series; ``name`` may be given with or without the ``_total`` suffix."""
    family = name.removesuffix("_total")
    return Series(family, dict(labels), counter_samples(start, end, step_s, rate_fn, initial))


def openmetrics(series: Iterable[Series]) -> str:
    """A complete OpenMetrics document (``# TYPE`` per family, ``# EOF`` at the end).

    OpenMetrics requires each family's samples to be contiguous, so series are
    grouped by family here regardless of input order.
    """
    families: dict[str, list[Series]] = {}
    for s in series:
        families.setdefault(s.family, []).append(s)
    out: list[str] = []
    for family, members in families.items():
        out.append(f"# TYPE {family} counter")
        for s in members:
            out.extend(s.lines())
    out.append("# EOF")
    return "\n".join(out) + "\n"


def constant(rate: float) -> RateFn:
    """A constant per-second rate."""
    return lambda _t: rate


def with_step(base: RateFn, extra: float, start: float, end: float) -> RateFn:
    """``base`` plus ``extra`` per second during ``[start, end)``: a known anomaly."""
    return lambda t: base(t) + (extra if start <= t < end else 0.0)


def request_series(
    namespace: str,
    app: str,
    track: str,
    *,
    start: float,
    end: float,
    step_s: float,
    rps: RateFn,
    error_ratio: RateFn,
) -> list[Series]:
    """``http_requests_total`` and ``http_request_errors_total`` for one track.

    Same metric and label names as :class:`devenv.traffic.TrafficSimulator`, so
    queries written against the simulator work on backfilled history too.
    """
    labels = {"namespace": namespace, "app": app, "track": track}
    return [
        counter_series("http_requests", labels, start, end, step_s, rps),
        counter_series(
            "http_request_errors", labels, start, end, step_s, lambda t: rps(t) * error_ratio(t)
        ),
    ]


def prometheus_increase(
    samples: Iterable[Sample], range_start: float, range_end: float
) -> float | None:
    """What Prometheus 2.x returns for ``increase(x[range])`` evaluated at ``range_end``.

    Mirrors ``extrapolatedRate`` in promql/functions.go (v2.42): samples in the
    *closed* window ``[range_start, range_end]`` (Prometheus 3 made it left-open),
    counter resets are compensated, and the result is extrapolated towards the
    window edges when the first/last sample is within 1.1 average intervals of
    them (otherwise by half an interval), but never to before the counter's zero.
    Returns None when fewer than two samples fall in the window (no result).
    """
    start_ms, end_ms = round(range_start * 1000), round(range_end * 1000)
    points = [(round(t * 1000), v) for t, v in samples if start_ms <= round(t * 1000) <= end_ms]
    if len(points) < 2:
        return None
    result = points[-1][1] - points[0][1]
    previous = 0.0
    for _, v in points:
        if v < previous:
            result += previous
        previous = v
    to_start = (points[0][0] - start_ms) / 1000
    to_end = (end_ms - points[-1][0]) / 1000
    sampled = (points[-1][0] - points[0][0]) / 1000
    average = sampled / (len(points) - 1)
    if result > 0 and points[0][1] >= 0:
        to_start = min(to_start, sampled * (points[0][1] / result))
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    return result * (interval / sampled)
