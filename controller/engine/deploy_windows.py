"""Deploy windows as gates: may a release start, or a canary be promoted, at `now`?

Only starting and promoting are held. A rollback (or an abort) is never held
by a window or a blackout: getting back to the known-good version is always
allowed, which is the point of a freeze.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from controller.api.durations import parse_duration
from controller.api.gates import DeployWindows
from controller.gates.checks import PROMOTE_WINDOW, START_WINDOW, GateCheck, passed
from controller.gates.cron import parse_cron
from controller.gates.windows import Blackout, Calendar, Period, Recurring

Purpose = Literal["start", "promote"]

#: status.reason while waiting for a window, and while a blackout is in force.
OUTSIDE_WINDOW = "OutsideDeployWindow"
IN_BLACKOUT = "Blackout"


def calendar_for(windows: DeployWindows, purpose: Purpose) -> Calendar:
    zone = ZoneInfo(windows.time_zone)
    chosen = windows.start if purpose == "start" else windows.promote
    allowed = tuple(Recurring(parse_cron(w.schedule), w.length(), zone, w.schedule) for w in chosen)
    blackouts: list[Blackout] = []
    for b in windows.blackouts:
        label = b.reason or ""
        if b.start is not None and b.end is not None:
            blackouts.append(Period(b.start, b.end, label))
        elif b.schedule is not None and b.duration is not None:
            recurring = Recurring(parse_cron(b.schedule), parse_duration(b.duration), zone, label)
            blackouts.append(recurring)
    return Calendar(allowed, tuple(blackouts))


def _local(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes")


def window_check(
    windows: DeployWindows | None, purpose: Purpose, now: datetime
) -> tuple[GateCheck | None, datetime | None]:
    """The gate's verdict (None when nothing restricts `purpose`) and, if closed, when it opens.

    A closed window is `pending`, not `fail`: nothing is wrong, the release waits.
    """
    if windows is None:
        return None, None
    chosen = windows.start if purpose == "start" else windows.promote
    if not chosen and not windows.blackouts:
        return None, None
    gate = START_WINDOW if purpose == "start" else PROMOTE_WINDOW
    cal = calendar_for(windows, purpose)
    zone = windows.time_zone
    if cal.allows(now):
        closes = cal.open_until(now)
        until = f" until {_local(closes, zone)}" if closes else ""
        return passed(gate, f"inside the {purpose} window{until} ({zone})"), None
    opens = cal.next_allowed(now)
    when = (
        f"may {purpose} at {_local(opens, zone)} ({zone})"
        if opens
        else (f"no allowed time in the next year ({zone})")
    )
    blackout = cal.blackout_at(now)
    if blackout is not None:
        label = f" ({blackout[0].label})" if blackout[0].label else ""
        message = f"blackout{label} until {_local(blackout[1], zone)}; {when}"
        return GateCheck(gate, "pending", IN_BLACKOUT, message), opens
    schedules = ", ".join(f"{w.schedule} for {w.duration}" for w in chosen)
    message = f"outside the {purpose} window ({schedules}); {when}"
    return GateCheck(gate, "pending", OUTSIDE_WINDOW, message), opens
