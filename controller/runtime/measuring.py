"""One round of analysis: every metric, both tracks, one evaluation instant.

Shared by the live runtime and replay, so both judge exactly the same queries.
The runtime wraps its source in `Interruptible`, so an analysis already in
flight gives way to a human's command between two queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from controller.adapters.ports import MetricsSource, MetricsUnreachable, QueryRejected
from controller.api.spec import CanaryReleaseSpec, Metric
from controller.api.status import CanaryReleaseStatus
from controller.engine.analysis import analysis_window, release_window
from controller.engine.observations import Measurement, TrackCounts
from controller.engine.queries import TRACKS, range_seconds, render_query
from controller.judge import normalise, parse_le

T = TypeVar("T")


class AnalysisInterrupted(Exception):
    """A command or spec change arrived mid-analysis: answer it first, analyse after."""


class Interruptible:
    """A MetricsSource that checks `interrupted` before each query.

    A slow Prometheus makes each query last up to its timeout times its
    attempts; without this an `abort` sent while an analysis runs would wait
    for every remaining query. With it, it waits for the one in flight.
    """

    def __init__(self, source: MetricsSource, interrupted: Callable[[], bool]) -> None:
        self.source, self.interrupted = source, interrupted

    def _check(self) -> None:
        if self.interrupted():
            raise AnalysisInterrupted("a command or spec change arrived during the analysis")

    def query(self, promql: str, at: datetime) -> float | None:
        self._check()
        return self.source.query(promql, at)

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        self._check()
        return self.source.query_vector(promql, at)


class UntilRefused:
    """A MetricsSource that, once a connection was refused, refuses the rest of the round.

    One Prometheus serves every metric of a round: asking it again for each
    would hold the pass (and the health check after it) for every timeout. A
    query that only timed out says nothing about the next one, so it does not
    count. Wraps one round's source; a new round asks again.
    """

    def __init__(self, source: MetricsSource) -> None:
        self.source = source
        self.refused: MetricsUnreachable | None = None

    def _ask(self, ask: Callable[[], T]) -> T:
        if self.refused is not None:
            raise self.refused
        try:
            return ask()
        except MetricsUnreachable as exc:
            if exc.connection:
                self.refused = exc
            raise

    def query(self, promql: str, at: datetime) -> float | None:
        return self._ask(lambda: self.source.query(promql, at))

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        return self._ask(lambda: self.source.query_vector(promql, at))


def measure(
    source: MetricsSource,
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
    *,
    namespace: str,
    name: str,
    at: datetime,
) -> tuple[Measurement, ...]:
    analysis = spec.analysis
    assert analysis is not None
    window = analysis_window(status, at)
    release = release_window(status, at)
    release_start = at - timedelta(seconds=range_seconds(release, shortest=1))

    def render(query: str, track: str, *, counters: bool = False) -> str:
        return render_query(
            query,
            track=track,
            namespace=namespace,
            name=name,
            target=spec.target_ref.name,
            window=release if counters else window,
            interval=analysis.interval_length(),
            shortest_window=1 if counters else 60,
        )

    def render_counters(query: str, track: str) -> str:
        return render(query, track, counters=True)

    source = UntilRefused(source)
    results = []
    for metric in analysis.metrics:
        shown = render(metric.display_query(), "canary", counters=metric.sequential)
        try:
            if metric.query is not None:
                values = {track: source.query(render(metric.query, track), at) for track in TRACKS}
                results.append(Measurement(metric.name, values["canary"], values["stable"], shown))
                continue
            counts = {
                track: _counts(source, metric, render_counters, track, at) for track in TRACKS
            }
        except MetricsUnreachable as exc:
            results.append(Measurement(metric.name, None, None, shown, str(exc), unreachable=True))
            continue
        except QueryRejected as exc:
            results.append(Measurement(metric.name, None, None, shown, str(exc)))
            continue
        results.append(
            Measurement(
                metric.name,
                None,
                None,
                shown,
                window_start=release_start,
                canary_counts=counts["canary"],
                stable_counts=counts["stable"],
            )
        )
    return tuple(results)


def _counts(
    source: MetricsSource,
    metric: Metric,
    render: Callable[[str, str], str],
    track: str,
    at: datetime,
) -> TrackCounts:
    """Counter increases of one track since the window start, for the sequential judge."""
    if metric.latency is None:
        assert metric.requests is not None and metric.errors is not None
        requests = source.query(render(metric.requests, track), at)
        errors = source.query(render(metric.errors, track), at) if requests is not None else None
        return TrackCounts(requests, errors)
    series = source.query_vector(render(metric.latency.buckets, track), at)
    if not series:
        return TrackCounts(None)
    if any("le" not in labels for labels, _ in series):
        raise QueryRejected(
            f"latency.buckets must return one series per `le` bucket, got labels {series[0][0]}; "
            "wrap it in sum by (le) (...)"
        )
    if any(not math.isfinite(value) for _, value in series):
        return TrackCounts(None)  # a non-finite bucket: no usable answer this look
    buckets = normalise((parse_le(labels["le"]), value) for labels, value in series)
    if not buckets:
        raise QueryRejected('latency.buckets returned no le="+Inf" bucket')
    return TrackCounts(buckets[-1][1], buckets=buckets)
