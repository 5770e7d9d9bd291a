"""The CanaryRelease status: the only place the controller keeps state.

Everything needed to resume after a restart is here (step, when it started,
the replica count to restore), and everything on-call needs to answer
"why did it roll back?" (the metric, its value, the bound, the query, when).
Lists are bounded so the object never grows without limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from controller.api.base import StatusModel

Phase = Literal["Idle", "Progressing", "Paused", "Promoting", "Succeeded", "RolledBack", "Failed"]
Verdict = Literal["pass", "fail", "inconclusive", "error"]
Outcome = Literal["Succeeded", "RolledBack", "Aborted", "Superseded"]

MAX_HISTORY = 20
MAX_TREND = 12


class MetricResult(StatusModel):
    """The latest measurement of one metric, with a short trend for `canaryctl status`."""

    name: str
    canary_value: float | None = None
    stable_value: float | None = None
    verdict: Verdict
    reason: str
    measured_at: datetime
    query: str | None = Field(default=None, description="the canary query as evaluated")
    trend: list[float] = Field(default_factory=list, max_length=MAX_TREND)


class HistoryEntry(StatusModel):
    tag: str
    outcome: Outcome
    reason: str
    started_at: datetime | None = None
    finished_at: datetime


class Condition(StatusModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime


class CanaryReleaseStatus(StatusModel):
    phase: Phase = "Idle"
    stable_tag: str | None = None
    canary_tag: str | None = None
    previous_stable_tag: str | None = Field(
        default=None, description="the tag that ran before the last promotion, for a quick rollback"
    )
    stable_image: str | None = Field(
        default=None, description="the image the stable Deployment runs; restored on rollback"
    )
    current_step_index: int | None = None
    canary_weight: int = 0
    target_replicas: int | None = Field(
        default=None, description="the Deployment's replica count when the release started"
    )
    release_started_at: datetime | None = None
    step_started_at: datetime | None = None
    next_analysis_at: datetime | None = None
    paused_at: datetime | None = Field(default=None, description="set while paused by a human")
    prometheus_unreachable_since: datetime | None = None
    canary_unready_since: datetime | None = None
    saved_strategy: dict[str, str] | None = Field(
        default=None,
        description="the stable Deployment's rollingUpdate settings, restored after promotion",
    )
    metrics: list[MetricResult] = Field(default_factory=list, max_length=20)
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    observed_generation: int | None = None
    last_command: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list, max_length=MAX_HISTORY)
