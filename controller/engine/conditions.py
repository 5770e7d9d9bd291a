"""Kubernetes-style conditions: lastTransitionTime moves only when status flips."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from controller.api.status import CanaryReleaseStatus, Condition

TARGET_FOUND = "TargetFound"


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    previous = find_condition(conditions, type_)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_, status=status, reason=reason, message=message, last_transition_time=since
    )
    return [c for c in conditions if c.type != type_] + [updated]


def condition_status(conditions: list[Condition], type_: str) -> str | None:
    found = find_condition(conditions, type_)
    return found.status if found is not None else None


def false_since(status: CanaryReleaseStatus, type_: str) -> datetime | None:
    """Since when condition `type_` has been False (None: it is not)."""
    found = find_condition(status.conditions, type_)
    return found.last_transition_time if found is not None and found.status == "False" else None


def target_missing(status: CanaryReleaseStatus) -> bool:
    """The last decision found no target: nothing is measured or decided until it exists."""
    return false_since(status, TARGET_FOUND) is not None
