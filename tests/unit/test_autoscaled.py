"""A target sized by a HorizontalPodAutoscaler: stable keeps the HPA's size, the canary runs beside.

The world's HPA overwrites stable's `replicas` before every observation, as
a real one does on each sync; the tests check what the engine asked for, so a
tug of war would show as a single ScaleStable or a sized UpdateStable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from controller.adapters.kubernetes import autoscaled_deployment
from controller.engine.actions import Action, RecordEvent, ScaleCanary, ScaleStable, UpdateStable
from tests.unit.test_properties import SETTINGS, plans, world_for
from tests.unit.world import World, breaking_at, healthy, make_spec, run_ticks

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]


def _resized(world: World) -> list[Action]:
    """Every action that would have written stable's size."""
    return [
        a
        for _, _, actions, _ in world.log
        for a in actions
        if isinstance(a, ScaleStable) or (isinstance(a, UpdateStable) and a.replicas is not None)
    ]


def _world(metric=healthy, hpa=lambda _: 10) -> World:  # type: ignore[no-untyped-def]
    return World(spec=make_spec(steps=STEPS), metric=metric, start=T0, hpa=hpa)


def test_the_canary_runs_beside_an_hpa_sized_stable() -> None:
    world = _world()
    world.run(until=timedelta(minutes=30), every=timedelta(seconds=30))
    assert world.status.phase == "Paused"
    assert world.canary is not None and world.canary.replicas == 1
    assert world.stable.replicas == 10 and not _resized(world)
    events = [a for _, _, acts, _ in world.log for a in acts if isinstance(a, RecordEvent)]
    autoscaled = [e for e in events if e.reason == "Autoscaled"]
    assert autoscaled and "app-hpa" in autoscaled[0].message


def test_the_canary_follows_the_hpa_and_promotion_leaves_its_size_alone() -> None:
    def hpa(now: datetime) -> int:
        return 10 if now < T0 + timedelta(minutes=20) else 20

    world = _world(hpa=hpa)
    world.run(until=timedelta(minutes=19), every=timedelta(seconds=30))
    assert world.canary is not None and world.canary.replicas == 1
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"
    assert world.stable.image == "registry.example.com/app:v2" and world.stable.replicas == 20
    assert world.canary is None and not _resized(world)
    canary_sizes = [
        a.replicas for _, _, acts, _ in world.log for a in acts if isinstance(a, ScaleCanary)
    ]
    assert canary_sizes[0] == 1 and 2 in canary_sizes  # 10% of 10, then of 20


def test_a_breach_rolls_back_without_touching_the_hpa_size() -> None:
    world = _world(metric=breaking_at(T0 + timedelta(minutes=20)), hpa=lambda _: 7)
    world.run(until=timedelta(hours=1), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack" and world.canary is None
    assert world.stable.image == "registry.example.com/app:v1" and world.stable.replicas == 7
    assert not _resized(world)


def test_without_an_hpa_stable_gives_up_the_canary_share() -> None:
    world = World(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    world.run(until=timedelta(minutes=30), every=timedelta(seconds=30))
    assert world.stable.replicas == 9 and _resized(world)  # the check above can fail


@SETTINGS
@given(plans(), st.lists(st.integers(1, 30), min_size=1, max_size=5))
def test_an_hpa_sized_target_is_never_resized(plan: dict[str, object], sizes: list[int]) -> None:
    world = world_for(plan)

    def hpa(now: datetime) -> int:  # a new size every 3 hours
        return sizes[min(len(sizes) - 1, int((now - world.start) / timedelta(hours=3)))]

    world.hpa = hpa
    run_ticks(world, timedelta(hours=24), plan["tick"], plan["lost_ticks"])
    assert not _resized(world)
    phases = {s.phase for _, s, *_ in world.log}
    if plan["breach_minute"] is None:
        assert "RolledBack" not in phases
    if world.status.phase in ("Succeeded", "RolledBack"):
        assert world.canary is None


def test_an_hpa_names_the_deployment_it_sizes() -> None:
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "payments"}
    assert autoscaled_deployment({"spec": {"scaleTargetRef": ref}}) == "payments"
    assert (
        autoscaled_deployment({"spec": {"scaleTargetRef": {**ref, "kind": "StatefulSet"}}}) is None
    )
    other_group = {**ref, "apiVersion": "example.com/v1"}
    assert autoscaled_deployment({"spec": {"scaleTargetRef": other_group}}) is None
    assert autoscaled_deployment({"spec": {}}) is None
