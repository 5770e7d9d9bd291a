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

from controller.api.auditlog import AuditLogStatus
from controller.api.base import StatusModel
from controller.api.gates import GatesStatus
from controller.api.traffic import TrafficStatus

Phase = Literal[
    "Idle",
    "Blocked",
    "Waiting",
    "Progressing",
    "Paused",
    "Promoting",
    "Succeeded",
    "RolledBack",
    "Failed",
]
Verdict = Literal["pass", "fail", "inconclusive", "error"]
Outcome = Literal["Succeeded", "RolledBack", "Aborted", "Superseded"]

MAX_HISTORY = 20
MAX_PENDING_EVENTS = 32
MAX_TREND = 12


class Tally(StatusModel):
    """Events (errors, or requests slower than a bound) out of requests."""

    events: float = 0.0
    total: float = 0.0


TestName = Literal["worse", "notWorse", "above", "below"]

#: How each test is named to people, in reasons and in `canaryctl status`.
TEST_LABELS: dict[str, str] = {
    "worse": "worse",
    "notWorse": "not worse",
    "above": "above",
    "below": "below",
}


class OneSidedTest(StatusModel):
    """One sequential test: its running log-products, one per alternative (a fixed handful)."""

    test: TestName
    design: str = Field(
        default="",
        max_length=16,
        description="which test the evidence is for (its null, alternatives and level): "
        "another one (maxRatio, falseAlarmRate or the number of metrics changed) starts afresh",
    )
    e_value: float = Field(
        description="the evidence so far, its largest burst set aside; decides at `needed`"
    )
    needed: float
    log_products: list[float] = Field(default_factory=list, max_length=8)
    recent: list[float] = Field(
        default_factory=list, max_length=8, description="what the last interval added"
    )
    largest_burst: list[float] = Field(
        default_factory=list,
        max_length=8,
        description="the most two consecutive intervals added: set aside when deciding",
    )


class Evidence(StatusModel):
    """The sequential judge's running state for one metric: bounded, whatever the duration.

    `canary`/`stable` are the cumulative counts last read since `windowStart`
    (the release start): the baseline for the next interval. `countedCanary`
    and `expectedCanaryEvents` sum every interval counted in this release, so
    the reason can say "canary 57 errors where stable's rate predicts 27".
    Each test keeps three numbers per alternative (docs/judge.md).
    """

    window_start: datetime
    counted_at: datetime
    canary: Tally = Field(default_factory=Tally)
    stable: Tally = Field(default_factory=Tally)
    canary_over_max: float | None = Field(
        default=None, description="latency: canary requests above the threshold's bucket"
    )
    bound: float | None = Field(
        default=None, description="latency: the bucket bound at the stable's quantile, in seconds"
    )
    counted_canary: Tally = Field(default_factory=Tally)
    expected_canary_events: float = Field(
        default=0.0, description="canary events if it failed at stable's rate, over the release"
    )
    recent: Tally = Field(
        default_factory=Tally,
        description="canary events (events) and those stable's rate predicts (total), fading "
        "with a 10-minute half-life: the 'lately' ratio of the reason",
    )
    looks: int = Field(default=0, description="intervals counted so far in this release")
    tests: list[OneSidedTest] = Field(default_factory=list, max_length=4)


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
    evidence: Evidence | None = Field(
        default=None, description="errors/latency metrics: the sequential test's running state"
    )


class PostPromotionStatus(StatusModel):
    """The watch after a promotion: until when, and the latest absolute-bound results."""

    state: Literal["Watching", "Passed", "RolledBack", "Breached", "Ended"] = Field(
        description="Breached: a bound was breached but there was no previous image to go back "
        "to. Ended: the watch stopped before its end (a new release or a quick rollback "
        "started, or spec.postPromotion was removed)"
    )
    started_at: datetime
    until: datetime
    metrics: list[MetricResult] = Field(default_factory=list, max_length=20)


class HistoryEntry(StatusModel):
    tag: str
    outcome: Outcome
    reason: str
    started_at: datetime | None = None
    finished_at: datetime


class PendingEvent(StatusModel):
    """An Event decided with this status and not yet known to be sent (runtime/outbox.py)."""

    id: str = Field(max_length=64)
    type: Literal["Normal", "Warning"]
    reason: str = Field(max_length=128)
    message: str = Field(default="", max_length=1024)


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
    previous_stable_image: str | None = Field(
        default=None,
        description="the image before the last promotion: a post-promotion breach"
        " rolls stable back to it",
    )
    current_step_index: int | None = None
    canary_weight: int = 0
    target_replicas: int | None = Field(
        default=None, description="the Deployment's replica count when the release started"
    )
    release_started_at: datetime | None = None
    promotion_started_at: datetime | None = Field(
        default=None,
        description=(
            "when stable began rolling to a new image (a promotion, a quick rollback, or a "
            "rollback after a promotion): a stalled rollout is timed from it"
        ),
    )
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
    audit_log: AuditLogStatus | None = Field(
        default=None, description="the latest audit-log judgement and its anomalies"
    )
    post_promotion: PostPromotionStatus | None = None
    gates: GatesStatus | None = Field(
        default=None, description="gate verdicts with evidence, hook Jobs, and a freeze"
    )
    traffic: TrafficStatus | None = Field(
        default=None, description="with spec.trafficRouting: the weight the router applies now"
    )
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    observed_generation: int | None = None
    last_command: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list, max_length=MAX_HISTORY)
    pending_events: list[PendingEvent] = Field(
        default_factory=list,
        max_length=MAX_PENDING_EVENTS,
        description="Events (and their notifications) written with a decision, until sent",
    )
