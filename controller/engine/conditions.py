"""Kubernetes-style conditions: lastTransitionTime moves only when status flips."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from controller.api.status import Condition


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    previous = next((c for c in conditions if c.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_, status=status, reason=reason, message=message, last_transition_time=since
    )
    return [c for c in conditions if c.type != type_] + [updated]


def condition_status(conditions: list[Condition], type_: str) -> str | None:
    return next((c.status for c in conditions if c.type == type_), None)
