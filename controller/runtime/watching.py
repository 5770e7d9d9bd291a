"""Measuring the post-promotion metrics: the promoted version is now the stable track."""

from __future__ import annotations

from datetime import datetime

from controller.adapters.ports import MetricsSource, MetricsUnreachable, QueryRejected
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.observations import Measurement
from controller.engine.queries import render_query
from controller.runtime.measuring import UntilRefused


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
    source = UntilRefused(source)
    results = []
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
        try:
            value = source.query(promql, at)
        except MetricsUnreachable as exc:
            results.append(Measurement(metric.name, None, None, promql, str(exc), unreachable=True))
            continue
        except QueryRejected as exc:
            results.append(Measurement(metric.name, None, None, promql, str(exc)))
            continue
        results.append(Measurement(metric.name, value, None, promql))
    return tuple(results)
