"""An analysis gives way between two queries once a command is waiting; what counts as one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.adapters.kubernetes import COMMAND_ANNOTATION
from controller.runtime.measuring import AnalysisInterrupted, Interruptible
from controller.runtime.reconcile import needs_answer

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


def _body(generation: int, command: str | None, status: dict[str, object]) -> dict[str, object]:
    annotations = {COMMAND_ANNOTATION: command} if command is not None else {}
    meta = {"name": "payments", "generation": generation, "annotations": annotations}
    return {"metadata": meta, "status": status}


def test_what_needs_an_answer_before_any_analysis() -> None:
    answered = {"observedGeneration": 3, "lastCommand": "pause 1"}
    assert not needs_answer(_body(3, None, answered))
    assert not needs_answer(_body(3, "pause 1", answered))  # handled already
    assert not needs_answer(_body(3, "", answered))  # an empty annotation is no command
    assert needs_answer(_body(3, "abort", answered))
    assert needs_answer(_body(4, None, answered))  # a spec change
    assert not needs_answer(_body(3, "abort", {"phase": "NoSuchPhase"}))  # left to reconcile
