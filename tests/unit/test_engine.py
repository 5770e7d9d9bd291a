"""The decision engine over simulated timelines: each test tells one on-call story."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import RecordEvent, ScaleCanary
from controller.engine.decide import decide, reject_spec, tag_of
from controller.engine.observations import DeploymentView, Measurement, Observed
from tests.unit.world import OldTimeoutWorld, World, breaking_at, healthy, make_spec

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]


def _world(metric=healthy, **kwargs) -> World:  # type: ignore[no-untyped-def]
    spec = kwargs.pop("spec", None) or make_spec(steps=STEPS)
    return World(spec=spec, metric=metric, start=T0, **kwargs)


def _promoting(world: World) -> World:
    """Run until v2 is rolling onto stable, with part of stable's pods on it."""
    while world.status.phase != "Promoting":
        world.tick(world.start)
        world.start += timedelta(seconds=30)
    for _ in range(2):
        world.tick(world.start)
        world.start += timedelta(seconds=30)
    assert world.status.phase == "Promoting"
    return world


def _messages(world: World, reason: str, since: int = 0) -> list[str]:
    """The messages of the Events with this reason, from tick `since` on."""
    return [
        a.message
        for _, _, acts, _ in world.log[since:]
        for a in acts
        if isinstance(a, RecordEvent) and a.reason == reason
    ]


def _events(world: World) -> list[str]:
    return [
        a.reason for _, _, actions, _ in world.log for a in actions if isinstance(a, RecordEvent)
    ]


def test_healthy_release_is_promoted_and_remembered() -> None:
    world = _world()
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "Succeeded"
    assert status.stable_tag == "v2" and status.previous_stable_tag == "v1"
    assert world.stable.image == "registry.example.com/app:v2"
    assert world.stable.replicas == 10 and world.canary is None
    assert [(h.tag, h.outcome) for h in status.history] == [("v2", "Succeeded")]
    assert min(cap for *_, cap in world.log) >= 10
    assert _events(world)[:2] == ["ReleaseStarted", "StepAdvanced"]
    # the stable Deployment's own rolling-update settings are restored afterwards
    assert (world.stable.max_unavailable, world.stable.max_surge) == ("25%", "25%")
    assert status.saved_strategy is None


def test_canary_gets_ten_percent_of_pods_then_waits_the_pause() -> None:
    world = _world()
    world.run(until=timedelta(minutes=30), every=timedelta(seconds=30))
    assert world.status.phase == "Paused"
    assert world.status.current_step_index == 1
    assert world.canary is not None and world.canary.replicas == 1
    assert world.stable.replicas == 9
    assert world.status.canary_weight == 10


def test_breach_rolls_back_with_metric_value_bound_and_query() -> None:
    world = _world(metric=breaking_at(T0 + timedelta(minutes=20)))
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "RolledBack" and status.reason == "MetricBreach"
    assert "error-rate" in (status.message or "")
    assert "0.2 > max 0.05" in (status.message or "")
    assert 'track="canary"' in (status.message or "")
    assert world.canary is None and world.stable.replicas == 10
    assert world.stable.image == "registry.example.com/app:v1"
    assert min(cap for *_, cap in world.log) >= 10
    assert [(h.tag, h.outcome) for h in status.history] == [("v2", "RolledBack")]
    # detected at the first analysis after the breach
    rolled = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    assert rolled - (T0 + timedelta(minutes=20)) <= timedelta(minutes=1, seconds=30)


def test_rolled_back_tag_is_not_retried_by_itself_but_retry_does() -> None:
    world = _world(metric=breaking_at(T0))
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack"
    world.metric = healthy
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack" and world.canary is None
    world.command = "retry 1"
    world.start = T0 + timedelta(hours=1)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"
    assert [h.outcome for h in world.status.history] == ["RolledBack", "Succeeded"]


