"""Replica arithmetic for a replica-based canary.

Without a traffic router a weight can only be approximated by pod counts;
a weight above 0 always gets at least one pod, so the canary is judged on
real traffic.
"""

from __future__ import annotations

import math

from controller.api.spec import Step


def canary_replicas(weight: int, total: int) -> int:
    if weight <= 0 or total <= 0:
        return 0
    return max(1, min(total, math.floor(total * weight / 100 + 0.5)))


def weight_at(steps: list[Step], index: int) -> int:
    """The canary's weight in force at step `index`: the last setWeight at or before it.

    setWeight 100 means "promote", which replaces stable's image rather than
    growing the canary, so it never counts as a canary weight.
    """
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None and step.set_weight < 100:
            return step.set_weight
    return 0
