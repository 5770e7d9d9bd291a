"""Measuring the post-promotion metrics: the promoted version is now the stable track."""

from __future__ import annotations

from datetime import datetime

from controller.adapters.ports import MetricsSource, MetricsUnreachable, QueryRejected
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.observations import Measurement
from controller.engine.queries import render_query


def measure_after_promotion(
    source: MetricsSource,
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
    *,
    namespace: str,
    name: str,
    at: datetime,
) -> tuple[Measurement, ...]:
    """Every postPromotion metric with {{track}} = stable, over the time since the promotion."""
    watch, started = spec.post_promotion, status.post_promotion
    assert watch is not None and started is not None
    window = max(at - started.started_at, watch.interval_length())
    results = []
    unreachable: str | None = None
    for metric in watch.metrics:
        assert metric.query is not None, "postPromotion metrics are value queries (validated)"
        promql = render_query(
            metric.query,
            track="stable",
            namespace=namespace,
            name=name,
            target=spec.target_ref.name,
            window=window,
            interval=watch.interval_length(),
        )
        if unreachable is None:
            try:
                value = source.query(promql, at)
            except MetricsUnreachable as exc:
                if not exc.connection:  # this query timed out; the next may answer
                    results.append(Measurement(metric.name, None, None, promql, str(exc), True))
                    continue
                unreachable = str(exc)  # no connection to the Prometheus of the rest either
            except QueryRejected as exc:
                results.append(Measurement(metric.name, None, None, promql, str(exc)))
                continue
        if unreachable is not None:
            results.append(Measurement(metric.name, None, None, promql, unreachable, True))
            continue
        results.append(Measurement(metric.name, value, None, promql))
    return tuple(results)