def test_ratio_against_stable_catches_a_relative_regression() -> None:
    def metric(_: str, track: str, now: datetime) -> float:
        return 0.03 if track == "canary" else 0.01

    world = _world(metric=metric)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.reason == "MetricBreach"
    assert "0.03 > 2 x stable 0.01" in (world.status.message or "")


def test_no_data_holds_and_never_promotes() -> None:
    world = _world(metric=lambda *_: None)
    world.run(until=timedelta(hours=3), every=timedelta(minutes=1))
    assert world.status.phase == "Paused"
    assert world.status.reason == "AwaitingAnalysis"
    assert world.status.metrics[0].verdict == "inconclusive"
    assert world.stable.image.endswith(":v1")


def test_no_data_fail_policy_rolls_back() -> None:
    spec = make_spec(steps=STEPS, no_data="fail")
    world = _world(metric=lambda *_: None, spec=spec)
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack"
    assert "no data" in (world.status.message or "")


def test_crash_looping_canary_is_a_breach() -> None:
    world = _world(crash_looping=True)
    world.run(until=timedelta(minutes=2), every=timedelta(seconds=10))
    assert world.status.reason == "CanaryCrashLooping"
    assert world.canary is None


def test_canary_never_ready_is_a_breach_after_the_deadline() -> None:
    world = _world(ready_delay=timedelta(hours=5))
    world.run(until=timedelta(minutes=9), every=timedelta(seconds=30))
    assert world.status.phase == "Progressing"
    world.start = T0 + timedelta(minutes=9, seconds=30)
    world.run(until=timedelta(minutes=2), every=timedelta(seconds=30))
    assert world.status.reason == "CanaryNotReady"
    assert "0/1 canary pods Ready after 10m" in (world.status.message or "")


def test_pause_and_resume_keep_the_step_clock_honest() -> None:
    world = _world()
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    started = world.status.step_started_at
    assert started is not None
    world.command = "pause 1"
    world.start = T0 + timedelta(minutes=5, seconds=30)
    world.run(until=timedelta(hours=2), every=timedelta(minutes=1))
    assert world.status.phase == "Paused" and world.status.paused_at is not None
    assert world.status.current_step_index == 1
    world.command = "resume 1"
    world.start = T0 + timedelta(hours=2, minutes=6)
    world.tick(world.start)
    assert world.status.paused_at is None
    # two hours paused are not counted: the pause step still has time left
    assert world.status.step_started_at is not None
    assert world.status.step_started_at > started + timedelta(hours=1)


def test_promote_skips_the_pause_and_abort_rolls_back() -> None:
    world = _world()
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    assert world.status.current_step_index == 1
    world.command = "promote a"
    world.start = T0 + timedelta(minutes=5, seconds=30)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"

    other = _world()
    other.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    other.command = "abort now"
    other.start = T0 + timedelta(minutes=5, seconds=30)
    other.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    assert other.status.phase == "RolledBack" and other.status.reason == "Aborted"
    assert other.status.history[-1].outcome == "Aborted"


def test_promote_ends_a_human_pause_and_moves_on() -> None:
    world = _world()
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    world.command = "pause 1"
    world.start = T0 + timedelta(minutes=5, seconds=30)
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    assert world.status.paused_at is not None and world.status.current_step_index == 1
    world.command = "promote 2"
    world.start = T0 + timedelta(minutes=11)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.status.paused_at is None


def test_promote_at_the_full_weight_step_promotes_without_waiting_for_analysis() -> None:
    """The default plan ends with setWeight 100; no canary data holds it, promote does not."""
    world = _world(metric=lambda query, track, at: None)
    world.run(until=timedelta(hours=2), every=timedelta(minutes=1))
    assert world.status.reason == "AwaitingAnalysis" and world.status.current_step_index == 2
    world.command = "promote 1"
    world.start = T0 + timedelta(hours=2, minutes=1)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.status.stable_tag == "v2"


