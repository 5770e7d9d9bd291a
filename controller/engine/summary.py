"""The one-line `status.message` an on-call engineer reads first."""

from __future__ import annotations

from controller.api.spec import Step
from controller.engine.context import Decision
from controller.engine.freeze import freeze_note
from controller.engine.gating import promotion_note
from controller.engine.quick_rollback import QUICK_ROLLBACK
from controller.engine.replicas import pod_share


def describe_step(step: Step) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    assert step.pause is not None
    return f"pause {step.pause.duration or 'until promoted'}"


def summarize(d: Decision) -> str | None:
    status = d.status
    phase = status.phase
    if phase in ("RolledBack", "Failed", "Blocked", "Waiting"):
        return status.message
    if phase == "Idle":
        return f"running {status.stable_tag or status.stable_image}; no release in progress"
    if phase == "Succeeded":
        return f"{status.stable_tag} promoted (previous: {status.previous_stable_tag})"
    if phase == "Promoting" and status.reason == QUICK_ROLLBACK:
        return f"rolling back to {status.canary_tag} on all {d.total_replicas} replicas"
    if phase == "Promoting":
        return f"promoting {status.canary_tag} to all {d.total_replicas} replicas"
    steps = d.spec.steps
    index = min(status.current_step_index or 0, len(steps) - 1)  # steps may have been shortened
    parts = [
        f"step {index + 1}/{len(steps)} ({describe_step(steps[index])})",
        f"canary {status.canary_tag} at {status.canary_weight}%{_pod_share(d)}",
    ]
    if status.metrics:
        passing = sum(r.verdict == "pass" for r in status.metrics)
        parts.append(f"analysis {passing}/{len(status.metrics)} pass")
    if status.paused_at is not None:
        parts.append(freeze_note(status) or "paused by a human")
    if (held := promotion_note(status)) is not None:
        parts.append(held)
    if status.reason == "AwaitingAnalysis":
        parts.append("waiting for every metric to pass before promotion")
    return "; ".join(parts)


def _pod_share(d: Decision) -> str:
    """Without a router the weight is a pod count: say so when it is far from the weight."""
    weight = d.status.canary_weight or 0
    if d.spec.traffic_routing is not None or d.autoscaled or weight <= 0:
        return ""
    canary, pods = pod_share(d.total_replicas, weight)
    share = round(100 * canary / pods) if pods else 0
    if abs(share - weight) < 5:
        return ""
    return f" ({canary} of {pods} pods, so about {share}% of requests)"
