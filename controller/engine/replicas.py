"""Replica arithmetic for a replica-based canary.

Without a traffic router a weight can only be approximated by pod counts;
a weight above 0 always gets at least one pod, so the canary is judged on
real traffic, and stable always keeps one, so a small Deployment's "10%"
never sends everything to the new build (with one replica it is one pod
each: half the traffic, which the status message says).
"""

from __future__ import annotations

import math

from controller.api.spec import Step


def canary_replicas(weight: int, total: int) -> int:
    if weight <= 0 or total <= 0:
        return 0
    return max(1, min(total, math.floor(total * weight / 100 + 0.5)))


def stable_replicas(total: int, canary: int) -> int:
    """Stable's share of `total` beside `canary` pods, never its last pod."""
    return max(total - canary, min(total, 1))


def pod_share(total: int, weight: int) -> tuple[int, int]:
    """(canary pods, all pods) for `weight` of `total` without a router."""
    canary = canary_replicas(weight, total)
    return canary, canary + stable_replicas(total, canary)


def weight_at(steps: list[Step], index: int) -> int:
    """The canary's weight in force at step `index`: the last setWeight at or before it.

    setWeight 100 means "promote", which replaces stable's image rather than
    growing the canary, so it never counts as a canary weight.
    """
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None and step.set_weight < 100:
            return step.set_weight
    return 0
