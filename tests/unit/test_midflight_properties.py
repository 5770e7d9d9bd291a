"""Random mid-flight edits, commands, hand-set images and clock jumps; invariants every tick.

What users do to a release in flight (docs/cli.md, docs/crd.md): change or unset the
tag, send any command at any time (the quick rollback too), edit steps and analysis,
scale or hotfix the target by hand, and a leader failover with a clock behind. Checked
after every decision: no action twice, every rollback has a reason, no promotion starts
unjudged unless a human forced it, the Deployment runs an image the release knows, and
the step's clock never moves back; left alone and healthy, nothing is stuck except
where a human is needed, and no canary is left behind.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as hevent
from hypothesis import strategies as st

from controller.api.spec import CanaryReleaseSpec, PostPromotion
from controller.engine.actions import RecordEvent
from controller.engine.analysis import analysis_passed
from controller.engine.context import Decision
from controller.engine.quick_rollback import QUICK_ROLLBACK
from tests.unit.auditworld import AuditWorld
from tests.unit.world import World, make_spec

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
IMG = "registry.example.com/app:{}"

PLANS = [
    [{"setWeight": 10}, {"pause": {"duration": "10m"}}, {"setWeight": 100}],
    [
        {"setWeight": 10},
        {"pause": {"duration": "5m"}},
        {"setWeight": 50},
        {"pause": {"duration": "20m"}},
    ],
    [{"setWeight": 20}],
    [{"setWeight": 30}, {"pause": {}}],
]

verbs = st.sampled_from(
    ["promote", "promote-full", "abort", "pause", "resume", "retry", "rollback"]
)
events = st.one_of(
    st.tuples(st.just("tag"), st.sampled_from(["v1", "v2", "v3", "v4", None, "prev"])),
    st.tuples(st.just("cmd"), verbs),
    st.tuples(st.just("qrb"), st.just(None)),  # canaryctl rollback: tag=previous + command
    st.tuples(st.just("steps"), st.integers(0, len(PLANS) - 1)),
    st.tuples(st.just("analysis"), st.booleans()),
    st.tuples(st.just("bad"), st.booleans()),
    st.tuples(st.just("pbad"), st.booleans()),
    st.tuples(st.just("clock"), st.integers(-600, 0)),
    st.tuples(st.just("scale"), st.integers(10, 14)),
    st.tuples(st.just("hotfix"), st.just(None)),  # kubectl set image on the target
)
timeline = st.lists(st.tuples(st.integers(1, 40), events), max_size=12)


class Bad:
    on = False
    stable = False

    def __call__(self, _: str, track: str, __: datetime) -> float | None:
        if track == "stable":
            return 0.2 if self.stable else 0.01
        return 0.2 if self.on else 0.01


WATCH = {
    "duration": "30m",
    "interval": "1m",
    "metrics": [
        {"name": "err", "query": 'sum(errors{track="{{track}}"})', "threshold": {"max": 0.05}}
    ],
}


def _variant(spec: CanaryReleaseSpec, freeze: bool, watch: bool) -> CanaryReleaseSpec:
    update: dict[str, object] = {}
    if freeze:
        update["breach_policy"] = "freeze"
    if watch and spec.analysis is not None:
        update["post_promotion"] = PostPromotion.model_validate(WATCH)
    return spec.model_copy(update=update)


def _apply(world: World, bad: Bad, event: tuple[str, object], n: int) -> str | None:
    kind, value = event
    spec = world.spec
    if kind == "tag":
        tag = world.status.previous_stable_tag if value == "prev" else value
        world.spec = spec.model_copy(
            update={"release": spec.release.model_copy(update={"tag": tag})}
        )
    elif kind == "cmd":
        world.command = f"{value} {n}"
        return str(value)
    elif kind == "qrb":
        prev = world.status.previous_stable_tag
        if prev is not None:
            world.spec = spec.model_copy(
                update={"release": spec.release.model_copy(update={"tag": prev})}
            )
        world.command = f"rollback {n}"
        return "rollback"
    elif kind == "steps":
        fresh = make_spec(
            steps=PLANS[int(str(value))], tag=spec.release.tag, analysis=spec.analysis is not None
        )
        world.spec = fresh
    elif kind == "analysis":
        world.spec = make_spec(
            steps=[s.model_dump(exclude_none=True, by_alias=True) for s in spec.steps],
            tag=spec.release.tag,
            analysis=bool(value),
        )
    elif kind == "pbad":
        bad.stable = bool(value)
    elif kind == "bad":
        bad.on = bool(value)
    elif kind == "hotfix" and world.status.phase in ("Progressing", "Paused"):
        world.stable.image = IMG.format("v1-hotfix")
    elif kind == "scale":
        world.stable.replicas, world.stable.replicas_set_by = int(str(value)), "kubectl"
    return None


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(timeline, st.integers(0, len(PLANS) - 1), st.booleans(), st.booleans())
# a clock 61 s back, then a step that starts before it catches up
@example([(1, ("tag", "v1")), (1, ("tag", "v3")), (13, ("clock", -61))], 1, False, False)
def test_invariants_hold_through_midflight_changes(
    events_: list[tuple[int, tuple[str, object]]], plan_index: int, freeze: bool, watch: bool
) -> None:
    bad = Bad()
    world = AuditWorld(
        spec=_variant(make_spec(steps=PLANS[plan_index]), freeze, watch),
        metric=bad,
        start=T0,
        after=lambda _q, _t: 0.2 if bad.stable else 0.01,
    )
    now = T0
    schedule: dict[int, list[tuple[str, object]]] = {}
    tick = 0
    for gap, event in events_:
        tick += gap
        schedule.setdefault(tick, []).append(event)
    last = tick + 400
    previous = world.status
    latest = now  # the furthest the clock has been
    for i in range(last):
        step = timedelta(seconds=30)
        command = None
        for event in schedule.get(i, []):
            if event[0] == "clock":
                step = timedelta(seconds=int(str(event[1])))
            else:
                command = _apply(world, bad, event, i) or command
                world.spec = _variant(world.spec, freeze, watch)
        now = now + step
        caught_up = now >= latest  # not behind a time the clock already showed
        latest = max(latest, now)
        phase_before = world.status.phase
        actions = world.tick(now)
        for e in schedule.get(i, []):
            hevent(f"{e[0]}:{e[1] if e[0] == 'cmd' else ''} in {phase_before}")
        status = world.status
        # 1. no action twice in one decision
        dupes = [a for a, c in Counter(actions).items() if c > 1 and not isinstance(a, RecordEvent)]
        assert not dupes, (i, dupes)
        # 2. every rollback has a reason
        if status.phase == "RolledBack":
            assert status.reason, (i, status)
        # 3. never start a promotion without analysis passing, unless forced by a human
        started_promoting = status.phase == "Promoting" and previous.phase != "Promoting"
        if (
            started_promoting
            and status.reason != QUICK_ROLLBACK
            and command not in ("promote", "promote-full")
        ):
            assert analysis_passed(Decision(world.spec, status, None, now)), (i, status)  # type: ignore[arg-type]
        # 5. the Deployment runs stable's image or the release's, nothing else
        allowed = {status.stable_image, status.previous_stable_image}
        for t in (status.canary_tag, previous.canary_tag, previous.stable_tag, status.stable_tag):
            if t:
                allowed.add(IMG.format(t))
        assert world.stable.image in allowed, (i, world.stable.image, status)
        # 6. with a clock that only moves forward, the step's clock never moves back
        # (after a jump back, a step that starts before the clock catches up starts at
        # the earlier time it shows: a new step, not one made shorter)
        same = status.release_started_at == previous.release_started_at
        if caught_up and same and status.step_started_at and previous.step_started_at:
            assert status.step_started_at >= previous.step_started_at, (i, status)
        previous = status
    # 7. left alone and healthy, nothing is stuck: it ends, or waits for a human by design
    bad.on = bad.stable = False
    for _ in range(600):
        now += timedelta(seconds=30)
        world.tick(now)
    status = world.status
    if status.phase in ("Progressing", "Paused", "Promoting"):
        index = min(status.current_step_index or 0, len(world.spec.steps) - 1)
        human = status.paused_at is not None or (
            world.spec.steps[index].pause is not None
            and world.spec.steps[index].pause.duration is None
        )
        assert human, status
    # 4. left alone, the world converges: no canary outside a release, stable on its image
    if world.status.phase not in ("Progressing", "Paused", "Promoting"):
        assert world.canary is None, world.status
        assert world.stable.image == world.status.stable_image, (world.stable.image, world.status)
