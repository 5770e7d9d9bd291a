"""Property tests with a traffic router: the routing promises hold over random timelines.

- the route never sends to a canary without Ready pods enough for its share,
  and a header route never to a canary without a Ready pod;
- nothing carrying traffic is scaled down while the route sends to it: a
  rollback resets the route first, and with dynamicStableScale stable keeps
  the pods its share needs;
- all of that also for what a gateway that lags behind the route object
  serves, whatever the lag;
- every release ends with the route back on stable and the canary gone;
- losing the actions of any tick (a crash after the status write) changes no outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.engine.decide import decide
from tests.unit.routedworld import RoutedWorld, make_routed_spec
from tests.unit.world import metric_for, run_ticks

T0 = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
SPAN = timedelta(hours=6)


@st.composite
def plans(draw: st.DrawFn) -> dict[str, object]:
    weights = sorted(draw(st.lists(st.integers(0, 99), min_size=1, max_size=3)))
    steps: list[dict[str, object]] = []
    for weight in weights:
        steps.append({"setWeight": weight})
        steps.append({"pause": {"duration": f"{draw(st.integers(0, 90))}m"}})
    if draw(st.booleans()):
        steps.append({"setWeight": 100})
    return {
        "steps": steps,
        "replicas": draw(st.integers(1, 12)),
        "ready_delay": timedelta(seconds=draw(st.integers(0, 180))),
        "tick": timedelta(seconds=draw(st.sampled_from([30, 60, 120]))),
        "header": draw(st.booleans()),
        "dynamic": draw(st.booleans()),
        "breach_minute": draw(st.one_of(st.none(), st.integers(0, 6 * 60))),
        "lost_ticks": draw(st.sets(st.integers(0, 400), max_size=20)),
        "gateway_lag": timedelta(seconds=draw(st.sampled_from([0, 0, 20, 45, 90, 300]))),
    }


def _run(plan: dict[str, object]) -> RoutedWorld:
    world = RoutedWorld(
        spec=make_routed_spec(
            steps=plan["steps"],  # type: ignore[arg-type]
            header=plan["header"],  # type: ignore[arg-type]
            dynamic=plan["dynamic"],  # type: ignore[arg-type]
        ),
        metric=metric_for(plan["breach_minute"], T0),
        start=T0,
        replicas=plan["replicas"],  # type: ignore[arg-type]
        ready_delay=plan["ready_delay"],  # type: ignore[arg-type]
    )
    world.route.gateway_lag = plan["gateway_lag"]  # type: ignore[assignment]
    run_ticks(world, SPAN, plan["tick"], plan["lost_ticks"])
    return world


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(plans())
def test_the_route_only_sends_to_ready_pods_and_resets_before_scaling_down(
    plan: dict[str, object],
) -> None:
    world = _run(plan)
    assert not world.violations, world.violations[:3]


@SETTINGS
@given(plans())
def test_every_release_ends_on_stable_with_the_canary_gone(plan: dict[str, object]) -> None:
    world = _run({**plan, "lost_ticks": set()})
    phase = world.status.phase
    if phase in ("RolledBack", "Succeeded"):
        assert (world.route.weight, world.route.header_route) == (0, False)
        assert world.canary is None
        assert world.stable.replicas == plan["replicas"]
        assert world.stable.image.endswith(":v1" if phase == "RolledBack" else ":v2")
    if plan["breach_minute"] is not None and phase != "Succeeded":
        assert phase == "RolledBack", world.status.message
    if phase in ("Progressing", "Paused"):
        traffic = world.status.traffic
        assert traffic is not None and traffic.weight == world.route.weight


@SETTINGS
@given(plans(), st.integers(0, 300))
def test_same_inputs_same_decision(plan: dict[str, object], at: int) -> None:
    world = _run({**plan, "lost_ticks": set()})
    now, status, *_ = world.log[min(at, len(world.log) - 1)]
    world.status = status
    observed = world.observe(now)
    assert decide(world.spec, status, observed, now) == decide(world.spec, status, observed, now)


@SETTINGS
@given(plans())
def test_lost_actions_do_not_change_the_outcome(plan: dict[str, object]) -> None:
    crashed = _run(plan)
    clean = _run({**plan, "lost_ticks": set()})
    assert crashed.status.phase == clean.status.phase
    assert crashed.stable.image == clean.stable.image
    assert (crashed.canary is None) == (clean.canary is None)
    if clean.status.phase in ("RolledBack", "Succeeded"):
        assert (crashed.route.weight, crashed.route.header_route) == (0, False)
