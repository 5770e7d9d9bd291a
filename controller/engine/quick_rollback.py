"""The quick rollback: the previous stable tag back on every replica, without a canary.

A promoted release that misbehaves in production needs the old version back
in minutes, not a fresh 24-hour canary of it. The previous tag ran at full
size until the promotion, so it is rolled out the way a promotion is (stable
at full size, maxUnavailable 0, so serving capacity never dips) and without
analysis: the metrics judge a canary, and there is none.

`canaryctl rollback` asks for it with one patch that sets both
`spec.release.tag` to `status.previousStableTag` and the `rollback` command,
so the spec keeps saying what runs and the tag change does not start a canary.
While the rollback runs the phase is Promoting with reason RollbackRequested;
it ends in RolledBack with the promoted tag recorded in history as rolled back.
Afterwards there is no previous stable tag: the only candidate is the tag just
rolled back, and a second `rollback` typed by accident must not bring it back
(a new canary of it, with `start`, is the way forward).
"""

from __future__ import annotations

from controller.api.status import MAX_HISTORY, HistoryEntry
from controller.engine.context import Decision
from controller.engine.rollout import start_stable_rollout
from controller.engine.watching import end_watch

QUICK_ROLLBACK = "RollbackRequested"
QUICK_ROLLBACK_RUNS = (
    "a quick rollback to the previous stable tag is running and is not stopped: it goes on "
    "until that tag runs everywhere; setting a new tag starts a canary of it"
)


def quick_rollback_refusal(d: Decision) -> str | None:
    """Why a `rollback` command cannot run now, or None when it can."""
    status = d.status
    previous = status.previous_stable_tag
    if previous is None:
        return "no previous stable tag to roll back to (nothing promoted since the last one)"
    if d.spec.release.tag != previous:
        return (
            f"spec.release.tag must be set to the previous stable tag {previous} "
            "in the same change (canaryctl rollback does both)"
        )
    return None


def start_quick_rollback(d: Decision, command: str) -> None:
    status, target = d.status, d.target
    previous = status.previous_stable_tag
    assert previous is not None
    if d.observed.canary is None and status.saved_strategy is None:
        status.target_replicas = target.replicas
    start_stable_rollout(d)
    end_watch(status)
    status.phase, status.reason, status.canary_tag = "Promoting", QUICK_ROLLBACK, previous
    status.release_started_at = status.step_started_at = d.now
    status.current_step_index, status.canary_weight = None, 0
    status.next_analysis_at, status.paused_at, status.canary_unready_since = None, None, None
    status.prometheus_unreachable_since = None
    d.event(
        "RollingBack",
        f"rolling back from {status.stable_tag} to {previous} on all {d.total_replicas} "
        f"replicas, skipping the canary steps ({command})",
        warning=True,
    )


def quick_rollback_image(d: Decision) -> str:
    """The image the previous tag ran as (it may predate a change of the image template)."""
    status = d.status
    assert status.canary_tag is not None
    return status.previous_stable_image or d.spec.release.image_for(status.canary_tag)


def finish_quick_rollback(d: Decision, image: str, superseded_by: str | None = None) -> None:
    """The previous tag runs everywhere, or a new tag came first: the promoted one is undone.

    When superseded, stable is still rolling back; `promotionStartedAt` stays
    set, so settle keeps following that rollout until the new release starts.
    """
    status = d.status
    restored, undone = status.canary_tag, status.stable_tag
    assert restored is not None
    message = f"rolled back from {undone} to {restored} by a human, skipping the canary steps"
    if superseded_by is not None:
        message += f"; tag {superseded_by} was set while {restored} was still rolling out"
    if undone is not None:
        entry = HistoryEntry(
            tag=undone,
            outcome="RolledBack",
            reason=f"{QUICK_ROLLBACK}: {message}",
            started_at=status.release_started_at,
            finished_at=d.now,
        )
        status.history = [*status.history, entry][-MAX_HISTORY:]
    d.event("RolledBack", f"{QUICK_ROLLBACK}: {message}", warning=True)
    status.previous_stable_tag = status.previous_stable_image = None
    status.stable_tag, status.stable_image = restored, image
    status.phase, status.reason, status.message = "RolledBack", QUICK_ROLLBACK, message
    status.canary_tag, status.current_step_index, status.canary_weight = None, None, 0
