"""The engine with a traffic router: exact weights, and the order things happen in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.engine.actions import RecordEvent
from controller.engine.conditions import condition_status
from controller.engine.routing import routed_canary_replicas, stable_share_replicas
from tests.unit.routedworld import RoutedWorld, make_routed_spec
from tests.unit.world import breaking_at, healthy, make_spec

T0 = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
TICK = timedelta(seconds=10)
STEPS = [
    {"setWeight": 10},
    {"pause": {"duration": "10m"}},
    {"setWeight": 50},
    {"pause": {"duration": "10m"}},
    {"setWeight": 100},
]


def _world(**kwargs: object) -> RoutedWorld:
    spec_args = {k: kwargs.pop(k) for k in ("header", "dynamic", "steps") if k in kwargs}
    spec_args.setdefault("steps", STEPS)
    return RoutedWorld(
        spec=make_routed_spec(**spec_args),  # type: ignore[arg-type]
        metric=kwargs.pop("metric", healthy),  # type: ignore[arg-type]
        start=T0,
        replicas=kwargs.pop("replicas", 4),  # type: ignore[arg-type]
        ready_delay=kwargs.pop("ready_delay", timedelta(seconds=60)),  # type: ignore[arg-type]
        broken_tag=kwargs.pop("broken_tag", None),  # type: ignore[arg-type]
    )


def _first(world: RoutedWorld, action: str) -> datetime:
    return next(t for t, name in world.order if name == action)


def test_replicas_follow_the_weight() -> None:
    assert routed_canary_replicas(10, 4) == 1  # 10% of 4 pods needs one pod
    assert routed_canary_replicas(30, 4) == 2  # rounded up: never under-provisioned
    assert routed_canary_replicas(0, 4) == 1  # at least one, for the header route
    assert routed_canary_replicas(99, 4) == 4
    spec = make_routed_spec(dynamic=True).traffic_routing
    fixed = make_routed_spec().traffic_routing
    assert spec is not None and fixed is not None
    assert stable_share_replicas(fixed, 50, 10) == 10
    assert stable_share_replicas(spec, 50, 10) == 5
    assert stable_share_replicas(spec, 95, 10) == 1


def test_the_weight_is_exact_at_four_replicas_and_stable_stays_full() -> None:
    world = _world()
    world.run(until=timedelta(minutes=5), every=TICK)
    assert world.status.phase == "Paused"
    assert world.route.weight == 10  # not 25%: one pod of four
    assert world.canary is not None and world.canary.replicas == 1
    assert world.stable.replicas == 4
    assert "ScaleStable" not in {name for _, name in world.order}
    assert world.status.traffic is not None and world.status.traffic.weight == 10
    assert not world.violations


def test_the_weight_moves_only_once_the_canary_pods_are_ready() -> None:
    world = _world(ready_delay=timedelta(seconds=90))
    world.run(until=timedelta(minutes=3), every=TICK)
    created = _first(world, "ScaleCanary")
    shifted = world.route.changes[0][0]
    assert shifted - created >= timedelta(seconds=90)
    assert not world.violations


def test_status_shows_the_applied_weight_next_to_the_asked_one() -> None:
    world = _world(ready_delay=timedelta(seconds=30))
    world.tick(T0)
    world.tick(T0 + timedelta(seconds=40))  # canary Ready: asks for 10%
    traffic = world.status.traffic
    assert traffic is not None and (traffic.weight, traffic.desired_weight) == (0, 10)
    world.tick(T0 + timedelta(seconds=50))  # the route shows it now
    traffic = world.status.traffic
    assert traffic is not None and (traffic.weight, traffic.desired_weight) == (10, 10)
    assert condition_status(world.status.conditions, "TrafficRouted") == "True"


def test_a_breach_resets_the_route_before_anything_is_scaled_down() -> None:
    world = _world(header=True, metric=breaking_at(T0 + timedelta(minutes=5)))
    world.run(until=timedelta(minutes=30), every=TICK)
    assert world.status.phase == "RolledBack" and world.status.reason == "MetricBreach"
    rolled_back = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    assert _first(world, "ResetTraffic") == rolled_back  # in the same decision
    assert _first(world, "DeleteCanary") > rolled_back
    assert (world.route.weight, world.route.header_route) == (0, False)
    assert world.canary is None and world.stable.image.endswith(":v1")
    assert not world.violations


def test_promotion_rolls_stable_then_sends_it_everything_then_removes_the_canary() -> None:
    world = _world(header=True)
    world.run(until=timedelta(hours=1), every=TICK)
    assert world.status.phase == "Succeeded"
    rolled, reset, deleted = (
        _first(world, "UpdateStable"),
        _first(world, "ResetTraffic"),
        _first(world, "DeleteCanary"),
    )
    assert rolled < reset < deleted
    at_reset = next(s for t, s, *_ in world.log if t == reset)
    assert at_reset.phase == "Promoting"  # stable is on v2 at full size before the reset
    assert world.stable.image.endswith(":v2") and world.stable.replicas == 4
    assert (world.route.weight, world.route.header_route) == (0, False)
    assert [w for _, w, _ in world.route.changes] == [10, 10, 50, 0]
    assert not world.violations


def test_dynamic_stable_scale_shrinks_after_the_shift_and_grows_before_a_rollback() -> None:
    world = _world(dynamic=True, replicas=10, metric=breaking_at(T0 + timedelta(minutes=15)))
    world.run(until=timedelta(minutes=40), every=TICK)
    shrunk = [(t, n) for t, n in world.order if n == "ScaleStable"]
    assert shrunk, "stable never followed the weight"
    assert shrunk[0][0] > world.route.changes[0][0]  # only after 10% moved
    assert world.status.phase == "RolledBack"
    assert world.stable.replicas == 10 and world.canary is None
    assert not world.violations


def test_a_promotion_that_stalls_goes_back_with_dynamic_stable_scale() -> None:
    """Stable was at its share on the stuck image: it returns to its own image at full
    size, and only then does the route send it everything and the canary go."""
    world = _world(dynamic=True, replicas=10, broken_tag="v2")
    world.stable.progress_deadline = timedelta(minutes=10)
    world.run(until=timedelta(hours=2), every=TICK)
    assert (world.status.phase, world.status.reason) == ("RolledBack", "PromotionStalled")
    assert world.stable.image.endswith(":v1") and world.stable.replicas == 10
    assert (world.route.weight, world.route.header_route) == (0, False)
    assert world.canary is None
    assert not world.violations


def test_a_new_tag_takes_the_traffic_off_the_old_canary_before_replacing_it() -> None:
    world = _world()
    world.run(until=timedelta(minutes=5), every=TICK)
    assert world.route.weight == 10
    world.spec = world.spec.model_copy(
        update={"release": world.spec.release.model_copy(update={"tag": "v3"})}
    )
    start = T0 + timedelta(minutes=5, seconds=10)
    now = start
    while now < start + timedelta(minutes=5):
        world.tick(now)
        now += TICK
    after = [(t, n) for t, n in world.order if t >= start and n in ("ResetTraffic", "ScaleCanary")]
    assert [n for _, n in after[:2]] == ["ResetTraffic", "ScaleCanary"]
    assert world.canary is not None and world.canary.image.endswith(":v3")
    assert world.route.weight == 10  # back on the new canary once its pods are Ready
    assert not world.violations


def test_a_header_route_at_zero_percent_reaches_one_ready_pod() -> None:
    world = _world(header=True, steps=[{"setWeight": 0}, {"pause": {}}])
    world.run(until=timedelta(minutes=5), every=TICK)
    assert (world.route.weight, world.route.header_route) == (0, True)
    assert world.canary is not None and world.canary.replicas == 1
    assert not world.violations


def test_a_conflict_holds_the_release_and_is_reported_once() -> None:
    world = _world()
    world.route.conflict = 'HTTPRoute app: .spec.rules owned by "gitops"'
    world.run(until=timedelta(minutes=20), every=TICK)
    assert world.route.weight == 0
    assert world.status.current_step_index == 0  # the 10% step never completes
    routed = next(c for c in world.status.conditions if c.type == "TrafficRouted")
    assert (routed.status, routed.reason) == ("False", "RouteConflict")
    assert "gitops" in routed.message
    warnings = [
        a
        for _, _, actions, _ in world.log
        for a in actions
        if isinstance(a, RecordEvent) and a.reason == "RouteConflict"
    ]
    assert len(warnings) == 1
    world.route.conflict = None  # the other manager hands the rules over
    now = T0 + timedelta(minutes=20)
    for i in range(12):
        world.tick(now + i * TICK)
    assert world.route.weight == 10
    assert condition_status(world.status.conditions, "TrafficRouted") == "True"


def _events(world: RoutedWorld, reason: str) -> list[RecordEvent]:
    return [
        a
        for _, _, actions, _ in world.log
        for a in actions
        if isinstance(a, RecordEvent) and a.reason == reason
    ]


def test_a_route_the_gateway_rejects_holds_the_step_and_is_reported_once() -> None:
    world = _world()
    world.route.rejecting = True  # e.g. the canary Service is not resolvable
    world.route.gateway_lag = timedelta(seconds=15)  # each write: pending, then refused again
    world.run(until=timedelta(minutes=20), every=TICK)
    assert world.route.weight == 10  # the object says 10%, but nothing serves it
    assert world.status.current_step_index == 0  # the 10-minute pause never counts as reached
    routed = next(c for c in world.status.conditions if c.type == "TrafficRouted")
    assert (routed.status, routed.reason) == ("False", "RouteRejected")
    assert "BackendNotFound" in routed.message
    assert len(_events(world, "RouteRejected")) == 1
    assert _events(world, "RouteRejected")[0].type == "Warning"
    world.route.accept()
    now = T0 + timedelta(minutes=20)
    for i in range(3):
        world.tick(now + i * TICK)
    assert world.status.current_step_index == 1
    assert condition_status(world.status.conditions, "TrafficRouted") == "True"
    assert not world.violations


def test_a_rejected_route_does_not_hold_a_rollback() -> None:
    world = _world(metric=breaking_at(T0 + timedelta(minutes=5)))
    world.route.rejecting = True
    world.route.gateway_lag = timedelta(seconds=15)
    world.run(until=timedelta(minutes=20), every=TICK)
    assert world.status.phase == "RolledBack"
    assert world.route.weight == 0 and world.canary is None
    assert world.stable.replicas == 4
    # The reset is pending, then refused too: still the one Warning from before.
    assert len(_events(world, "RouteRejected")) == 1


def test_a_lagging_gateway_delays_the_step_and_the_scale_down_not_the_route() -> None:
    world = _world(ready_delay=timedelta(seconds=0))
    world.route.gateway_lag = timedelta(seconds=45)
    world.tick(T0)
    world.tick(T0 + TICK)  # canary Ready: 10% written
    written = world.route.changes[0][0]
    world.tick(written + TICK)
    routed = next(c for c in world.status.conditions if c.type == "TrafficRouted")
    assert (routed.status, routed.reason) == ("Unknown", "RoutePending")
    assert not _events(world, "RoutePending")  # a few seconds of lag is no warning
    now = written + 2 * TICK
    while now < T0 + timedelta(hours=1):
        world.tick(now)
        now += TICK
    assert world.status.phase == "Succeeded"
    assert not world.violations
    reset_at = world.route.changes[-1][0]
    deleted_at = next(t for t, name in world.order if name == "DeleteCanary")
    assert deleted_at - reset_at >= timedelta(seconds=45)


def test_a_misconfigured_route_starts_no_canary() -> None:
    world = _world()
    world.route.problem = "Service app selects the canary pods too"
    world.run(until=timedelta(minutes=5), every=TICK)
    assert world.canary is None
    routed = next(c for c in world.status.conditions if c.type == "TrafficRouted")
    assert (routed.status, routed.reason) == ("False", "RouteInvalid")


def test_without_a_router_nothing_about_traffic_changes() -> None:
    spec = make_spec(steps=STEPS)
    assert spec.traffic_routing is None
    world = _world()
    world.spec = spec
    world.run(until=timedelta(hours=1), every=TICK)
    assert world.status.phase == "Succeeded"
    assert world.status.traffic is None
    assert not {"SetTrafficWeight", "SetHeaderRoute", "ResetTraffic"} & {n for _, n in world.order}
    assert all(c.type != "TrafficRouted" for c in world.status.conditions)
