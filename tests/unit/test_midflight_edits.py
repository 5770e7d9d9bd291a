"""Edits that arrive mid-flight: steps shortened, a retry during stable's rollback, a resume
decided with a clock behind the pause, a full promotion of a paused canary, a tag adopted
during the watch after promotion, and a human setting the target's image mid-canary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.api.spec import CanaryReleaseSpec
from controller.engine.actions import RecordEvent
from tests.unit.auditworld import AuditWorld, spec_with
from tests.unit.test_post_promotion import WATCH
from tests.unit.world import World, healthy, make_spec

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
EVERY = timedelta(seconds=30)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]
V1, V2, V3 = (f"registry.example.com/app:{t}" for t in ("v1", "v2", "v3"))


def _with_tag(spec: CanaryReleaseSpec, tag: str) -> CanaryReleaseSpec:
    return spec.model_copy(update={"release": spec.release.model_copy(update={"tag": tag})})


def _run(world: World, start: timedelta, until: timedelta) -> None:
    world.start = T0 + start
    world.run(until=until, every=EVERY)


def _events(world: World, since: int) -> list[str]:
    return [
        a.reason for _, _, acts, _ in world.log[since:] for a in acts if isinstance(a, RecordEvent)
    ]


# Steps shortened below the current step: the release goes on from the last one (every
# decision used to raise IndexError there).
def test_shortening_the_steps_below_the_current_step_does_not_crash_decide() -> None:
    long = [
        {"setWeight": 10},
        {"pause": {"duration": "10m"}},
        {"setWeight": 50},
        {"pause": {"duration": "1h"}},
        {"setWeight": 100},
    ]
    world = World(spec=make_spec(steps=long), metric=healthy, start=T0)
    _run(world, timedelta(0), timedelta(minutes=15))
    assert world.status.current_step_index == 3
    world.spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "10m"}}])
    _run(world, timedelta(minutes=15, seconds=30), timedelta(minutes=1))  # IndexError on main
    assert world.status.phase in ("Paused", "Progressing", "Promoting")


# `retry` while stable still rolls back to its image waits, as a new tag does: the canary
# must not run beside, and be judged against, the half-promoted build.
def test_retry_waits_until_stable_runs_its_own_image_again() -> None:
    world = World(
        spec=make_spec(steps=STEPS), metric=healthy, start=T0, ready_delay=timedelta(minutes=2)
    )
    _run(world, timedelta(0), timedelta(minutes=70))
    assert world.status.phase == "Promoting"
    world.command = "abort 1"
    _run(world, timedelta(minutes=70, seconds=30), timedelta(0))
    assert world.status.phase == "RolledBack" and world.status.promotion_started_at is not None
    world.command = "retry 1"
    _run(world, timedelta(minutes=71), timedelta(0))
    old = [p for p in world.stable.pods if p.image == V2]
    # the retried canary must not run (and be judged) beside stable pods of the canary's build
    assert not (world.status.phase in ("Progressing", "Paused") and old), (
        f"{world.status.phase} with {len(old)} stable pods still on v2"
    )


# A resume decided with a clock behind the pause's start (leader failover with skew)
# must not move stepStartedAt back, which would end the pause early by the skew.
def test_resume_with_a_clock_behind_the_pause_never_shortens_the_step() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    _run(world, timedelta(0), timedelta(minutes=5))
    started = world.status.step_started_at
    world.command = "pause 1"
    _run(world, timedelta(minutes=10), timedelta(0))
    world.command = "resume 1"
    _run(world, timedelta(minutes=10) - timedelta(minutes=30), timedelta(0))
    assert started is not None and world.status.step_started_at is not None
    assert world.status.step_started_at >= started


# `promote-full` ends a pause: left set, `canaryctl status` said paused in Succeeded,
# and `resume` was acted on there.
def test_promote_full_ends_a_human_pause() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    _run(world, timedelta(0), timedelta(minutes=5))
    world.command = "pause 1"
    _run(world, timedelta(minutes=5, seconds=30), timedelta(0))
    world.command = "promote-full 1"
    _run(world, timedelta(minutes=6), timedelta(minutes=10))
    assert world.status.phase == "Succeeded"
    assert world.status.paused_at is None
    mark = len(world.log)
    world.command = "resume 2"
    _run(world, timedelta(minutes=17), timedelta(0))
    assert "Resumed" not in _events(world, mark)


# A tag adopted during the watch after promotion (image and tag set together) ends that
# watch: kept, a breach put back v1, two releases back.


def test_a_tag_adopted_during_the_watch_is_not_judged_by_the_previous_watch() -> None:
    bad = {"on": False}
    world = AuditWorld(
        spec=spec_with(post_promotion=WATCH, steps=[{"setWeight": 10}, {"setWeight": 100}]),
        metric=healthy,
        start=T0,
        after=lambda _q, _t: 0.3 if bad["on"] else 0.01,
    )
    _run(world, timedelta(0), timedelta(minutes=10))
    assert world.status.phase == "Succeeded" and world.status.stable_tag == "v2"
    world.stable.image = V3  # a hotfix applied to the Deployment and the release together
    world.spec = _with_tag(world.spec, "v3")
    _run(world, timedelta(minutes=10, seconds=30), timedelta(minutes=2))
    assert world.status.stable_tag == "v3"
    bad["on"] = True
    _run(world, timedelta(minutes=13), timedelta(minutes=10))
    # v2's watch must not roll v3 back to v1, skipping v2
    assert world.stable.image != V1, (world.status.reason, world.status.message)


# A hotfix set on the Deployment by hand during the canary: the canary is not judged
# against it, and the rollback that ends the canary does not silently undo it.
def test_an_image_set_by_hand_mid_canary_ends_the_canary_and_stays() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    _run(world, timedelta(0), timedelta(minutes=5))
    assert world.status.phase == "Paused" and world.canary is not None
    hotfix = "registry.example.com/app:v1-hotfix"
    world.stable.image = hotfix
    mark = len(world.log)
    _run(world, timedelta(minutes=5, seconds=30), timedelta(minutes=5))
    status = world.status
    assert (status.phase, status.reason) == ("RolledBack", "TargetImageChanged")
    assert (status.stable_image, status.stable_tag) == (hotfix, "v1-hotfix")
    assert world.stable.image == hotfix and world.canary is None
    assert status.history[-1].outcome == "Superseded"
    assert "Superseded" in _events(world, mark)
    world.command = "retry 1"  # the canary again, judged against the hotfix
    _run(world, timedelta(minutes=11), timedelta(minutes=1))
    assert world.status.phase in ("Progressing", "Paused") and world.stable.image == hotfix


def test_an_image_of_another_form_is_kept_without_a_tag() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    _run(world, timedelta(0), timedelta(minutes=5))
    world.stable.image = "mirror.example.org/app@sha256:" + "0" * 64
    _run(world, timedelta(minutes=5, seconds=30), timedelta(minutes=2))
    assert world.status.stable_image == world.stable.image
    assert world.status.stable_tag is None


def test_removing_the_tag_mid_canary_is_setting_it_back_to_stable() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    _run(world, timedelta(0), timedelta(minutes=5))
    assert world.status.phase == "Paused"
    world.spec = world.spec.model_copy(
        update={"release": world.spec.release.model_copy(update={"tag": None})}
    )
    _run(world, timedelta(minutes=5, seconds=30), timedelta(minutes=3))
    status = world.status
    assert (status.phase, status.reason) == ("RolledBack", "Superseded")
    assert status.message == "the tag was removed"
    assert world.canary is None and world.stable.image == V1
    _run(world, timedelta(minutes=9), timedelta(hours=2))  # and nothing more happens
    assert world.status.phase == "RolledBack" and world.status.history[-1].outcome == "Superseded"
