"""What a provider is asked for (`AuditPlan`) and what it hands back (`AuditSample`).

Both providers, SQL and Prometheus, answer the same plan, so the statistics
never know where the counts came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DAY = timedelta(days=1)


@dataclass(frozen=True)
class AuditPlan:
    """The windows one judgement needs.

    `start`..`end` is the canary window. With `by_track`, the canary and stable
    tracks are counted separately over it; otherwise all events are counted
    over it and over the same hours on each of the previous `baseline_days`
    days. Actions seen in `history_start`..`start` are not "new".
    """

    start: datetime
    end: datetime
    by_track: bool
    baseline_days: int
    canary_tag: str | None = None
    stable_tag: str | None = None

    @property
    def history_start(self) -> datetime:
        return self.start - self.baseline_days * DAY

    def baseline_window(self, days_back: int) -> tuple[datetime, datetime]:
        """The canary window's hours, `days_back` days earlier."""
        return self.start - days_back * DAY, self.end - days_back * DAY


@dataclass(frozen=True)
class AuditSample:
    """Event counts per action, as the provider found them.

    `baseline` holds one mapping per previous day the log reaches back to
    (fewer than `baseline_days` when the history is short); `stable` is set
    only when events carry the track. `actors` counts distinct actors per
    action in the canary window, when the source knows them.
    """

    canary: Mapping[str, float]
    stable: Mapping[str, float] | None = None
    baseline: tuple[Mapping[str, float], ...] = ()
    seen_before: frozenset[str] = frozenset()
    actors: Mapping[str, int] = field(default_factory=dict)
    truncated: bool = False
