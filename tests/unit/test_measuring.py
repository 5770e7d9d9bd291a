"""Measuring against a Prometheus that does not answer: one timeout, not one per metric."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.adapters.ports import MetricsUnreachable, QueryRejected
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, PostPromotionStatus
from controller.engine.observations import Measurement
from controller.runtime.measuring import measure
from controller.runtime.watching import measure_after_promotion

AT = datetime(2026, 11, 25, 12, tzinfo=UTC)


class Failing:
    """Each query raises what `fail(promql)` gives, or answers 0.01."""

    def __init__(self, fail: dict[str, Exception]) -> None:
        self.fail, self.sent = fail, 0

    def query(self, promql: str, at: datetime) -> float | None:
        self.sent += 1
        for name, exc in self.fail.items():
            if name in promql:
                raise exc
        return 0.01

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        raise AssertionError("value queries only")


def _metrics(*names: str) -> list[dict[str, object]]:
    return [
        {
            "name": n.replace("_", "-"),
            "query": f'sum(rate({n}_total{{track="{{{{track}}}}"}}[{{{{window}}}}]))',
            "threshold": {"max": 0.05},
        }
        for n in names
    ]


def _spec(**extra: object) -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {"targetRef": {"name": "app"}, "release": {"tag": "v2", "image": "r/app:{tag}"}, **extra}
    )


def _analysis(source: Failing) -> tuple[Measurement, ...]:
    """One round of three metrics, in a pause an hour old."""
    spec = _spec(
        analysis={"prometheus": {"address": "http://p"}, "metrics": _metrics("m_a", "m_b", "m_c")}
    )
    status = CanaryReleaseStatus(step_started_at=AT - timedelta(hours=1), phase="Paused")
    return measure(source, spec, status, namespace="ns", name="app", at=AT)


def test_analysis_stops_asking_once_prometheus_is_unreachable() -> None:
    source = Failing({"m_b": MetricsUnreachable("http://p: connection refused", connection=True)})
    a, b, c = _analysis(source)
    assert source.sent == 3  # a for both tracks, then b once; c is not asked
    assert a.canary == 0.01 and not a.unreachable
    assert b.unreachable and c.unreachable and c.error == "http://p: connection refused"
    assert "m_c_total{" in c.query  # still named by its own query


def test_a_rejected_query_does_not_stop_the_others() -> None:
    source = Failing({"m_a": QueryRejected("parse error")})
    a, b, c = _analysis(source)
    assert a.error == "parse error" and not a.unreachable
    assert b.canary == 0.01 and c.stable == 0.01 and source.sent == 5


def test_the_watch_after_promotion_stops_asking_once_prometheus_is_unreachable() -> None:
    watch_spec = {"duration": "1h", "prometheus": {"address": "http://p"}}
    spec = _spec(postPromotion={**watch_spec, "metrics": _metrics("m_a", "m_b", "m_c")})
    watch = PostPromotionStatus(
        state="Watching", started_at=AT - timedelta(minutes=10), until=AT + timedelta(hours=1)
    )
    status = CanaryReleaseStatus(phase="Succeeded", post_promotion=watch)
    down = MetricsUnreachable("down", connection=True)
    source = Failing({"m_a": QueryRejected("parse error"), "m_b": down})
    a, b, c = measure_after_promotion(source, spec, status, namespace="ns", name="app", at=AT)
    assert source.sent == 2
    assert a.error == "parse error" and not a.unreachable
    assert b.unreachable and c.unreachable and c.error == "down" and "m_c_total{" in c.query


def test_one_query_that_times_out_does_not_hide_the_metrics_after_it() -> None:
    """A heavy query's read timeout says nothing about the next: the cheap one that breaches
    is still measured."""
    source = Failing({"m_a": MetricsUnreachable("http://p: read timed out")})
    a, b, c = _analysis(source)
    assert a.unreachable and not b.unreachable and c.canary == 0.01
    assert source.sent == 5
