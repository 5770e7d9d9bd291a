"""Deploy windows: when a release may start or be promoted, in the team's time zone.

A window opens at every wall-clock minute its cron schedule matches, in its
time zone, and stays open for `duration` of elapsed time. Blackouts are the
same shape (or an absolute period) and always win over windows.

Daylight-saving rules, chosen so that every matching day opens exactly once:
- a wall time skipped by a spring-forward change opens at the same offset
  as just before the change, i.e. shifted forward by the gap (02:30 in a
  02:00->03:00 jump opens at 03:30), as a cron daemon catching up would;
- a wall time that occurs twice in a fall-back change opens at its first
  occurrence only;
- durations are elapsed time, so a 2h window across a change lasts 2 real
  hours even though the clock on the wall moved 1 or 3 hours.

All instants in and out are timezone-aware; the engine passes UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from controller.gates.cron import CronSchedule

#: How far ahead `next_allowed` searches before it gives up.
HORIZON = timedelta(days=366)
#: Cap on the jumps over blackouts in one search (a pathological calendar ends here).
_MAX_JUMPS = 5000


@dataclass(frozen=True)
class Recurring:
    """Opens at every minute `schedule` matches in `zone`, for `duration` of elapsed time."""

    schedule: CronSchedule
    duration: timedelta
    zone: ZoneInfo
    label: str = ""

    def _openings_on(self, day: date) -> list[datetime]:
        if not self.schedule.matches_date(day):
            return []
        return [
            datetime.combine(day, time(hour, minute), tzinfo=self.zone).astimezone(UTC)
            for hour in self.schedule.hours
            for minute in self.schedule.minutes
        ]

    def _local_day(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    def latest_opening(self, at: datetime) -> datetime | None:
        """The last opening at or before `at`, looking back no further than one duration."""
        day = self._local_day(at) + timedelta(days=1)
        oldest = self._local_day(at - self.duration) - timedelta(days=1)
        while day >= oldest:
            found = [s for s in self._openings_on(day) if s <= at]
            if found:
                # A DST gap can push the previous day's last opening past this day's first.
                found += [s for s in self._openings_on(day - timedelta(days=1)) if s <= at]
                return max(found)
            day -= timedelta(days=1)
        return None

    def next_opening(self, after: datetime, limit: datetime) -> datetime | None:
        """The first opening at or after `after` and no later than `limit`."""
        day = self._local_day(after) - timedelta(days=1)
        last = self._local_day(limit) + timedelta(days=1)
        while day <= last:
            found = [s for s in self._openings_on(day) if s >= after]
            if found:
                found += [s for s in self._openings_on(day + timedelta(days=1)) if s >= after]
                first = min(found)
                return first if first <= limit else None
            day += timedelta(days=1)
        return None

    def end_of_occurrence(self, at: datetime) -> datetime | None:
        """If an occurrence covers `at`, when it closes; otherwise None."""
        opened = self.latest_opening(at)
        if opened is None or at >= opened + self.duration:
            return None
        return opened + self.duration


@dataclass(frozen=True)
class Period:
    """An absolute blackout, e.g. a year-end release freeze: [start, end)."""

    start: datetime
    end: datetime
    label: str = ""

    def end_of_occurrence(self, at: datetime) -> datetime | None:
        return self.end if self.start <= at < self.end else None


Blackout = Recurring | Period


@dataclass(frozen=True)
class Calendar:
    """Allowed windows (none means always allowed) minus blackouts."""

    windows: tuple[Recurring, ...] = ()
    blackouts: tuple[Blackout, ...] = field(default_factory=tuple)

    def open_until(self, at: datetime) -> datetime | None:
        """If a window is open at `at`, the latest time one of the open windows closes."""
        ends = [end for w in self.windows if (end := w.end_of_occurrence(at)) is not None]
        return max(ends) if ends else None

    def in_window(self, at: datetime) -> bool:
        return not self.windows or self.open_until(at) is not None

    def blackout_at(self, at: datetime) -> tuple[Blackout, datetime] | None:
        """The blackout covering `at` that lasts longest, with its end."""
        covering = [(b, end) for b in self.blackouts if (end := b.end_of_occurrence(at))]
        return max(covering, key=lambda pair: pair[1]) if covering else None

    def allows(self, at: datetime) -> bool:
        return self.in_window(at) and self.blackout_at(at) is None

    def next_allowed(self, at: datetime, horizon: timedelta = HORIZON) -> datetime | None:
        """The earliest instant >= `at` that is allowed, or None within the horizon.

        The answer is `at` itself, the end of a blackout, or a window opening:
        walk those candidates in order, jumping over each blackout in one step.
        """
        limit = at + horizon
        candidate = at
        for _ in range(_MAX_JUMPS):
            if candidate > limit:
                return None
            blackout = self.blackout_at(candidate)
            if blackout is not None:
                candidate = blackout[1]
                continue
            if self.in_window(candidate):
                return candidate
            opening = self._next_opening(candidate, limit)
            if opening is None:
                return None
            candidate = opening
        return None

    def _next_opening(self, after: datetime, limit: datetime) -> datetime | None:
        openings = [o for w in self.windows if (o := w.next_opening(after, limit)) is not None]
        return min(openings) if openings else None

    def blackouts_between(self, start: datetime, end: datetime) -> Iterator[Blackout]:
        """Blackouts in force at some point of [start, end), for explaining a wait."""
        for blackout in self.blackouts:
            if isinstance(blackout, Period):
                if blackout.start < end and start < blackout.end:
                    yield blackout
            elif blackout.end_of_occurrence(start) or blackout.next_opening(start, end):
                yield blackout
