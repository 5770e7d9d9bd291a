"""Watching after promotion: a breach puts the previous image back without a capacity dip."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, PostPromotionStatus
from controller.engine.actions import RecordEvent, UpdateStable
from controller.engine.decide import decide
from controller.engine.observations import DeploymentView, Measurement, Observed, PodHealth
from tests.unit.auditworld import AuditWorld, spec_with
from tests.unit.world import healthy

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
WATCH = {
    "duration": "1h",
    "interval": "1m",
    "metrics": [
        {
            "name": "error-rate",
            "query": 'sum(rate(errors{track="{{track}}"}[{{window}}]))',
            "threshold": {"max": 0.05},
        }
    ],
}
V1, V2 = "registry.example.com/app:v1", "registry.example.com/app:v2"


def _world(after_breach: datetime | None, watch: dict[str, object] = WATCH) -> AuditWorld:
    def after(promql: str, at: datetime) -> float | None:
        assert 'track="stable"' in promql
        return 0.3 if after_breach is not None and at >= after_breach else 0.01

    spec = spec_with(post_promotion=watch, steps=STEPS)
    return AuditWorld(spec=spec, metric=healthy, start=T0, after=after)


def _event_reasons(world: AuditWorld) -> list[str]:
    return [a.reason for _, _, acts, _ in world.log for a in acts if isinstance(a, RecordEvent)]


def test_breach_after_promotion_rolls_stable_back_to_the_previous_image() -> None:
    world = _world(after_breach=T0 + timedelta(minutes=40))
    world.run(until=timedelta(minutes=30), every=timedelta(seconds=30))
    promoted = world.status
    assert promoted.phase == "Succeeded" and promoted.previous_stable_image == V1
    assert promoted.post_promotion is not None and promoted.post_promotion.state == "Watching"
    assert world.stable.image == V2

    world.start = T0 + timedelta(minutes=30, seconds=30)
    world.run(until=timedelta(hours=1), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "RolledBack" and status.reason == "PostPromotionBreach"
    assert "after promotion, metric error-rate: value 0.3 > max 0.05" in (status.message or "")
    assert 'track="stable"' in (status.message or "")
    assert world.stable.image == V1 and world.stable.replicas == 10
    assert status.stable_tag == "v1" and status.stable_image == V1
    assert status.post_promotion is not None and status.post_promotion.state == "RolledBack"
    assert [(h.tag, h.outcome) for h in status.history] == [
        ("v2", "Succeeded"),
        ("v2", "RolledBack"),
    ]
    # capacity never dipped: the image went back with maxUnavailable 0 ...
    assert min(cap for *_, cap in world.log) >= 10
    rollback = [
        a
        for _, _, acts, _ in world.log
        for a in acts
        if isinstance(a, UpdateStable) and a.image == V1
    ]
    assert rollback[0].max_unavailable == "0"
    # ... and the Deployment's own strategy is back afterwards
    assert (world.stable.max_unavailable, world.stable.max_surge) == ("25%", "25%")
    assert status.saved_strategy is None
    assert "RolledBack" in _event_reasons(world)


def test_rolled_back_tag_is_neither_adopted_nor_retried_by_itself() -> None:
    world = _world(after_breach=T0 + timedelta(minutes=20))
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack" and world.stable.image == V1
    assert world.status.canary_tag == "v2" and world.canary is None
    assert sum(1 for *_, acts, _ in world.log for a in acts if isinstance(a, UpdateStable)) <= 4


def test_a_quiet_watch_ends_and_stops_measuring() -> None:
    world = _world(after_breach=None)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "Succeeded" and world.stable.image == V2
    assert status.post_promotion is not None and status.post_promotion.state == "Passed"
    assert status.post_promotion.metrics[0].verdict == "pass"
    assert status.next_analysis_at is None
    assert _event_reasons(world).count("WatchPassed") == 1


def test_a_breach_after_the_watch_ended_is_not_acted_on() -> None:
    world = _world(after_breach=T0 + timedelta(hours=1, minutes=30))
    world.run(until=timedelta(hours=3), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.stable.image == V2


def test_unreachable_prometheus_during_the_watch_never_rolls_back() -> None:
    world = _world(after_breach=None)

    def down(promql: str, at: datetime) -> float | None:
        return None  # no data: held, never a breach

    world.after = down
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.stable.image == V2
    watch = world.status.post_promotion
    assert watch is not None and watch.metrics[0].verdict == "inconclusive"


def _watching_v2(
    previous_image: str | None,
) -> tuple[CanaryReleaseSpec, CanaryReleaseStatus, DeploymentView]:
    """v2 promoted over v1 at T0 and watched for an hour; `previous_image` None: none kept."""
    status = CanaryReleaseStatus(
        phase="Succeeded",
        stable_tag="v2",
        stable_image=V2,
        previous_stable_tag="v1",
        previous_stable_image=previous_image,
        post_promotion=PostPromotionStatus(
            state="Watching", started_at=T0, until=T0 + timedelta(hours=1)
        ),
    )
    target = DeploymentView("app", 10, V2, 10, 10, 10, max_unavailable="25%", max_surge="25%")
    return spec_with(post_promotion=WATCH, steps=STEPS), status, target


def test_the_watch_runs_as_long_as_it_was_asked_to_with_its_target_missing_meanwhile() -> None:
    """Nothing was watched for the 30 minutes the Deployment was gone: they are added."""
    spec, status, target = _watching_v2(previous_image=V1)
    gone, _ = decide(spec, status, Observed(None), T0 + timedelta(minutes=10))
    assert gone.post_promotion is not None and gone.post_promotion.until == T0 + timedelta(hours=1)
    back, _ = decide(spec, gone, Observed(target), T0 + timedelta(minutes=40))
    assert back.post_promotion is not None and back.post_promotion.state == "Watching"
    assert back.post_promotion.until == T0 + timedelta(hours=1, minutes=30)


def test_a_breach_with_no_previous_image_is_reported_not_acted_on() -> None:
    """A release promoted by an older controller kept no previous image: say so, change nothing."""
    spec, status, target = _watching_v2(previous_image=None)
    breach = (Measurement("error-rate", 0.3, None, "errors"),)
    observed = Observed(target, post_promotion=breach)
    new, actions = decide(spec, status, observed, T0 + timedelta(minutes=5))
    assert new.phase == "Succeeded" and new.stable_image == V2
    assert new.post_promotion is not None and new.post_promotion.state == "Breached"
    assert not [a for a in actions if isinstance(a, UpdateStable)]
    [event] = [a for a in actions if isinstance(a, RecordEvent)]
    assert event.reason == "PostPromotionBreach" and "no previous image" in event.message


def _crashing_world(watch: dict[str, object] | None) -> AuditWorld:
    """v2 passes its canary, then its pods crash-loop once they carry all the traffic."""
    world = _world(after_breach=None, watch=watch) if watch else _unwatched_world()
    world.crashes_as_stable = V2
    return world


def _unwatched_world() -> AuditWorld:
    return AuditWorld(spec=spec_with(steps=STEPS), metric=healthy, start=T0)


def test_promoted_pods_that_crash_loop_roll_stable_back_before_any_metric_moves() -> None:
    world = _crashing_world(WATCH)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "RolledBack" and status.reason == "PostPromotionBreach"
    assert re.search(
        r"after promotion, stable pod app-\d+ is in CrashLoopBackOff", status.message or ""
    )
    assert world.stable.image == V1 and status.stable_image == V1
    assert [(h.tag, h.outcome) for h in status.history] == [
        ("v2", "Succeeded"),
        ("v2", "RolledBack"),
    ]
    # the pods alone decided, before the first measurement was due (interval 1m)
    watch = status.post_promotion
    assert watch is not None and watch.metrics == []
    promoted, rolled_back = (h.finished_at for h in status.history)
    assert promoted is not None and rolled_back is not None
    # the pass after the promotion, as stable's pods are read only once watched
    assert timedelta(0) < rolled_back - promoted <= timedelta(seconds=30)


def test_a_watch_without_metrics_holds_stable_to_pod_health_alone() -> None:
    watch = {"duration": "1h"}
    quiet = _world(after_breach=None, watch=watch)
    quiet.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert quiet.status.phase == "Succeeded" and quiet.stable.image == V2
    assert quiet.status.post_promotion is not None
    assert quiet.status.post_promotion.state == "Passed"
    assert _event_reasons(quiet).count("WatchPassed") == 1
    # nothing to measure: no analysis falls due, so the runtime sleeps until the end
    watched = [s for _, s, *_ in quiet.log if s.post_promotion is not None]
    assert watched and all(s.next_analysis_at is None for s in watched)

    crashing = _crashing_world(watch)
    crashing.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert crashing.status.phase == "RolledBack" and crashing.stable.image == V1


def test_stable_pod_health_is_not_judged_without_a_watch_or_after_it() -> None:
    unwatched = _crashing_world(None)
    unwatched.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert unwatched.status.phase == "Succeeded" and unwatched.stable.image == V2

    ended = _world(after_breach=None)
    ended.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert ended.status.post_promotion is not None
    assert ended.status.post_promotion.state == "Passed"
    ended.crashes_as_stable = V2
    ended.start = T0 + timedelta(hours=2)
    ended.run(until=timedelta(hours=3), every=timedelta(seconds=30))
    assert ended.status.phase == "Succeeded" and ended.stable.image == V2


def test_stable_pods_past_the_restart_limit_are_a_breach_after_promotion() -> None:
    spec, status, target = _watching_v2(previous_image=V1)
    limit = spec.health_check.max_restarts
    below = Observed(target, stable_pods=PodHealth(max_restarts=limit - 1))
    new, _ = decide(spec, status, below, T0 + timedelta(minutes=5))
    assert new.phase == "Succeeded"
    at_limit = Observed(target, stable_pods=PodHealth(max_restarts=limit))
    new, actions = decide(spec, status, at_limit, T0 + timedelta(minutes=5))
    assert new.phase == "RolledBack" and new.reason == "PostPromotionBreach"
    assert f"a stable container restarted {limit} times (limit {limit})" in (new.message or "")
    assert [a.image for a in actions if isinstance(a, UpdateStable)] == [V1]


def test_metrics_removed_mid_watch_leave_no_analysis_due() -> None:
    """Otherwise the overdue analysis time would wake the release on every pass."""
    world = _world(after_breach=None)
    world.run(until=timedelta(minutes=30), every=timedelta(seconds=30))
    assert world.status.post_promotion is not None and world.status.next_analysis_at is not None
    watch = world.spec.post_promotion
    assert watch is not None
    world.spec = world.spec.model_copy(
        update={"post_promotion": watch.model_copy(update={"metrics": []})}
    )
    world.start = T0 + timedelta(minutes=30)
    world.run(until=timedelta(seconds=30), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.status.next_analysis_at is None
