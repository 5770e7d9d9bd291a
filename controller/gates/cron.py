"""A small cron parser: the five classic fields, matched against local wall-clock time.

Deploy windows only need "does this minute match", so this is a matcher, not
a scheduler. Syntax: `*`, `a`, `a-b`, `*/s`, `a-b/s`, `a/s` and lists of them;
month and weekday names (JAN..DEC, SUN..SAT); weekday 0 and 7 are Sunday; and
the macros @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually).
As in Vixie cron, when both day-of-month and day-of-week are restricted a day
matching either one matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _WEEKDAYS, 0),
)


class CronError(ValueError):
    """A schedule that does not parse; the message names the field and the text."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool

    def matches_date(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def matches(self, wall: datetime) -> bool:
        """True if the wall-clock minute `wall` (its tzinfo is ignored) is in the schedule."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and self.matches_date(wall.date())
        )


def _number(text: str, field: _Field) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names.index(upper) + field.name_base
    if not text.isdigit():
        raise CronError(f"{field.name}: {text!r} is not a number")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


def _part(text: str, field: _Field) -> set[int]:
    """One list element: a value, a range or `*`, each with an optional step."""
    base, _, step_text = text.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(f"{field.name}: step {step_text!r} must be a positive number")
        step = int(step_text)
    if base == "*":
        low, high = field.low, field.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _number(first, field), _number(last, field)
        if low > high:
            raise CronError(f"{field.name}: range {base!r} runs backwards")
    else:
        low = _number(base, field)
        high = field.high if step_text else low
    return set(range(low, high + 1, step))


def _field(text: str, field: _Field) -> tuple[set[int], bool]:
    """The field's values, and whether it counts as unrestricted (starts with `*`, as in Vixie)."""
    if not text:
        raise CronError(f"{field.name}: empty")
    values: set[int] = set()
    for item in text.split(","):
        values |= _part(item, field)
    return values, text.startswith("*")


def parse_cron(expression: str) -> CronSchedule:
    text = _MACROS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"schedule {expression!r} needs 5 fields (minute hour day month weekday), "
            f"got {len(parts)}"
        )
    parsed = [_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)]
    (minutes, _), (hours, _), (days, day_star), (months, _), (weekdays, weekday_star) = parsed
    weekdays = {d % 7 for d in weekdays}
    return CronSchedule(
        expression=expression,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        day_restricted=not day_star,
        weekday_restricted=not weekday_star,
    )
