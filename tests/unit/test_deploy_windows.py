"""Deploy-window arithmetic as pure code: time zones, daylight-saving changes, blackouts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.gates.cron import CronError, parse_cron
from controller.gates.windows import Calendar, Period, Recurring

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # a 30-minute daylight-saving shift
ZONES = [BERLIN, NEW_YORK, LORD_HOWE, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")]


def window(schedule: str, duration: timedelta, zone: ZoneInfo = BERLIN) -> Recurring:
    return Recurring(parse_cron(schedule), duration, zone)


def at(zone: ZoneInfo, *parts: int, fold: int = 0) -> datetime:
    """A wall-clock time in `zone`, as the UTC instant the engine passes."""
    return datetime(*parts, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


# -- cron ---------------------------------------------------------------------


def test_cron_fields_ranges_steps_names_and_macros() -> None:
    cron = parse_cron("*/15 9-17 * JAN-MAR mon-fri")
    assert cron.minutes == (0, 15, 30, 45) and cron.hours == tuple(range(9, 18))
    assert cron.months == frozenset({1, 2, 3}) and cron.weekdays == frozenset({1, 2, 3, 4, 5})
    assert parse_cron("@daily").matches(datetime(2026, 5, 5, 0, 0))
    assert parse_cron("0 0 * * 7").weekdays == frozenset({0})  # 7 is Sunday too


def test_cron_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    cron = parse_cron("0 12 13 * 5")  # the 13th, or any Friday (Vixie cron)
    assert cron.matches(datetime(2026, 11, 13, 12, 0))  # Friday the 13th
    assert cron.matches(datetime(2026, 11, 20, 12, 0))  # a Friday
    assert cron.matches(datetime(2026, 12, 13, 12, 0))  # a Sunday, the 13th
    assert not cron.matches(datetime(2026, 11, 19, 12, 0))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 22 * *", "needs 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("0 5-3 * * *", "runs backwards"),
        ("0 * * * FUNDAY", "day of week"),
        ("*/0 * * * *", "step"),
    ],
)
def test_bad_cron_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(text)


# -- windows ------------------------------------------------------------------


def test_weeknight_window_in_berlin() -> None:
    cal = Calendar((window("0 22 * * 1-5", timedelta(hours=6)),))
    assert cal.allows(at(BERLIN, 2026, 11, 27, 23, 0))  # Friday night
    assert cal.allows(at(BERLIN, 2026, 11, 28, 3, 59))  # Friday's window, on Saturday
    saturday = at(BERLIN, 2026, 11, 28, 4, 0)
    assert not cal.allows(saturday)
    assert cal.next_allowed(saturday) == at(BERLIN, 2026, 11, 30, 22, 0)  # Monday night
    assert cal.open_until(at(BERLIN, 2026, 11, 27, 23, 0)) == at(BERLIN, 2026, 11, 28, 4, 0)


def test_wall_time_skipped_by_spring_forward_opens_shifted_by_the_gap() -> None:
    # Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    cal = Calendar((window("30 2 * * *", timedelta(hours=1)),))
    night = at(BERLIN, 2026, 3, 29, 1, 0)
    opens = cal.next_allowed(night)
    assert opens == datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN).astimezone(UTC)
    assert opens == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert cal.allows(opens) and not cal.allows(opens - timedelta(minutes=1))
    # On ordinary days either side, 02:30 is 02:30.
    assert cal.next_allowed(at(BERLIN, 2026, 3, 30, 0, 0)) == at(BERLIN, 2026, 3, 30, 2, 30)


def test_window_duration_is_elapsed_time_across_spring_forward() -> None:
    cal = Calendar((window("0 1 * * *", timedelta(hours=2)),))
    # 01:00 CET + 2 real hours = 04:00 CEST on the wall (3 wall-clock hours).
    assert cal.allows(at(BERLIN, 2026, 3, 29, 3, 59))
    assert not cal.allows(at(BERLIN, 2026, 3, 29, 4, 0))


def test_wall_time_repeated_by_fall_back_opens_only_the_first_time() -> None:
    # Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    cal = Calendar((window("30 2 * * *", timedelta(minutes=30)),))
    first = at(BERLIN, 2026, 10, 25, 2, 30, fold=0)
    second = at(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert second - first == timedelta(hours=1)
    assert cal.allows(first + timedelta(minutes=15))
    assert not cal.allows(second + timedelta(minutes=15))
    assert cal.next_allowed(first + timedelta(minutes=31)) == at(BERLIN, 2026, 10, 26, 2, 30)


def test_new_york_spring_forward_and_fall_back() -> None:
    cal = Calendar((window("0 2 * * *", timedelta(hours=1), NEW_YORK),))
    # 2026-03-08: 02:00 EST does not exist; the window opens at 03:00 EDT (07:00Z).
    assert cal.next_allowed(at(NEW_YORK, 2026, 3, 8, 0, 0)) == datetime(2026, 3, 8, 7, tzinfo=UTC)
    # 2026-11-01: 01:00-02:00 repeats; 02:00 EST is unambiguous (07:00Z).
    assert cal.next_allowed(at(NEW_YORK, 2026, 11, 1, 0, 0)) == datetime(2026, 11, 1, 7, tzinfo=UTC)


def test_half_hour_daylight_saving_shift_on_lord_howe() -> None:
    # 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11:00).
    cal = Calendar((window("15 2 * * *", timedelta(minutes=30), LORD_HOWE),))
    opens = cal.next_allowed(at(LORD_HOWE, 2026, 10, 4, 0, 0))
    assert opens is not None
    assert opens.astimezone(LORD_HOWE).replace(tzinfo=None) == datetime(2026, 10, 4, 2, 45)


def test_time_zone_decides_the_day() -> None:
    # 23:30 UTC on Friday is already Saturday in Kolkata (+05:30).
    kolkata = ZoneInfo("Asia/Kolkata")
    cal = Calendar((window("* * * * 1-5", timedelta(minutes=1), kolkata),))
    friday_late_utc = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    assert not cal.allows(friday_late_utc)
    assert cal.next_allowed(friday_late_utc) == at(kolkata, 2026, 11, 30, 0, 0)


# -- blackouts ----------------------------------------------------------------

FREEZE = Period(
    datetime(2026, 12, 20, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC), "year-end freeze"
)


def test_blackout_wins_over_an_open_window() -> None:
    cal = Calendar((window("0 22 * * 1-5", timedelta(hours=6)),), (FREEZE,))
    tuesday = at(BERLIN, 2026, 12, 22, 22, 30)
    assert cal.in_window(tuesday) and not cal.allows(tuesday)
    blackout = cal.blackout_at(tuesday)
    assert blackout is not None and blackout[0].label == "year-end freeze"
    # The freeze ends Monday 01:00 CET; the next window opens Monday 22:00.
    assert cal.next_allowed(tuesday) == at(BERLIN, 2027, 1, 4, 22, 0)


def test_release_may_start_the_moment_a_blackout_ends_inside_a_window() -> None:
    end = at(BERLIN, 2026, 12, 22, 22, 30)
    cal = Calendar((window("0 22 * * 1-5", timedelta(hours=6)),), (Period(FREEZE.start, end),))
    assert cal.next_allowed(at(BERLIN, 2026, 12, 22, 21, 0)) == end


def test_recurring_weekend_blackout_lasts_elapsed_hours_across_fall_back() -> None:
    weekend = window("0 15 * * 5", timedelta(hours=57))  # Friday 15:00 to Monday 00:00
    cal = Calendar((), (weekend,))
    assert cal.next_allowed(at(BERLIN, 2026, 11, 27, 16, 0)) == at(BERLIN, 2026, 11, 30, 0, 0)
    # The weekend of 2026-10-25 has an extra hour: 57 real hours end at Sunday 23:00 CET.
    assert cal.next_allowed(at(BERLIN, 2026, 10, 23, 16, 0)) == at(BERLIN, 2026, 10, 25, 23, 0)


def test_no_allowed_time_within_the_horizon_is_none() -> None:
    forever = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    assert Calendar((), (forever,)).next_allowed(datetime(2026, 6, 1, tzinfo=UTC)) is None


# -- properties ---------------------------------------------------------------

MINUTES = st.sets(st.integers(0, 59), min_size=1, max_size=3)
HOURS = st.sets(st.integers(0, 23), min_size=1, max_size=3)
WEEKDAYS = st.one_of(
    st.just("*"),
    st.sets(st.integers(0, 6), min_size=1, max_size=3).map(
        lambda days: ",".join(map(str, sorted(days)))
    ),
)
SCHEDULES = st.builds(
    lambda m, h, w: f"{','.join(map(str, sorted(m)))} {','.join(map(str, sorted(h)))} * * {w}",
    MINUTES,
    HOURS,
    WEEKDAYS,
)
DURATIONS = st.integers(1, 3 * 24 * 60).map(lambda m: timedelta(minutes=m))
# 2026 and early 2027 cover both daylight-saving changes in both hemispheres.
INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 3, 1), timezones=st.just(UTC)
)


def brute_force_allows(win: Recurring, instant: datetime) -> bool:
    """Every wall-clock minute of every nearby local day, checked one by one."""
    first = (instant - win.duration).astimezone(win.zone).date() - timedelta(days=2)
    last = instant.astimezone(win.zone).date() + timedelta(days=1)
    day = first
    while day <= last:
        for minute in range(24 * 60):
            wall = datetime.combine(day, time(minute // 60, minute % 60))
            if win.schedule.matches(wall):
                opened = wall.replace(tzinfo=win.zone).astimezone(UTC)
                if opened <= instant < opened + win.duration:
                    return True
        day += timedelta(days=1)
    return False


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ZONES), SCHEDULES, DURATIONS, INSTANTS)
def test_allows_agrees_with_brute_force(
    zone: ZoneInfo, schedule: str, duration: timedelta, instant: datetime
) -> None:
    win = window(schedule, duration, zone)
    assert Calendar((win,)).allows(instant) == brute_force_allows(win, instant)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(ZONES),
    SCHEDULES,
    DURATIONS,
    INSTANTS,
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=5),
)
def test_next_allowed_is_allowed_and_nothing_earlier_is(
    zone: ZoneInfo, schedule: str, duration: timedelta, instant: datetime, fractions: list[float]
) -> None:
    blackout = Period(instant + timedelta(hours=1), instant + timedelta(days=2), "freeze")
    cal = Calendar((window(schedule, duration, zone),), (blackout,))
    found = cal.next_allowed(instant)
    assert found is not None  # a window opens at least weekly and the blackout ends
    assert found >= instant and cal.allows(found)
    for fraction in fractions:
        earlier = instant + (found - instant) * fraction
        if earlier < found:
            assert not cal.allows(earlier), f"{earlier} is allowed, before {found}"


def brute_force_openings(win: Recurring, start: datetime, days: int) -> list[datetime]:
    first = start.astimezone(win.zone).date() - timedelta(days=1)
    found = []
    for offset in range(days + 2):
        day = first + timedelta(days=offset)
        for minute in range(24 * 60):
            wall = datetime.combine(day, time(minute // 60, minute % 60))
            if win.schedule.matches(wall):
                found.append(wall.replace(tzinfo=win.zone).astimezone(UTC))
    return sorted(found)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ZONES), SCHEDULES, INSTANTS)
def test_next_opening_is_the_earliest_opening_at_or_after(
    zone: ZoneInfo, schedule: str, instant: datetime
) -> None:
    win = window(schedule, timedelta(minutes=1), zone)
    limit = instant + timedelta(days=8)
    expected = [o for o in brute_force_openings(win, instant, 9) if instant <= o <= limit]
    assert win.next_opening(instant, limit) == (expected[0] if expected else None)
