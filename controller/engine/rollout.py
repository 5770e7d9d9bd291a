"""Moving replicas between the tracks without ever dropping serving capacity.

The rule everywhere: grow first, shrink only once what grew is Ready. The
canary grows before stable shrinks; stable is restored before the canary is
removed; promotion sets maxUnavailable 0 so the stable rollout never dips.
"""

from __future__ import annotations

from controller.engine.actions import DeleteCanary, ScaleCanary, ScaleStable, UpdateStable
from controller.engine.context import Decision
from controller.engine.replicas import stable_replicas
from controller.engine.routing import reconcile_routed, reset_before_scale_down
from controller.engine.stalls import rollback_finished, watch_rollback


def reconcile_weight(d: Decision, image: str, canary_goal: int) -> bool:
    """Drive both Deployments toward the weight; True once they have converged there.

    With a traffic router the weight is `status.canaryWeight`, set just before,
    and the route carries it (see routing.py); pods only follow.
    """
    if d.spec.traffic_routing is not None:
        return reconcile_routed(d, image, d.status.canary_weight)
    total = d.total_replicas
    stable_goal = total if d.autoscaled else stable_replicas(total, canary_goal)
    target, canary = d.target, d.observed.canary
    canary_ready = canary_goal == 0 if canary is None else canary.settled(image, canary_goal)

    if (canary is None and canary_goal > 0) or (
        canary is not None and (canary.image != image or canary.replicas != canary_goal)
    ):
        shrinking = canary is not None and canary_goal < canary.replicas
        if not shrinking or target.ready_replicas >= stable_goal:
            d.actions.append(ScaleCanary(image, canary_goal))

    if target.replicas < stable_goal or (target.replicas > stable_goal and canary_ready):
        d.actions.append(ScaleStable(stable_goal))

    return canary_ready and target.replicas == stable_goal and target.ready_replicas >= stable_goal


def start_stable_rollout(d: Decision) -> None:
    """Stable is about to roll to another image with maxUnavailable 0.

    A promotion, a quick rollback and a rollback after promotion all do: each
    remembers stable's strategy, which `settle` restores (and acts while it is
    saved), and when the rollout began, from which a stall is timed (stalls.py).
    A Recreate Deployment rolls too, for the length of the rollout: Recreate
    would stop every stable pod before starting one.
    """
    status, target = d.status, d.target
    status.promotion_started_at = d.now
    if status.saved_strategy is None and target.max_unavailable is not None:
        status.saved_strategy = {
            "maxUnavailable": target.max_unavailable,
            "maxSurge": target.max_surge or "25%",
        }
    _remember_recreate(d)


RECREATE = "Recreate"


def _remember_recreate(d: Decision) -> None:
    """A Recreate target (no rolling bounds) is saved as such, to be made Recreate again.

    Also for a status an earlier version wrote, which saved nothing (or `{}`)
    for a Recreate Deployment.
    """
    if d.target.max_unavailable is None and not (d.status.saved_strategy or {}).get(
        "maxUnavailable"
    ):
        d.status.saved_strategy = {"type": RECREATE}


def promotion_surge(saved: dict[str, str] | None) -> str:
    surge = (saved or {}).get("maxSurge")
    return surge if surge not in (None, "0", "0%") else "1"


def drive_promotion(d: Decision, image: str) -> bool:
    """Roll the new image onto stable at full size; True once it is fully Available."""
    total, target = d.total_replicas, d.target
    _remember_recreate(d)
    unavailable, surge = "0", promotion_surge(d.status.saved_strategy)
    if (
        target.image != image
        or target.replicas != total
        or target.max_unavailable != "0"
        or target.max_surge != surge
    ):
        d.actions.append(UpdateStable(image, d.stable_replicas_to_set, unavailable, surge))
        return False
    # With a router: stable carries the new image at full size, then takes all the traffic.
    return target.settled(image, total) and reset_before_scale_down(d)


def settle(d: Decision) -> None:
    """After a release ends: stable at full size on its image, strategy restored, canary gone.

    Only acts while cleanup is pending (a canary exists or a strategy is saved),
    so a settled release never fights later edits to the Deployment.
    """
    status, target, canary = d.status, d.target, d.observed.canary
    image = status.stable_image or target.image
    if status.promotion_started_at is not None:  # stable rolls back to `image`
        if target.settled(image, d.total_replicas):
            rollback_finished(d, image)
        else:
            watch_rollback(d, image)
    if d.spec.traffic_routing is not None and target.image != image:
        # A promotion cut short (it stalled, or a breach during it): stable goes back
        # to its image at full size first, and only then gets all the traffic back;
        # the canary keeps its share meanwhile (drive_promotion does both, in order).
        if not drive_promotion(d, image):
            return
    elif not reset_before_scale_down(d):
        return  # with a router: nothing is scaled down while the route still sends to the canary
    if canary is None and status.saved_strategy is None:
        return
    total = d.total_replicas
    new_image = target.image != image or (
        target.max_unavailable == "0" and not target.settled(image, total)
    )
    if new_image and not drive_promotion(d, image):
        return  # another image (a rollback after promotion) rolls out with maxUnavailable 0
    saved = status.saved_strategy or {}
    recreate = saved.get("type") == RECREATE
    unavailable = saved.get("maxUnavailable", target.max_unavailable)
    surge = saved.get("maxSurge", target.max_surge)
    if target.max_unavailable is None or recreate:
        unavailable = surge = None
    restored = target.max_unavailable == unavailable and target.max_surge == surge
    if target.image != image or target.replicas != total or not restored:
        update = UpdateStable(image, d.stable_replicas_to_set, unavailable, surge, recreate)
        d.actions.append(update)
        return
    if not target.settled(image, total):
        return
    if canary is not None:
        d.actions.append(DeleteCanary())
        return
    status.saved_strategy = None
