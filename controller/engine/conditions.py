"""Kubernetes-style conditions: lastTransitionTime moves only when status flips."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from controller.api.status import Condition


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
