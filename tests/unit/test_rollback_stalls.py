"""A rollback whose own rollout cannot finish is reported, not hidden behind `RolledBack`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from controller.api.spec import HealthCheck
from controller.api.status import Condition
from controller.engine.actions import DeleteCanary, RecordEvent
from controller.engine.conditions import condition_status, find_condition
from controller.engine.stalls import ROLLBACK_PROGRESSING
from tests.unit.auditworld import AuditWorld, spec_with
from tests.unit.world import OldTimeoutWorld, World, breaking_at, healthy, make_spec

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
EVERY = timedelta(seconds=30)
V1 = "registry.example.com/app:v1"


def _condition(world: World) -> Condition | None:
    return find_condition(world.status.conditions, ROLLBACK_PROGRESSING)


def _events(world: World, reason: str) -> list[RecordEvent]:
    return [
        a
        for _, _, actions, _ in world.log
        for a in actions
        if isinstance(a, RecordEvent) and a.reason == reason
    ]


def _continue(world: World, at: timedelta, until: timedelta) -> None:
    world.start = T0 + at
    world.run(until=until, every=EVERY)


def _make_room(world: World, now: datetime) -> None:
    """A human fixes what kept v1's new pods from becoming Ready."""
    world.broken_tag = None
    world.stable.ready_delay = world.ready_delay
    world.stable.pods = [replace(p, ready_at=min(p.ready_at, now)) for p in world.stable.pods]


def _watched_world_whose_v1_no_longer_starts() -> AuditWorld:
    """v2 passes its canary and crash-loops as stable; by then v1 cannot start any more."""
    world = AuditWorld(
        spec=spec_with(post_promotion={"duration": "1h"}, steps=STEPS),
        metric=healthy,
        start=T0,
        crashes_as_stable="registry.example.com/app:v2",
        broken_tag="v1",
    )
    world.stable.progress_deadline = timedelta(minutes=10)
    return world


def test_a_rollback_after_promotion_that_stalls_is_reported_until_it_moves_again() -> None:
    world = _watched_world_whose_v1_no_longer_starts()
    world.run(until=timedelta(hours=1), every=EVERY)
    status = world.status
    assert (status.phase, status.reason) == ("RolledBack", "PostPromotionBreach")
    assert world.stable.image == V1 and not world.stable.done(world.log[-1][0])
    stalled = _condition(world)
    assert stalled is not None and (stalled.status, stalled.reason) == (
        "False",
        "ProgressDeadlineExceeded",
    )
    assert f"rolling stable back to {V1} on all 10 replicas" in stalled.message
    assert "progressDeadlineSeconds (600s)" in stalled.message
    # reported once a whole deadline after the rollback began, and only once
    rolled_back = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    first = next(
        t
        for t, s, *_ in world.log
        if condition_status(s.conditions, ROLLBACK_PROGRESSING) == "False"
    )
    assert timedelta(minutes=10) <= first - rolled_back <= timedelta(minutes=11)
    assert len(_events(world, "RollbackStalled")) == 1
    # the phase still says why it rolled back
    assert "CrashLoopBackOff" in (status.message or "")

    now = T0 + timedelta(hours=1)
    _make_room(world, now)
    _continue(world, timedelta(hours=1), timedelta(minutes=30))
    done = _condition(world)
    assert done is not None and (done.status, done.reason) == ("True", "Completed")
    assert world.stable.done(world.log[-1][0]) and world.status.promotion_started_at is None
    assert len(_events(world, "RollbackStalled")) == 1


def test_a_quick_rollback_that_stalls_is_reported_and_keeps_trying() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    world.stable.progress_deadline = timedelta(minutes=10)
    world.run(until=timedelta(hours=1), every=EVERY)
    assert world.status.phase == "Succeeded"
    world.broken_tag = "v1"
    world.spec = world.spec.model_copy(
        update={"release": world.spec.release.model_copy(update={"tag": "v1"})}
    )
    world.command = "rollback 1"
    _continue(world, timedelta(hours=1), timedelta(minutes=30))
    status = world.status
    assert (status.phase, status.reason) == ("Promoting", "RollbackRequested")
    stalled = _condition(world)
    assert stalled is not None and stalled.status == "False"
    assert len(_events(world, "RollbackStalled")) == 1

    _make_room(world, T0 + timedelta(hours=1, minutes=30))
    _continue(world, timedelta(hours=1, minutes=30), timedelta(minutes=30))
    assert (world.status.phase, world.status.reason) == ("RolledBack", "RollbackRequested")
    done = _condition(world)
    assert done is not None and (done.status, done.reason) == ("True", "Completed")


