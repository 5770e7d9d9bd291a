"""`spec.analysis.auditLog` and `status.auditLog`: watching the application's audit trail.

The checklist says "check audit_logs for unusual patterns". These models say
where the audit events are (a SQL table or a Prometheus counter), how strict
the comparison is, and which actions are sensitive enough for a stricter
bound. The connection string of a database is never written in the spec: it
is read from a Secret, so the CanaryRelease can be shown to anyone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from controller.api.base import SpecModel, StatusModel
from controller.api.durations import DURATION_PATTERN, parse_duration
from controller.api.placeholders import placeholders

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
TABLE = r"^([A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$"
MAX_ANOMALIES = 10

Column = Annotated[str, Field(pattern=IDENTIFIER, max_length=63)]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
Verdict = Literal["pass", "fail", "inconclusive", "error"]

DEFAULT_SENSITIVE = [
    "*login*fail*",
    "*fail*login*",
    "*auth*fail*",
    "*permission*",
    "*role*",
    "*grant*",
    "*revoke*",
    "*delete*",
    "*drop*",
    "*purge*",
]


def _one_of(first: str, second: str) -> ConfigDict:
    rule = f"has(self.{first}) != has(self.{second})"
    extra: dict[str, Any] = {
        "x-kubernetes-validations": [
            {"rule": rule, "message": f"set exactly one of {first} or {second}"}
        ]
    }
    return ConfigDict(**SpecModel.model_config, json_schema_extra=extra)


class SecretKeyRef(SpecModel):
    """A key of a Secret in the CanaryRelease's namespace."""

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class TrackValues(SpecModel):
    """What the track column holds for each track.

    `{{canaryTag}}` and `{{stableTag}}` are replaced by the release's tags, for
    a column that records the application version rather than the track.
    """

    canary: str = Field(default="canary", min_length=1, max_length=128)
    stable: str = Field(default="stable", min_length=1, max_length=128)


class SqlAuditLog(SpecModel):
    """An audit table in PostgreSQL, read in a READ ONLY transaction with a statement timeout."""

    secret_ref: SecretKeyRef = Field(
        description="Secret key holding a libpq connection string (URI or key=value pairs)"
    )
    table: str = Field(default="audit_logs", pattern=TABLE, max_length=127)
    timestamp_column: Column = "created_at"
    action_column: Column = "action"
    actor_column: Column | None = Field(
        default=None, description="counted per anomalous action: one actor or many?"
    )
    track_column: Column | None = Field(
        default=None,
        description="the column telling canary events from stable ones (track or version)",
    )
    track_values: TrackValues = Field(default_factory=TrackValues)
    statement_timeout: Duration = "5s"
    connect_timeout: Duration = "5s"

    def statement_timeout_length(self) -> timedelta:
        return parse_duration(self.statement_timeout)

    def connect_timeout_length(self) -> timedelta:
        return parse_duration(self.connect_timeout)


class PrometheusAuditLog(SpecModel):
    """A counter of audit events with an action label, e.g. audit_events_total{action=...}.

    The query must return one series per action, e.g.
    `sum by (action) (increase(audit_events_total{namespace="{{namespace}}"}[{{window}}]))`.
    With a `{{track}}` placeholder the events carry the track and canary is
    compared against stable; without it, against the same hours of previous days.
    """

    query: str = Field(min_length=1, max_length=4096)
    action_label: str = Field(default="action", pattern=IDENTIFIER, max_length=63)
    address: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=512,
        description="defaults to spec.analysis.prometheus.address",
    )

    @property
    def carries_track(self) -> bool:
        return "track" in placeholders(self.query)


class SensitiveActions(SpecModel):
    """Actions where a smaller rise already matters: failed logins, permission changes, deletions.

    Patterns are shell-style globs, matched case-insensitively. Sensitive
    actions share `alphaShare` of the error budget among themselves, so each
    gets a much larger part of it than an ordinary action, and they are
    flagged at a lower ratio and count.
    """

    patterns: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=lambda: list(DEFAULT_SENSITIVE), max_length=50
    )
    min_ratio: float = Field(default=1.5, ge=1.0, description="flag at count >= ratio x expected")
    min_count: int = Field(default=3, ge=1)
    alpha_share: float = Field(
        default=0.5, gt=0, le=0.9, description="share of alpha reserved for sensitive actions"
    )


class AuditLog(SpecModel):
    """Compare the canary's audit events against stable, or against previous days."""

    model_config = _one_of("sql", "prometheus")

    sql: SqlAuditLog | None = None
    prometheus: PrometheusAuditLog | None = None
    alpha: float = Field(
        default=0.01,
        gt=0,
        le=0.2,
        description="chance of a false rollback per release step, over all actions and looks",
    )
    correction: Literal["holm", "benjamini-hochberg"] = Field(
        default="holm", description="how the many actions tested at once are corrected for"
    )
    baseline_days: int = Field(
        default=7, ge=3, le=28, description="previous days whose same hours form the baseline"
    )
    min_ratio: float = Field(
        default=2.0,
        ge=1.0,
        description="an ordinary action is flagged at count >= ratio x expected",
    )
    min_count: int = Field(default=10, ge=1, description="fewer canary events are never flagged")
    new_actions: bool = Field(default=True, description="flag actions never seen before")
    new_action_min_count: int = Field(default=3, ge=1)
    sensitive: SensitiveActions = Field(default_factory=SensitiveActions)

    @model_validator(mode="after")
    def _one_source(self) -> AuditLog:
        if (self.sql is None) == (self.prometheus is None):
            raise ValueError("auditLog needs exactly one of sql or prometheus")
        return self


class AuditAnomaly(StatusModel):
    """One flagged action: what was seen against what was expected."""

    action: str
    kind: Literal["new", "rise"]
    count: float
    expected: float
    ratio: float | None = None
    p_value: float | None = Field(default=None, description="anytime-valid, before correction")
    sensitive: bool = False
    actors: int | None = None


class AuditLogStatus(StatusModel):
    """The latest audit-log judgement, with the anomalies it found (bounded)."""

    verdict: Verdict
    reason: str
    comparison: Literal["track", "seasonal"] | None = None
    measured_at: datetime
    window_start: datetime | None = None
    baseline_days: int | None = None
    actions_tested: int = 0
    anomalies: list[AuditAnomaly] = Field(default_factory=list, max_length=MAX_ANOMALIES)
    unreachable_since: datetime | None = None
