"""A stable rollout that cannot finish: a promotion is rolled back, a rollback is reported.

The Deployment controller times every rollout (`progressDeadlineSeconds`) and
says so in its `Progressing` condition, but it keeps a timeout from an
earlier rollout until the next one progresses (a reused ReplicaSet,
Recreate, a paused Deployment). So a stall counts only when it is still
reported a whole deadline after this rollout began
(`status.promotionStartedAt`, set when stable starts rolling to a new image:
a promotion, a quick rollback, or a rollback after one): any progress since
would have cleared it.

A stalled promotion is rolled back (decide.py). A stalled rollback has
nothing left to go back to: the pods it would replace stay (maxUnavailable
0), serving or, if they crash-loop, not, and a human has to make room or
fix the image. It is reported loudly, as
condition `RollbackProgressing=False` (the chart alerts on it) and an Event,
and cleared when the rollout moves again.
"""

from __future__ import annotations

from typing import Literal

from controller.api.status import CanaryReleaseStatus
from controller.engine.conditions import find_condition, set_condition
from controller.engine.context import Decision

ROLLBACK_PROGRESSING = "RollbackProgressing"


def stalled_rollout(d: Decision, image: str) -> str | None:
    """Why stable's rollout to `image` is stuck, once it has been for a whole deadline."""
    status, target = d.status, d.target
    started = status.promotion_started_at
    if target.stalled is None or target.image != image or started is None:
        return None
    if (d.now - started).total_seconds() < target.progress_deadline_s:
        return None
    return (
        f"made no progress within the Deployment's progressDeadlineSeconds "
        f"({target.progress_deadline_s}s): {target.stalled}"
    )


def watch_rollback(d: Decision, image: str) -> None:
    """Each pass while stable rolls back to `image`: report a stall, or its end."""
    stall = stalled_rollout(d, image)
    current = find_condition(d.status.conditions, ROLLBACK_PROGRESSING)
    if stall is not None:
        message = (
            f"rolling stable back to {image} on all {d.total_replicas} replicas {stall}; "
            "the pods it would replace stay meanwhile"
        )
        if current is None or current.status != "False":
            d.event("RollbackStalled", message, warning=True)
        _set(d, "False", "ProgressDeadlineExceeded", message)
    elif current is not None and current.status == "False":
        _set(d, "True", "Progressing", f"rolling stable back to {image} progresses again")


def rollback_finished(d: Decision, image: str) -> None:
    """Stable runs `image` everywhere: a stall reported on the way is over."""
    d.status.promotion_started_at = None
    current = find_condition(d.status.conditions, ROLLBACK_PROGRESSING)
    if current is not None and current.reason != "Completed":
        _set(d, "True", "Completed", f"stable runs {image} on all {d.total_replicas} replicas")


def stable_rolling_back(status: CanaryReleaseStatus) -> bool:
    """Stable is still rolling back to its image, and has not stalled doing so.

    A new release waits for it; one that has stalled is reported, and a new
    tag then starts anyway (it may be the fix), as it always could.
    """
    if status.promotion_started_at is None:
        return False
    current = find_condition(status.conditions, ROLLBACK_PROGRESSING)
    return current is None or current.status != "False"


def rollback_superseded(d: Decision, tag: str) -> None:
    """A new release starts: a rollback still stalled is no longer followed, nor alerted on.

    The new tag's own promotion, if it comes, rolls stable anew and is timed afresh.
    """
    d.status.promotion_started_at = None
    current = find_condition(d.status.conditions, ROLLBACK_PROGRESSING)
    if current is not None and current.status == "False":
        _set(d, "True", "Superseded", f"the release of {tag} started; last: {current.message}")


def _set(d: Decision, status: Literal["True", "False"], reason: str, message: str) -> None:
    d.status.conditions = set_condition(
        d.status.conditions, ROLLBACK_PROGRESSING, status, reason, message[:1024], d.now
    )
