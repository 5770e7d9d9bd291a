"""The engine's wake-up deadlines: sleeping until them never changes a decision.

The runtime reconciles a release only when a watch saw something change or
when `next_wakeup` says something is due. The property test drives the same
simulated 24-hour timelines twice, once deciding on every tick (the old timer)
and once only when woken, and requires the same actions at the same moments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given

from controller.api.status import CanaryReleaseStatus, PostPromotionStatus
from controller.engine.actions import Action, RecordEvent
from controller.engine.decide import decide
from controller.engine.wakeup import next_wakeup
from tests.unit.test_properties import SETTINGS, plans, world_for
from tests.unit.world import World, make_spec

T0 = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
POLL, RESYNC = timedelta(seconds=10), timedelta(minutes=5)
SPEC = make_spec(steps=[{"setWeight": 20}, {"pause": {"duration": "30m"}}], interval="5m")


def wake(status: CanaryReleaseStatus, spec: object = SPEC) -> datetime:
    return next_wakeup(spec, status, T0, poll=POLL, resync=RESYNC)  # type: ignore[arg-type]


def test_an_idle_release_sleeps_until_the_resync() -> None:
    assert wake(CanaryReleaseStatus(phase="Idle")) == T0 + RESYNC


def test_a_pause_wakes_at_the_next_analysis_or_its_end_whichever_is_first() -> None:
    status = CanaryReleaseStatus(
        phase="Paused",
        canary_tag="v2",
        current_step_index=1,
        step_started_at=T0 - timedelta(minutes=28),
        next_analysis_at=T0 + timedelta(minutes=4),
    )
    assert wake(status) == T0 + timedelta(minutes=2)  # the pause ends first
    status.step_started_at = T0
    assert wake(status) == T0 + timedelta(minutes=4)  # now the analysis is first


def test_a_pause_held_by_a_human_has_no_end() -> None:
    status = CanaryReleaseStatus(
        phase="Paused",
        canary_tag="v2",
        current_step_index=1,
        step_started_at=T0 - timedelta(minutes=29),
        paused_at=T0 - timedelta(minutes=1),
    )
    assert wake(status) == T0 + RESYNC


def test_phases_waiting_on_unwatched_objects_are_polled() -> None:
    for phase in ("Waiting", "Blocked", "Progressing", "Promoting"):
        assert wake(CanaryReleaseStatus(phase=phase)) == T0 + POLL  # type: ignore[arg-type]


def test_the_readiness_deadline_wakes_a_release() -> None:
    status = CanaryReleaseStatus(
        phase="Paused",
        canary_tag="v2",
        current_step_index=1,
        step_started_at=T0,
        canary_unready_since=T0 - timedelta(minutes=9, seconds=30),
    )
    assert wake(status) == T0 + timedelta(seconds=30)  # healthCheck.readyDeadline is 10m


def test_the_watch_after_promotion_wakes_at_each_look_and_at_its_end() -> None:
    status = CanaryReleaseStatus(
        phase="Succeeded",
        next_analysis_at=T0 + timedelta(minutes=3),
        post_promotion=PostPromotionStatus(
            state="Watching", started_at=T0, until=T0 + timedelta(minutes=2)
        ),
    )
    assert wake(status) == T0 + timedelta(minutes=2)


def test_an_overdue_deadline_means_now() -> None:
    status = CanaryReleaseStatus(
        phase="Paused",
        canary_tag="v2",
        current_step_index=1,
        step_started_at=T0,
        next_analysis_at=T0 - timedelta(minutes=1),
    )
    assert wake(status) == T0


Timeline = list[tuple[datetime, list[Action]]]


def _drive(plan: dict[str, object], *, when_woken: bool) -> tuple[Timeline, int, World]:
    """Decide on every tick, or only when woken: by a deadline, a Deployment change, or a move."""
    world, tick = world_for(plan), plan["tick"]
    assert isinstance(tick, timedelta)
    timeline: Timeline = []
    decisions, due, seen, moved = 0, T0, None, True
    now = T0
    while now <= T0 + timedelta(hours=24):
        views = (world.stable.view(now), world.canary.view(now) if world.canary else None)
        if not when_woken or moved or views != seen or now >= due:
            before = (world.status.phase, world.status.current_step_index)
            observed = world.observe(now)
            world.status, actions = decide(world.spec, world.status, observed, now)
            world.apply(actions)
            decisions += 1
            acted = [a for a in actions if not isinstance(a, RecordEvent)]
            moved = bool(acted) or before != (world.status.phase, world.status.current_step_index)
            due = next_wakeup(world.spec, world.status, now, poll=tick, resync=RESYNC)
            seen = (world.stable.view(now), world.canary.view(now) if world.canary else None)
            if actions:
                timeline.append((now, actions))
        world.stable.step(now)
        if world.canary is not None:
            world.canary.step(now)
        now += tick
    return timeline, decisions, world


@SETTINGS
@given(plans())
def test_deciding_only_when_woken_takes_the_same_actions(plan: dict[str, object]) -> None:
    every_tick, ticks, full = _drive(plan, when_woken=False)
    woken, decisions, lean = _drive(plan, when_woken=True)
    assert woken == every_tick
    assert lean.status.phase == full.status.phase
    assert lean.status.stable_tag == full.status.stable_tag
    assert decisions <= ticks


def test_a_rollback_of_stable_is_polled_so_its_stall_is_seen_without_an_event() -> None:
    rolling_back = CanaryReleaseStatus(phase="RolledBack", promotion_started_at=T0)
    assert wake(rolling_back) == T0 + POLL
    settled = CanaryReleaseStatus(phase="RolledBack")
    assert wake(settled) == T0 + RESYNC


def test_a_closed_promote_window_wakes_the_release_when_it_opens() -> None:
    from controller.api.gates import GatesStatus

    status = CanaryReleaseStatus(
        phase="Paused",
        canary_tag="v2",
        current_step_index=2,
        reason="OutsideDeployWindow",
        gates=GatesStatus(not_before=T0 + timedelta(minutes=3)),
    )
    assert wake(status) == T0 + timedelta(minutes=3)  # not the resync, 5 minutes away
    # a window that no longer holds anything (the release was rolled back meanwhile)
    # is no deadline, past or not: it would wake the release every second
    for when in (T0 - timedelta(minutes=1), T0 + timedelta(minutes=3)):
        ended = CanaryReleaseStatus(
            phase="RolledBack", reason="MetricBreach", gates=GatesStatus(not_before=when)
        )
        assert wake(ended) == T0 + RESYNC


def test_removing_the_analysis_or_the_watch_leaves_no_overdue_deadline() -> None:
    """Either used to leave its last deadline behind: woken every second from then on."""
    spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}])
    world = World(spec=spec, metric=lambda q, t, at: 0.01, start=T0)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.next_analysis_at is not None
    world.spec = spec.model_copy(update={"analysis": None})
    world.tick(T0 + timedelta(minutes=10, seconds=30))
    later = T0 + timedelta(minutes=30)
    assert next_wakeup(world.spec, world.status, later, poll=POLL, resync=RESYNC) > later

    world = _promoted_and_watched()
    world.spec = world.spec.model_copy(update={"post_promotion": None})
    world.tick(T0 + timedelta(hours=1, minutes=30))
    assert world.status.post_promotion.state == "Ended"
    much_later = T0 + timedelta(hours=5)
    assert next_wakeup(world.spec, world.status, much_later, poll=POLL, resync=RESYNC) == (
        much_later + RESYNC
    )


def _promoted_and_watched() -> World:
    """v2 promoted 10 minutes ago, under a 2-hour watch."""
    spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}])
    watched = spec.model_validate(
        {**spec.model_dump(by_alias=True), "postPromotion": {"duration": "2h", "interval": "1m"}}
    )
    world = World(spec=watched, metric=lambda q, t, at: 0.01, start=T0)
    world.run(until=timedelta(hours=1, minutes=20), every=timedelta(seconds=30))
    assert world.status.post_promotion is not None
    assert world.status.post_promotion.state == "Watching"
    return world


def test_a_new_release_ends_the_last_one_s_watch() -> None:
    world = _promoted_and_watched()
    release = world.spec.release.model_copy(update={"tag": "v3"})
    world.spec = world.spec.model_copy(update={"release": release})
    world.tick(T0 + timedelta(hours=1, minutes=30))
    assert world.status.canary_tag == "v3" and world.status.post_promotion.state == "Ended"