def test_a_slow_rollback_that_keeps_progressing_raises_nothing() -> None:
    world = _watched_world_whose_v1_no_longer_starts()
    world.broken_tag = None
    world.ready_delay = timedelta(minutes=8)  # each v1 pod slow, but each one comes
    world.run(until=timedelta(hours=3), every=EVERY)
    assert (world.status.phase, world.status.reason) == ("RolledBack", "PostPromotionBreach")
    assert world.stable.image == V1 and world.stable.done(world.log[-1][0])
    assert _condition(world) is None and not _events(world, "RollbackStalled")
    assert world.status.promotion_started_at is None


def test_a_canary_rollback_does_not_blame_stable_for_a_timeout_of_its_own() -> None:
    """Only the canary goes when it breaches: stable was never touched, so an old
    timeout on stable's Deployment is not this rollback's."""

    patient = HealthCheck(ready_deadline="30m")
    world = OldTimeoutWorld(
        spec=make_spec(steps=STEPS).model_copy(update={"health_check": patient}),
        metric=breaking_at(T0 + timedelta(minutes=20)),
        start=T0,
        ready_delay=timedelta(minutes=15),  # stable's way back to full size outlasts a deadline
    )
    world.run(until=timedelta(hours=1), every=EVERY)
    assert (world.status.phase, world.status.reason) == ("RolledBack", "MetricBreach")
    rolled_back = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    cleaned = next(
        t for t, _, acts, _ in world.log if any(isinstance(a, DeleteCanary) for a in acts)
    )
    assert cleaned - rolled_back > timedelta(minutes=10)
    assert _condition(world) is None and world.status.promotion_started_at is None


def test_a_promotion_cut_short_whose_way_back_stalls_is_reported() -> None:
    """A breach halfway through the promotion: some v1 pods were already replaced, and
    the v1 pods that should take their place again cannot start."""
    world = World(
        spec=make_spec(steps=STEPS),
        metric=breaking_at(T0 + timedelta(minutes=17)),
        start=T0,
        ready_delay=timedelta(minutes=2),
        broken_tag="v1",
    )
    world.stable.progress_deadline = timedelta(minutes=10)
    world.run(until=timedelta(hours=1), every=EVERY)
    promoting = next(t for t, s, *_ in world.log if s.phase == "Promoting")
    rolled_back = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    assert promoting < T0 + timedelta(minutes=17) <= rolled_back
    assert (world.status.phase, world.status.reason) == ("RolledBack", "MetricBreach")
    assert world.stable.image == V1
    stalled = _condition(world)
    assert stalled is not None and stalled.status == "False"
    assert len(_events(world, "RollbackStalled")) == 1


def test_a_new_release_ends_the_report_of_a_rollback_still_stalled() -> None:
    world = _watched_world_whose_v1_no_longer_starts()
    world.run(until=timedelta(hours=1), every=EVERY)
    stalled = _condition(world)
    assert stalled is not None and stalled.status == "False"
    # the fix ships as v3 instead (the nodes still have no room for v1)
    world.spec = world.spec.model_copy(
        update={"release": world.spec.release.model_copy(update={"tag": "v3"})}
    )
    world.crashes_as_stable = None
    _continue(world, timedelta(hours=1), timedelta(seconds=30))
    superseded = _condition(world)
    assert superseded is not None and (superseded.status, superseded.reason) == (
        "True",
        "Superseded",
    )
    assert "the release of v3 started" in superseded.message
    assert world.status.promotion_started_at is None
    assert len(_events(world, "RollbackStalled")) == 1
