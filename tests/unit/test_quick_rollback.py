"""`canaryctl rollback`: the previous tag back everywhere, fast, without a canary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.api.spec import CanaryReleaseSpec
from controller.engine.actions import RecordEvent, ScaleCanary
from tests.unit.world import World, breaking_at, healthy, make_spec

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]
EVERY = timedelta(seconds=30)


def _promoted_world(**kwargs) -> World:  # type: ignore[no-untyped-def]
    """v2 promoted over v1 after a full canary."""
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0, **kwargs)
    world.run(until=timedelta(hours=2), every=EVERY)
    assert world.status.phase == "Succeeded" and world.status.previous_stable_tag == "v1"
    return world


def _with_tag(spec: CanaryReleaseSpec, tag: str) -> CanaryReleaseSpec:
    return spec.model_copy(update={"release": spec.release.model_copy(update={"tag": tag})})


def _continue(world: World, at: timedelta, until: timedelta) -> None:
    world.start = T0 + at
    world.run(until=until, every=EVERY)


def _events(world: World, since: int = 0) -> list[RecordEvent]:
    return [
        a for _, _, actions, _ in world.log[since:] for a in actions if isinstance(a, RecordEvent)
    ]


def test_rollback_after_promotion_restores_the_previous_tag_without_a_canary() -> None:
    world = _promoted_world()
    mark = len(world.log)
    world.spec = _with_tag(world.spec, "v1")
    world.command = "rollback 2026-11-24T12:00:00Z"
    _continue(world, timedelta(hours=3), timedelta(minutes=5))

    status = world.status
    assert status.phase == "RolledBack" and status.reason == "RollbackRequested"
    assert status.stable_tag == "v1"
    # the rolled-back tag is not offered for the next rollback
    assert status.previous_stable_tag is None
    assert world.stable.image == "registry.example.com/app:v1" and world.stable.replicas == 10
    assert world.canary is None
    # no canary Deployment was ever created, and no step ran
    actions = [a for _, _, acts, _ in world.log[mark:] for a in acts]
    assert not any(isinstance(a, ScaleCanary) for a in actions)
    assert all(s.current_step_index is None for _, s, *_ in world.log[mark:])
    # capacity never dipped while the old image rolled back in
    assert min(cap for *_, cap in world.log[mark:]) >= 10
    # the Deployment's own rolling-update settings are restored afterwards
    assert (world.stable.max_unavailable, world.stable.max_surge) == ("25%", "25%")
    last = status.history[-1]
    assert (last.tag, last.outcome) == ("v2", "RolledBack")
    assert "rolled back from v2 to v1 by a human" in last.reason
    reasons = [e.reason for e in _events(world, mark)]
    assert reasons == ["RollingBack", "RolledBack"]


def test_rollback_is_quick_it_waits_for_no_pause_or_analysis() -> None:
    world = _promoted_world()
    world.spec = _with_tag(world.spec, "v1")
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(minutes=5))
    started = next(t for t, s, *_ in world.log if s.reason == "RollbackRequested")
    done = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    # the canary's pause alone is 1h; the rollback takes as long as the rolling update
    # (10 pods, 3 surged at a time, 20s to Ready, observed every 30s)
    assert done - started < timedelta(minutes=10)


def test_a_breaching_metric_does_not_interrupt_the_rollback() -> None:
    world = _promoted_world()
    world.metric = breaking_at(T0)  # the canary track reports a breach from now on
    world.spec = _with_tag(world.spec, "v1")
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(minutes=5))
    assert world.status.phase == "RolledBack" and world.status.stable_tag == "v1"
    assert world.stable.image.endswith(":v1")


def test_rollback_without_the_tag_change_is_refused_and_changes_nothing() -> None:
    world = _promoted_world()
    before = world.status
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(minutes=2))
    assert world.status.phase == "Succeeded" and world.status.stable_tag == "v2"
    assert world.stable.image.endswith(":v2")
    ignored = [e for e in _events(world) if e.reason == "CommandIgnored"]
    assert len(ignored) == 1 and "previous stable tag v1" in ignored[0].message
    assert world.status.history == before.history


def test_rollback_with_nothing_promoted_yet_is_refused() -> None:
    world = World(spec=make_spec(steps=STEPS, tag="v1"), metric=healthy, start=T0)
    world.run(until=timedelta(minutes=1), every=EVERY)
    assert world.status.phase == "Idle"
    world.command = "rollback 1"
    _continue(world, timedelta(minutes=2), timedelta(minutes=1))
    assert world.status.phase == "Idle"
    ignored = [e for e in _events(world) if e.reason == "CommandIgnored"]
    assert "no previous stable tag" in ignored[0].message


def test_rollback_during_a_canary_rolls_the_canary_back_at_once() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    world.run(until=timedelta(minutes=10), every=EVERY)
    assert world.status.phase == "Paused"
    world.command = "rollback 1"
    _continue(world, timedelta(minutes=11), timedelta(minutes=3))
    status = world.status
    assert status.phase == "RolledBack" and status.reason == "RollbackRequested"
    assert world.canary is None and world.stable.image.endswith(":v1")
    assert world.stable.replicas == 10
    assert status.history[-1].outcome == "RolledBack"


def test_retry_after_a_quick_rollback_does_not_start_a_canary_of_what_runs() -> None:
    world = _promoted_world()
    world.spec = _with_tag(world.spec, "v1")
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(minutes=5))
    world.command = "retry 1"
    _continue(world, timedelta(hours=4), timedelta(minutes=2))
    assert world.status.phase == "RolledBack" and world.canary is None


def test_a_new_tag_after_a_quick_rollback_starts_a_normal_canary() -> None:
    world = _promoted_world()
    world.spec = _with_tag(world.spec, "v1")
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(minutes=5))
    world.spec = _with_tag(world.spec, "v3")
    _continue(world, timedelta(hours=4), timedelta(minutes=10))
    assert world.status.phase == "Paused" and world.status.canary_tag == "v3"
    assert world.status.stable_tag == "v1"


def test_a_second_rollback_does_not_bring_back_the_tag_just_rolled_back() -> None:
    world = _promoted_world()
    world.spec = _with_tag(world.spec, "v1")
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(minutes=5))
    world.spec = _with_tag(world.spec, "v2")
    world.command = "rollback 2"
    mark = len(world.log)
    _continue(world, timedelta(hours=4), timedelta(minutes=1))
    ignored = [e for e in _events(world, mark) if e.reason == "CommandIgnored"]
    assert ignored and "no previous stable tag" in ignored[0].message
    # the tag change alone is an ordinary release: a canary, not a quick switch
    assert world.status.canary_tag == "v2" and world.status.phase in ("Progressing", "Paused")
    assert world.stable.image.endswith(":v1")


def _rolling_back(world: World) -> int:
    """Start the quick rollback and stop while v1 is still rolling onto stable."""
    world.spec = _with_tag(world.spec, "v1")
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(seconds=31))
    assert world.status.reason == "RollbackRequested" and world.status.phase == "Promoting"
    assert any(p.image.endswith(":v2") for p in world.stable.pods)  # not done yet
    return len(world.log)


def test_a_new_tag_during_the_quick_rollback_keeps_v1_as_what_stable_goes_back_to() -> None:
    """The hotfix is bad too: its rollback must restore v1, not v2 that on-call undid."""
    world = _promoted_world()
    mark = _rolling_back(world)
    world.spec = _with_tag(world.spec, "v3")
    world.metric = breaking_at(T0 + timedelta(hours=3, minutes=10))
    _continue(world, timedelta(hours=3, minutes=1), timedelta(minutes=40))

    status = world.status
    assert status.phase == "RolledBack" and status.stable_tag == "v1"
    assert {p.image for p in world.stable.pods} == {"registry.example.com/app:v1"}
    assert [(h.tag, h.outcome) for h in status.history[-2:]] == [
        ("v2", "RolledBack"),
        ("v3", "RolledBack"),
    ]
    started = next(e for e in _events(world, mark) if e.reason == "ReleaseStarted")
    assert "stable: v1" in started.message
    assert all(
        a.image.endswith(":v1")
        for _, _, acts, _ in world.log[mark:]
        for a in acts
        if type(a).__name__ == "UpdateStable"
    )


def test_abort_and_pause_do_not_stop_a_quick_rollback() -> None:
    world = _promoted_world()
    mark = _rolling_back(world)
    world.command = "abort 1"
    _continue(world, timedelta(hours=3, minutes=1), timedelta(seconds=31))
    world.command = "pause 1"
    _continue(world, timedelta(hours=3, minutes=2), timedelta(minutes=10))
    ignored = [e.message for e in _events(world, mark) if e.reason == "CommandIgnored"]
    assert len(ignored) == 2 and all("is not stopped" in m for m in ignored)
    status = world.status
    assert status.phase == "RolledBack" and status.reason == "RollbackRequested"
    assert status.stable_tag == "v1" and status.paused_at is None
    assert {p.image for p in world.stable.pods} == {"registry.example.com/app:v1"}


def test_the_quick_rollback_rolls_out_the_image_the_previous_tag_ran_as() -> None:
    """The image template moved registries after v1: v1's own image comes back, not a guess."""
    world = _promoted_world()
    moved = world.spec.release.model_copy(
        update={"tag": "v1", "image": "mirror.example.com/app:{tag}"}
    )
    world.spec = world.spec.model_copy(update={"release": moved})
    world.command = "rollback 1"
    _continue(world, timedelta(hours=3), timedelta(minutes=5))
    assert world.status.phase == "RolledBack" and world.status.stable_tag == "v1"
    assert world.stable.image == "registry.example.com/app:v1"
