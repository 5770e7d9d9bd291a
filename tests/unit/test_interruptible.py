"""An analysis gives way between two queries once a command is waiting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.runtime.measuring import AnalysisInterrupted, Interruptible

AT = datetime(2026, 11, 25, tzinfo=UTC)


class Recording:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def query(self, promql: str, at: datetime) -> float | None:
        self.sent.append(promql)
        return 1.0

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        self.sent.append(promql)
        return [({"le": "+Inf"}, 1.0)]


def test_queries_pass_through_until_interrupted_then_none_is_sent() -> None:
    source, waiting = Recording(), [False]
    wrapped = Interruptible(source, lambda: waiting[0])
    assert wrapped.query("up", AT) == 1.0
    assert wrapped.query_vector("buckets", AT) == [({"le": "+Inf"}, 1.0)]
    waiting[0] = True
    with pytest.raises(AnalysisInterrupted):
        wrapped.query("up", AT)
    with pytest.raises(AnalysisInterrupted):
        wrapped.query_vector("buckets", AT)
    assert source.sent == ["up", "buckets"]
