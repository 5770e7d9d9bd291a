"""One round of analysis: every metric, both tracks, one evaluation instant.

Shared by the live runtime and replay, so both judge exactly the same queries.
"""

from __future__ import annotations

from datetime import datetime

from controller.adapters.ports import MetricsSource, MetricsUnreachable, QueryRejected
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.analysis import analysis_window
from controller.engine.observations import Measurement
from controller.engine.queries import render_query


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
    results = []
    for metric in analysis.metrics:
        queries = {
            track: render_query(
                metric.query,
                track=track,
                namespace=namespace,
                name=name,
                target=spec.target_ref.name,
                window=window,
                interval=analysis.interval_length(),
            )
            for track in ("canary", "stable")
        }
        values: dict[str, float | None] = {}
        try:
            for track, promql in queries.items():
                values[track] = source.query(promql, at)
        except MetricsUnreachable as exc:
            results.append(
                Measurement(metric.name, None, None, queries["canary"], str(exc), unreachable=True)
            )
            continue
        except QueryRejected as exc:
            results.append(Measurement(metric.name, None, None, queries["canary"], str(exc)))
            continue
        results.append(
            Measurement(metric.name, values["canary"], values["stable"], queries["canary"])
        )
    return tuple(results)
