"""What the detection found, in the plain form the engine decides on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal["new", "rise"]
Comparison = Literal["track", "seasonal"]
Verdict = Literal["pass", "fail", "inconclusive", "error"]


@dataclass(frozen=True)
class ActionFinding:
    """One anomalous action: its canary count against what the reference predicts."""

    action: str
    kind: Kind
    count: float
    expected: float
    ratio: float | None = None
    p_value: float | None = None
    sensitive: bool = False
    actors: int | None = None

    def describe(self) -> str:
        subject = f"{'sensitive ' if self.sensitive else ''}action {self.action}"
        who = f", {self.actors} actor{'s' if self.actors != 1 else ''}" if self.actors else ""
        if self.kind == "new":
            return f"new {subject}: {self.count:g} events, never seen before{who}"
        ratio = f", {self.ratio:.1f}x" if self.ratio is not None else ""
        p = f", p={self.p_value:.2g}" if self.p_value is not None else ""
        return f"{subject}: {self.count:g} events, expected {self.expected:.1f}{ratio}{p}{who}"


@dataclass(frozen=True)
class AuditReport:
    """The outcome of one audit-log judgement.

    `unreachable` (the database or Prometheus did not answer) and `error` (the
    source rejected the query, or the Secret is missing) are never a breach:
    the release holds, as it does when Prometheus is down for the metrics.
    """

    verdict: Verdict
    reason: str
    measured_at: datetime
    comparison: Comparison | None = None
    window_start: datetime | None = None
    baseline_days: int | None = None
    actions_tested: int = 0
    anomalies: tuple[ActionFinding, ...] = ()
    unreachable: bool = False

    def describe_anomalies(self) -> str:
        return "; ".join(f.describe() for f in self.anomalies)
