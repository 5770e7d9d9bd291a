"""breachPolicy freeze: hold the canary where it is and wait for a human.

For a release whose migration cannot be reversed, rolling back the code
after a breach can be worse than the breach: the old version may not
understand the new schema. Under `freeze` a breach therefore holds the canary
at its weight (the release pauses), raises a `Frozen` condition and a Warning
Event, and waits. A human then decides:
- `promote-full`: accept the release and fix forward;
- `abort`: roll back anyway;
- `resume`: carry on with the steps (a breach that persists freezes again).
A breach during the promotion itself is alerted but does not stop it: the
stable Deployment is already rolling forward, and going back is exactly what
the policy rules out.
"""

from __future__ import annotations

from controller.api.gates import FreezeRecord, GatesStatus
from controller.api.status import CanaryReleaseStatus
from controller.engine.conditions import set_condition
from controller.engine.context import Decision

FROZEN = "Frozen"


def _gates(d: Decision) -> GatesStatus:
    if d.status.gates is None:
        d.status.gates = GatesStatus()
    return d.status.gates


def freeze(d: Decision, reason: str, message: str) -> bool:
    """Record the breach and hold; True when the canary must not move on this reconcile.

    A human's promote command in the same reconcile wins: they have seen the breach.
    """
    status, gates = d.status, _gates(d)
    if gates.freeze is None:
        gates.freeze = FreezeRecord(reason=reason, message=message[:1024], since=d.now)
        text = (
            f"{reason}: {message}; breachPolicy freeze holds {status.canary_tag} at "
            f"{status.canary_weight}%: promote-full to accept, abort to roll back, resume to go on"
        )
        d.event(FROZEN, text, warning=True)
        status.conditions = set_condition(status.conditions, FROZEN, "True", reason, text, d.now)
    if status.phase == "Promoting":
        return False
    if d.force_promotion or d.force_advance:
        return False
    if status.paused_at is None:
        status.paused_at = d.now
    status.phase, status.reason = "Paused", FROZEN
    return True


def thaw(d: Decision) -> None:
    """Clear the freeze once a human has acted (resume, promote, abort) or the release ended."""
    status = d.status
    gates = status.gates
    if gates is None or gates.freeze is None:
        return
    canary = status.phase in ("Progressing", "Paused")
    if status.phase == "Promoting" and d.force_promotion:
        # The human has decided. The record stays until the promotion ends, so
        # the breach that persists meanwhile does not freeze again, but nothing
        # waits for a human any more (the Frozen alert is for that).
        status.conditions = set_condition(
            status.conditions,
            FROZEN,
            "False",
            "PromotedByHuman",
            f"promoted through the freeze after {gates.freeze.reason}",
            d.now,
        )
    if status.phase == "Promoting" or (canary and status.paused_at is not None):
        return
    gates.freeze = None
    status.conditions = set_condition(
        status.conditions,
        FROZEN,
        "False",
        "Thawed",
        f"released from the freeze ({status.phase})",
        d.now,
    )
    if status.reason == FROZEN:
        status.reason = None


def freeze_note(status: CanaryReleaseStatus) -> str | None:
    """For the one-line summary, in place of "paused by a human"."""
    record = status.gates.freeze if status.gates else None
    if record is None:
        return None
    return (
        f"frozen after {record.reason}: {record.message}; waiting for a human "
        "(promote-full, abort or resume)"
    )