def test_pause_during_the_promotion_is_refused_not_kept() -> None:
    world = _promoting(_world())
    mark = len(world.log)
    world.command = "pause 1"
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.status.paused_at is None
    ignored = _messages(world, "CommandIgnored", since=mark)
    assert len(ignored) == 1 and "cannot be paused" in ignored[0]


def test_a_command_is_handled_once() -> None:
    world = _world()
    world.command = "bogus 1"
    world.run(until=timedelta(minutes=3), every=timedelta(seconds=30))
    assert _events(world).count("CommandIgnored") == 1
    assert world.status.last_command == "bogus 1"


def test_new_tag_supersedes_a_running_canary() -> None:
    world = _world()
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    world.spec = make_spec(steps=STEPS, tag="v3")
    world.start = T0 + timedelta(minutes=5, seconds=30)
    world.run(until=timedelta(hours=3), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.status.stable_tag == "v3"
    assert [(h.tag, h.outcome) for h in world.status.history] == [
        ("v2", "Superseded"),
        ("v3", "Succeeded"),
    ]
    assert min(cap for *_, cap in world.log) >= 10


def test_new_tag_during_the_promotion_puts_stable_back_before_its_canary() -> None:
    """v2 was rolling onto stable: v3's canary runs beside v1, and is judged against it."""
    world = _promoting(_world())
    assert any(p.image.endswith(":v2") for p in world.stable.pods)
    mark = len(world.log)
    world.spec = make_spec(steps=STEPS, tag="v3")
    for _ in range(40):  # 20 minutes; no v3 pod while a v2 pod is still in stable
        world.tick(world.start)
        world.start += timedelta(seconds=30)
        if world.canary is not None and world.canary.image.endswith(":v3"):
            assert all(p.image.endswith(":v1") for p in world.stable.pods)

    status = world.status
    assert status.canary_tag == "v3" and status.phase == "Paused" and status.stable_tag == "v1"
    assert {p.image for p in world.stable.pods} == {"registry.example.com/app:v1"}
    assert [(h.tag, h.outcome) for h in status.history] == [("v2", "Superseded")]
    started = _messages(world, "ReleaseStarted", since=mark)
    assert started == ["canary of v3 started (stable: v1)"]
    assert min(cap for *_, cap in world.log[mark:]) >= 10


def test_under_breach_policy_freeze_a_new_tag_waits_for_the_promotion_instead() -> None:
    """Freeze never goes back to the build before the migration: v2 finishes, then v3 starts."""
    raw = make_spec(steps=STEPS).model_dump(by_alias=True, exclude_none=True)
    world = _promoting(
        _world(spec=CanaryReleaseSpec.model_validate(raw | {"breachPolicy": "freeze"}))
    )
    world.spec = CanaryReleaseSpec.model_validate(
        raw | {"breachPolicy": "freeze", "release": {**raw["release"], "tag": "v3"}}
    )
    world.run(until=timedelta(minutes=20), every=timedelta(seconds=30))
    assert [(h.tag, h.outcome) for h in world.status.history] == [("v2", "Succeeded")]
    assert world.status.stable_tag == "v2" and world.status.canary_tag == "v3"
    assert all(p.image.endswith(":v2") for p in world.stable.pods)


def test_a_recreate_deployment_rolls_stable_without_going_down_then_is_recreate_again() -> None:
    """Recreate would stop every stable pod before starting one: 9 of 10 serving pods gone."""
    world = _world()
    world.stable.max_unavailable = world.stable.max_surge = None  # strategy: Recreate
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"
    assert {p.image for p in world.stable.pods} == {"registry.example.com/app:v2"}
    assert min(cap for *_, cap in world.log) >= 10
    assert (world.stable.max_unavailable, world.stable.max_surge) == (None, None)
    assert world.status.saved_strategy is None
    rolled = [
        a
        for _, _, acts, _ in world.log
        for a in acts
        if type(a).__name__ == "UpdateStable" and a.image.endswith(":v2")
    ]
    assert rolled[0].max_unavailable == "0" and rolled[-1].recreate


def test_a_one_replica_deployment_keeps_its_stable_pod_beside_the_canary() -> None:
    """ "10%" of one pod is one canary pod; taking stable's only pod would make it 100%."""
    world = _world(replicas=1)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "Paused" and status.canary_weight == 10
    assert world.stable.replicas == 1 and world.canary is not None and world.canary.replicas == 1
    assert "(1 of 2 pods, so about 50% of requests)" in (status.message or "")
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.stable.replicas == 1
    assert min(cap for *_, cap in world.log) >= 1


def test_the_message_says_nothing_extra_when_pods_match_the_weight() -> None:
    world = _world()
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert "pods" not in (world.status.message or "")


def test_a_human_scale_up_mid_canary_is_the_new_full_size_not_reverted() -> None:
    world = _world()
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.stable.replicas == 9 and world.canary is not None
    world.stable.replicas, world.stable.replicas_set_by = 20, "kubectl"  # kubectl scale
    mark = len(world.log)
    world.start = T0 + timedelta(minutes=10, seconds=30)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.target_replicas == 20
    assert world.canary.replicas == 2 and world.stable.replicas == 18  # 10% of 20
    assert min(cap for *_, cap in world.log[mark + 2 :]) >= 20
    resized = _messages(world, "TargetResized", since=mark)
    assert len(resized) == 1 and "set to 20 by kubectl (was 10)" in resized[0]
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.stable.replicas == 20


def test_sizes_below_the_total_are_never_taken_for_a_new_total() -> None:
    """Stable at 9 of 10, last written by an older controller under another field manager
    (as after an upgrade mid-canary), or by anyone: the total stays, and so does a
    1-replica release's single pod."""
    for replicas in (10, 1):
        world = _world(replicas=replicas)
        world.stable.replicas_set_by = "helm"
        world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
        world.stable.replicas_set_by = "OpenAPI-Generator"
        world.start = T0 + timedelta(minutes=10, seconds=30)
        world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
        assert world.status.phase == "Succeeded" and world.stable.replicas == replicas
        assert "TargetResized" not in _events(world)
        assert min(cap for *_, cap in world.log) >= replicas


def test_a_recreate_promotion_begun_by_an_earlier_version_ends_recreate_too() -> None:
    """The earlier version saved nothing for a Recreate Deployment, and left it Recreate."""
    world = _world()
    world.stable.max_unavailable = world.stable.max_surge = None
    world = _promoting(world)
    world.stable.max_unavailable = world.stable.max_surge = None
    world.status = world.status.model_copy(update={"saved_strategy": None})
    world.run(until=timedelta(minutes=20), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded" and world.status.saved_strategy is None
    assert (world.stable.max_unavailable, world.stable.max_surge) == (None, None)


def test_prometheus_unreachable_holds_then_raises_a_condition() -> None:
    spec = make_spec(steps=STEPS)
    status = CanaryReleaseStatus()
    target = DeploymentView("app", 10, "registry.example.com/app:v1", 10, 10, 10)
    status, _ = decide(spec, status, Observed(target), T0)
    assert status.phase == "Progressing"
    down = tuple([Measurement("error-rate", None, None, "q", "connection refused", True)])
    canary = DeploymentView("app-canary", 1, "registry.example.com/app:v2", 1, 1, 1)
    events: list[str] = []
    for minute in range(1, 13):
        now = T0 + timedelta(minutes=minute)
        observed = Observed(target, canary, measurements=down)
        status, actions = decide(spec, status, observed, now)
        events += [a.reason for a in actions if isinstance(a, RecordEvent)]
    assert status.phase in ("Progressing", "Paused")
    assert status.metrics[0].verdict == "inconclusive"
    cond = next(c for c in status.conditions if c.type == "AnalysisAvailable")
    assert (cond.status, cond.reason) == ("False", "PrometheusUnreachable")
    assert events.count("PrometheusUnreachable") == 1
    up = tuple([Measurement("error-rate", 0.01, 0.01, "q")])
    status, _ = decide(spec, status, Observed(target, measurements=up), T0 + timedelta(minutes=20))
    cond = next(c for c in status.conditions if c.type == "AnalysisAvailable")
    assert cond.status == "True" and status.metrics[0].verdict == "pass"


def test_an_outage_stops_holding_anything_when_the_release_ends() -> None:
    """A lost Prometheus after an abort is no longer a problem: alerts on False must end."""
    spec = make_spec(steps=STEPS)
    target = DeploymentView("app", 10, "registry.example.com/app:v1", 10, 10, 10)
    canary = DeploymentView("app-canary", 1, "registry.example.com/app:v2", 1, 1, 1)
    status, _ = decide(spec, CanaryReleaseStatus(), Observed(target), T0)
    down = tuple([Measurement("error-rate", None, None, "q", "connection refused", True)])
    for minute in range(1, 13):
        observed = Observed(target, canary, measurements=down)
        status, _ = decide(spec, status, observed, T0 + timedelta(minutes=minute))
    cond = next(c for c in status.conditions if c.type == "AnalysisAvailable")
    assert cond.status == "False" and status.prometheus_unreachable_since is not None
    aborted = Observed(target, canary, command="abort 1")
    status, _ = decide(spec, status, aborted, T0 + timedelta(minutes=13))
    assert status.phase == "RolledBack"
    cond = next(c for c in status.conditions if c.type == "AnalysisAvailable")
    assert (cond.status, cond.reason) == ("Unknown", "NotJudging")
    assert "RolledBack" in cond.message and "connection refused" in cond.message
    assert status.prometheus_unreachable_since is None  # the next canary's clock starts afresh


def test_a_promotion_that_stalls_at_full_size_is_rolled_back() -> None:
    """Fine at 10%, but the new pods never become Ready at full size: the Deployment's
    progressDeadlineSeconds runs out, and the old pods kept serving throughout."""
    world = _world(broken_tag="v2")
    world.stable.progress_deadline = timedelta(minutes=10)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert (status.phase, status.reason) == ("RolledBack", "PromotionStalled")
    assert "progressDeadlineSeconds" in (status.message or "")
    assert "timed out progressing" in (status.message or "")
    assert world.stable.image.endswith(":v1") and world.stable.done(world.log[-1][0])
    assert min(cap for *_, cap in world.log) >= 10
    promoting = next(t for t, s, *_ in world.log if s.phase == "Promoting")
    rolled = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    assert timedelta(minutes=10) <= rolled - promoting <= timedelta(minutes=11)
    assert [(h.tag, h.outcome) for h in status.history] == [("v2", "RolledBack")]


def test_a_timeout_left_from_an_earlier_rollout_is_not_this_promotions_stall() -> None:
    """Kubernetes keeps an old ProgressDeadlineExceeded until a rollout progresses: a
    promotion that finishes within the deadline is not rolled back because of it."""

    world = OldTimeoutWorld(spec=make_spec(steps=STEPS), metric=healthy, start=T0)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"
    # still reported a whole deadline after the promotion began: then it is this one's
    stuck = OldTimeoutWorld(spec=make_spec(steps=STEPS), metric=healthy, start=T0, broken_tag="v2")
    stuck.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert (stuck.status.phase, stuck.status.reason) == ("RolledBack", "PromotionStalled")
    promoting = next(t for t, s, *_ in stuck.log if s.phase == "Promoting")
    rolled = next(t for t, s, *_ in stuck.log if s.phase == "RolledBack")
    assert timedelta(minutes=10) <= rolled - promoting <= timedelta(minutes=11)  # the default


def test_a_stall_rolls_back_under_breach_policy_freeze_too() -> None:
    """The old pods still serve: going back changes nothing that runs, waiting never ends."""
    raw = make_spec(steps=STEPS).model_dump(by_alias=True, exclude_none=True)
    freeze = CanaryReleaseSpec.model_validate(raw | {"breachPolicy": "freeze"})
    world = _world(spec=freeze, broken_tag="v2")
    world.stable.progress_deadline = timedelta(minutes=10)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert (world.status.phase, world.status.reason) == ("RolledBack", "PromotionStalled")


def test_a_slow_promotion_that_keeps_progressing_is_not_a_stall() -> None:
    world = _world()
    world.stable.ready_delay = timedelta(minutes=8)  # each pod slow, but each one comes
    world.stable.progress_deadline = timedelta(minutes=10)
    world.run(until=timedelta(hours=3), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"


def test_rejected_query_is_an_error_not_a_breach() -> None:
    spec = make_spec(steps=STEPS)
    target = DeploymentView("app", 10, "registry.example.com/app:v1", 10, 10, 10)
    status, _ = decide(spec, CanaryReleaseStatus(), Observed(target), T0)
    bad = tuple([Measurement("error-rate", None, None, "sum(", "parse error")])
    status, actions = decide(spec, status, Observed(target, measurements=bad), T0)
    assert status.phase == "Progressing"
    assert status.metrics[0].verdict == "error"
    assert any(isinstance(a, RecordEvent) and a.reason == "QueryError" for a in actions)


def test_missing_target_is_a_clear_status_and_recovers() -> None:
    spec = make_spec(steps=STEPS)
    status, actions = decide(spec, CanaryReleaseStatus(), Observed(None), T0)
    assert (status.phase, status.reason) == ("Failed", "TargetNotFound")
    assert "'app' not found" in (status.message or "")
    assert [a.reason for a in actions if isinstance(a, RecordEvent)] == ["TargetNotFound"]
    target = DeploymentView("app", 4, "registry.example.com/app:v1", 4, 4, 4)
    status, actions = decide(spec, status, Observed(target), T0 + timedelta(minutes=1))
    assert status.phase == "Progressing"
    assert ScaleCanary("registry.example.com/app:v2", 1) in actions


def test_invalid_spec_is_reported_once() -> None:
    status, actions = reject_spec(CanaryReleaseStatus(), "spec.steps.0: bad", 3, T0)
    assert (status.phase, status.reason, status.observed_generation) == ("Failed", "InvalidSpec", 3)
    again, actions2 = reject_spec(status, "spec.steps.0: bad", 3, T0)
    assert len(actions) == 1 and actions2 == [] and again == status
    (condition,) = status.conditions
    assert (condition.type, condition.status, condition.reason) == (
        "SpecValid",
        "False",
        "InvalidSpec",
    )


def test_an_invalid_spec_mid_canary_holds_it_and_the_fix_resumes_the_same_step() -> None:
    world = _world()
    world.run(until=timedelta(minutes=20), every=timedelta(seconds=30))
    before = world.status
    assert before.phase == "Paused" and before.current_step_index == 1
    problem = "spec.analysis.metrics.0.threshold: min > max"
    held, actions = reject_spec(before, problem, 4, T0 + timedelta(minutes=20))
    assert [a.reason for a in actions if isinstance(a, RecordEvent)] == ["InvalidSpec"]
    assert (held.phase, held.reason, held.current_step_index) == ("Paused", None, 1)
    assert held.step_started_at == before.step_started_at and held.canary_tag == "v2"
    assert "Paused is held as it is" in (held.message or "")

    world.status = held  # fixed 10 minutes later: the same step, its clock stopped meanwhile
    world.start = T0 + timedelta(minutes=30)
    mark = len(world.log)
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    status = world.status
    assert status.current_step_index == 1 and before.step_started_at is not None
    assert status.step_started_at == before.step_started_at + timedelta(minutes=10)
    assert not any(
        isinstance(a, RecordEvent) and a.reason == "ReleaseStarted"
        for _, _, acts, _ in world.log[mark:]
        for a in acts
    )
    valid = next(c for c in status.conditions if c.type == "SpecValid")
    assert (valid.status, valid.reason) == ("True", "Valid")


def test_tag_of_recovers_tags_from_images() -> None:
    assert tag_of("r.example.com/app:{tag}", "r.example.com/app:v2.4.1") == "v2.4.1"
    assert tag_of("r.example.com/app:{tag}-slim", "r.example.com/app:v2-slim") == "v2"
    assert tag_of("r.example.com/app:{tag}", "other/app:v2") is None
    # a digest pinned after the tag (image automation writes these) is not part of it
    digest = "@sha256:" + "a" * 64
    assert tag_of("r.example.com/app:{tag}", "r.example.com/app:v1" + digest) == "v1"
    assert tag_of("r.example.com/app:{tag}-slim", "r.example.com/app:v1-slim" + digest) == "v1"
    # and what no spec.release.tag could be is no tag
    assert tag_of("r.example.com/app{tag}", "r.example.com/app@sha256:" + "a" * 64) is None


def test_current_image_matching_the_tag_is_adopted_without_a_canary() -> None:
    spec = make_spec(steps=STEPS, tag="v1")
    target = DeploymentView("app", 3, "registry.example.com/app:v1", 3, 3, 3)
    status, actions = decide(spec, CanaryReleaseStatus(), Observed(target), T0)
    assert status.phase == "Idle" and status.stable_tag == "v1"
    assert not [a for a in actions if not isinstance(a, RecordEvent)]


def test_an_empty_command_annotation_is_no_command() -> None:
    from controller.engine.decide import command_pending

    status = CanaryReleaseStatus(last_command="abort 1")
    assert not command_pending("", status) and not command_pending(None, status)
    assert not command_pending("abort 1", status) and command_pending("abort 2", status)


def _rolled_back() -> World:
    world = _world(metric=breaking_at(T0 + timedelta(minutes=5)))
    world.run(until=timedelta(minutes=30), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack" and world.status.canary_tag == "v2"
    return world


def _canaried_again(world: World, since: int) -> bool:
    return any(isinstance(a, ScaleCanary) for _, _, acts, _ in world.log[since:] for a in acts)


def test_a_rolled_back_release_keeps_its_verdict_through_an_invalid_spec() -> None:
    """Going through `Failed` used to forget it, and the bad tag was canaried again."""
    world = _rolled_back()
    before = world.status
    held, _ = reject_spec(before, "spec.analysis.metrics.0.threshold: min > max", 4, world.start)
    assert (held.phase, held.reason, held.message) == ("RolledBack", before.reason, before.message)
    world.status, mark = held, len(world.log)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))  # the spec is fixed
    assert world.status.phase == "RolledBack" and not _canaried_again(world, mark)


def test_a_rolled_back_release_keeps_its_verdict_while_its_target_is_missing() -> None:
    world = _rolled_back()
    before, mark = world.status, len(world.log)
    gone, actions = decide(world.spec, before, Observed(None), world.start)
    assert (gone.phase, gone.reason, gone.message) == ("RolledBack", before.reason, before.message)
    assert [a.reason for a in actions if isinstance(a, RecordEvent)] == ["TargetNotFound"]
    found = next(c for c in gone.conditions if c.type == "TargetFound")
    assert found.status == "False"
    world.status = gone  # back a minute later (kubectl replace --force)
    world.run(until=timedelta(minutes=10), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack" and not _canaried_again(world, mark)


def test_a_canary_whose_target_is_briefly_missing_resumes_the_same_step() -> None:
    world = _world()
    world.run(until=timedelta(minutes=20), every=timedelta(seconds=30))
    before = world.status
    assert before.phase == "Paused" and before.current_step_index == 1
    gone, actions = decide(world.spec, before, Observed(None), world.start)
    again, repeated = decide(world.spec, gone, Observed(None), world.start + timedelta(seconds=5))
    assert (gone.phase, gone.current_step_index, gone.canary_tag) == ("Paused", 1, "v2")
    assert "Paused is held as it is" in (gone.message or "")
    assert [a.reason for a in actions if isinstance(a, RecordEvent)] == ["TargetNotFound"]
    assert repeated == []  # said once, nothing done while it is gone
    world.status, mark = again, len(world.log)
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    status = world.status
    assert status.current_step_index == 1 and status.step_started_at == before.step_started_at
    assert not _messages(world, "ReleaseStarted", mark)
    found = next(c for c in status.conditions if c.type == "TargetFound")
    assert found.status == "True"


def _held(world: World, hold: Callable[[CanaryReleaseStatus, datetime], CanaryReleaseStatus]):  # type: ignore[no-untyped-def]
    """Run to the 1-hour pause, hold the release 3 hours from 09:20, then run again."""
    world.run(until=timedelta(minutes=20), every=timedelta(seconds=30))
    before = world.status
    assert before.phase == "Paused" and before.current_step_index == 1
    went = T0 + timedelta(minutes=20)
    world.status = hold(before, went)
    world.status = hold(world.status, went + timedelta(hours=1))  # still held an hour later
    world.start = went + timedelta(hours=3)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    return before


@pytest.mark.parametrize("cause", ["target missing", "invalid spec"])
def test_a_held_canary_pause_does_not_count_the_time_it_was_held(cause: str) -> None:
    """Nothing is measured while held: three hours of a 1-hour pause spent with the
    target gone (or the spec invalid) leave the pause as long as it was."""
    world = _world()

    def hold(status: CanaryReleaseStatus, at: datetime) -> CanaryReleaseStatus:
        if cause == "target missing":
            return decide(world.spec, status, Observed(None), at)[0]
        return reject_spec(status, "spec.steps.0: bad", 3, at)[0]

    before = _held(world, hold)
    assert before.step_started_at is not None
    back = world.start
    promoted = next(at for at, s, _, _ in world.log if at >= back and s.phase == "Promoting")
    # what was left of the pause when it was held is still left once it is back
    ends = before.step_started_at + timedelta(hours=1) + timedelta(hours=3)
    assert timedelta(0) <= promoted - ends <= timedelta(minutes=1), (promoted, ends)
    assert world.status.phase == "Succeeded"


@pytest.mark.parametrize("first", ["invalid spec", "target missing"])
def test_time_held_by_an_invalid_spec_and_a_missing_target_at_once_counts_once(first: str) -> None:
    """Held three hours in all, from 09:20 to 12:20, one hour of it by both causes."""
    world = _world()
    world.run(until=timedelta(minutes=20), every=timedelta(seconds=30))
    before, went = world.status, T0 + timedelta(minutes=20)
    assert before.step_started_at is not None
    if first == "invalid spec":  # the Deployment goes too while nothing is read
        held = reject_spec(before, "spec.steps.0: bad", 3, went)[0]
        held = decide(world.spec, held, Observed(None), went + timedelta(hours=1))[0]
    else:
        held = decide(world.spec, before, Observed(None), went)[0]
        held = reject_spec(held, "spec.steps.0: bad", 3, went + timedelta(hours=1))[0]
        held = decide(world.spec, held, Observed(None), went + timedelta(hours=2))[0]
    world.status = held
    world.tick(went + timedelta(hours=3))
    assert world.status.step_started_at == before.step_started_at + timedelta(hours=3)


def test_a_promoted_release_stays_promoted_through_an_invalid_spec() -> None:
    world = _world()
    world.run(until=timedelta(hours=2), every=timedelta(minutes=1))
    assert world.status.phase == "Succeeded"
    held, _ = reject_spec(world.status, "spec.steps.0: bad", 5, world.start)
    assert (held.phase, held.stable_tag) == ("Succeeded", "v2")
    assert held.message == "invalid spec: spec.steps.0: bad; v2 stays promoted"
