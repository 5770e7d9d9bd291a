"""When a release next needs the controller, so the runtime can sleep until then.

A timer per release that reconciles every few seconds costs N reads and N
decisions per tick whether or not anything is due, and that is what makes a
controller slow down as releases accumulate. Everything the engine does on
the clock has its deadline in status (the next analysis, the end of a pause,
the readiness deadline, the end of the watch after promotion), so the engine
can say when it next needs to look. Changes it does not schedule (a spec
edit, a command, a Deployment or canary pod changing) arrive through watches
and wake the release at once.

Two safety nets remain, both configuration rather than correctness:
`poll` for phases that wait on objects no watch covers (hook Jobs, deploy
windows, routes) and for Deployments converging; `resync` for everything
else, so a lost watch event costs latency, never a decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.conditions import target_missing
from controller.engine.context import ACTIVE_PHASES
from controller.engine.deploy_windows import IN_BLACKOUT, OUTSIDE_WINDOW
from controller.engine.watching import watching

POLLED_PHASES = ("Waiting", "Blocked", "Progressing", "Promoting")


def next_wakeup(
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
    now: datetime,
    *,
    poll: timedelta,
    resync: timedelta,
) -> datetime:
    """The earliest moment at which deciding again could give a different answer."""
    if target_missing(status):  # its deadlines wait for it; the Deployment's watch wakes it
        return now + resync
    deadlines = [now + (poll if _polled(spec, status) else resync)]
    active = status.phase in ACTIVE_PHASES
    watched = watching(status)
    if status.next_analysis_at is not None and (active or watched):
        deadlines.append(status.next_analysis_at)
    if watched and status.post_promotion is not None:
        deadlines.append(status.post_promotion.until)
    if active and status.canary_unready_since is not None:
        deadlines.append(status.canary_unready_since + spec.health_check.ready_length())
    opens = status.gates.not_before if status.gates is not None else None
    held = status.phase in ("Waiting", "Blocked") or status.reason in (OUTSIDE_WINDOW, IN_BLACKOUT)
    if opens is not None and held:  # a deploy window that holds the start or the promotion
        deadlines.append(opens)
    pause_end = _pause_end(spec, status)
    if active and pause_end is not None:
        deadlines.append(pause_end)
    return max(min(deadlines), now)


def _polled(spec: CanaryReleaseSpec, status: CanaryReleaseStatus) -> bool:
    if status.phase in POLLED_PHASES or status.promotion_started_at is not None:
        return True  # the latter: stable rolls back, and a stall shows no event of its own
    routed = spec.traffic_routing is not None and status.phase in ACTIVE_PHASES
    hooks = status.gates.hooks if status.gates is not None else []
    return routed or any(run.finished_at is None for run in hooks)


def _pause_end(spec: CanaryReleaseSpec, status: CanaryReleaseStatus) -> datetime | None:
    index = status.current_step_index
    if index is None or status.paused_at is not None or not spec.steps:
        return None
    step = spec.steps[min(index, len(spec.steps) - 1)]
    length = step.pause.length() if step.pause is not None else None
    started = status.step_started_at or status.release_started_at
    if length is None or started is None:
        return None
    return started + length
