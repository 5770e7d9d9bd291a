"""Gates, hooks, deploy windows and breachPolicy freeze in the pure engine, over timelines.

`GatedWorld` answers the engine's CheckGates request the way the runtime does
(check, then decide again) from a function of (tag, now), and runs hook Jobs
that finish after a delay with a chosen outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.api.gates import MAX_HOOK_RUNS
from controller.api.spec import CanaryReleaseSpec
from controller.engine.actions import (
    Action,
    CheckGates,
    CreateHookJob,
    DeleteHookJob,
    RecordEvent,
)
from controller.engine.gate_observations import GateObservations, JobState, JobView
from controller.engine.observations import Observed
from controller.gates.checks import ENVIRONMENT, SCHEMA, GateCheck, failed, passed
from tests.unit.world import World, breaking_at, healthy, make_spec

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # a Tuesday
STEPS = [{"setWeight": 10}, {"pause": {"duration": "30m"}}, {"setWeight": 100}]
CheckFn = Callable[[str, datetime], tuple[GateCheck, ...]]


def all_pass(_: str, __: datetime) -> tuple[GateCheck, ...]:
    return (passed(ENVIRONMENT, "fine"),)


@dataclass
class FakeJob:
    created_at: datetime
    outcome: JobState
    after: timedelta
    tag: str | None = None

    def view(self, name: str, now: datetime) -> JobView:
        done = now >= self.created_at + self.after
        state: JobState = self.outcome if done else "Running"
        message = "BackoffLimitExceeded" if done else ""
        return JobView(name, state, self.created_at, message, tag=self.tag)


@dataclass(kw_only=True)
class GatedWorld(World):
    checks: CheckFn = all_pass
    job_outcome: JobState = "Succeeded"
    job_takes: timedelta = timedelta(minutes=2)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    created: list[CreateHookJob] = field(default_factory=list)
    deleted: list[tuple[str, JobView]] = field(default_factory=list)  # (name, as it was)
    checks_made: int = 0
    now: datetime = T0

    def observe(self, now: datetime) -> Observed:
        views = tuple(job.view(name, now) for name, job in sorted(self.jobs.items()))
        return replace(super().observe(now), gates=GateObservations(self.name, jobs=views))

    def gate_checks(self, tag: str, now: datetime) -> tuple[GateCheck, ...]:
        self.checks_made += 1
        return self.checks(tag, now)

    def tick(self, now: datetime, *, lose_actions: bool = False) -> list[Action]:
        self.now = now
        return super().tick(now, lose_actions=lose_actions)

    def apply(self, actions: list[Action]) -> None:
        now = self.now
        assert not any(isinstance(a, CheckGates) for a in actions)
        for action in actions:
            if isinstance(action, CreateHookJob) and action.job not in self.jobs:
                self.created.append(action)
                job = FakeJob(now, self.job_outcome, self.job_takes, action.tag)
                self.jobs[action.job] = job
            elif isinstance(action, DeleteHookJob):
                self.deleted.append((action.job, self.jobs.pop(action.job).view(action.job, now)))
        super().apply(actions)

    def events(self) -> list[str]:
        return [
            a.reason for _, _, actions, _ in self.log for a in actions if isinstance(a, RecordEvent)
        ]

    def phases(self) -> list[str]:
        seen: list[str] = []
        for _, status, _, _ in self.log:
            if not seen or seen[-1] != status.phase:
                seen.append(status.phase)
        return seen


def gated_spec(**extra: Any) -> CanaryReleaseSpec:
    raw = make_spec(steps=STEPS).model_dump(by_alias=True, exclude_none=True)
    raw.setdefault("gates", {"environment": {"required": ["DATABASE_URL"]}})
    raw.update(extra)
    return CanaryReleaseSpec.model_validate(raw)


def world(spec: CanaryReleaseSpec | None = None, **kwargs: Any) -> GatedWorld:
    return GatedWorld(spec=spec or gated_spec(), metric=healthy, start=T0, **kwargs)


def run(w: GatedWorld, minutes: float, every_s: int = 30) -> None:
    w.run(until=timedelta(minutes=minutes), every=timedelta(seconds=every_s))
    w.start = w.log[-1][0] + timedelta(seconds=every_s)


MISSING_KEY = failed(
    ENVIRONMENT,
    "ReferenceMissing",
    "1 problem(s): Secret app-db has no key url (container app env DATABASE_URL)",
    ["Secret app-db has no key url (container app env DATABASE_URL)"],
)


def test_failed_gate_blocks_until_fixed_then_starts() -> None:
    fixed_at = T0 + timedelta(minutes=10)

    def checks(_: str, now: datetime) -> tuple[GateCheck, ...]:
        return (passed(ENVIRONMENT, "fine"),) if now >= fixed_at else (MISSING_KEY,)

    w = world(checks=checks)
    run(w, 5)
    status = w.status
    assert status.phase == "Blocked" and status.reason == "ReferenceMissing"
    assert status.message == f"v2 blocked: environment: {MISSING_KEY.message}"
    assert w.canary is None and w.stable.replicas == 10
    assert status.gates is not None and status.gates.tag == "v2"
    [result] = status.gates.results
    assert result.verdict == "fail" and result.evidence == list(MISSING_KEY.evidence)
    assert result.since == T0  # unchanged while the verdict is the same
    assert w.events().count("ReleaseBlocked") == 1
    gate = next(c for c in status.conditions if c.type == "GatesPassed")
    assert gate.status == "False"
    # the status does not change tick to tick while blocked: no churn on the apiserver
    assert w.log[-1][1] == w.log[-2][1]

    run(w, 60)
    assert w.status.phase == "Succeeded" and w.status.stable_tag == "v2"
    assert w.phases() == ["Blocked", "Progressing", "Paused", "Promoting", "Succeeded"]
    assert {"GatesPassed", "ReleaseStarted", "Promoted"} <= set(w.events())


def test_gates_are_checked_only_while_a_release_is_about_to_start() -> None:
    w = world()
    run(w, 60)
    assert w.status.phase == "Succeeded"
    assert w.checks_made == 1  # once, at the start; never during the canary or after


def test_release_outside_its_window_waits_with_the_time_it_may_start() -> None:
    windows = {
        "timeZone": "Europe/Berlin",
        "start": [{"schedule": "0 22 * * 1-5", "duration": "6h"}],
    }
    spec = gated_spec(gates={"windows": windows})
    w = world(spec)
    run(w, 2)
    status = w.status
    opens = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # 22:00 in Berlin (CET)
    assert status.phase == "Waiting" and status.reason == "OutsideDeployWindow"
    assert status.gates is not None and status.gates.not_before == opens
    assert "may start at 2026-11-24T22:00+01:00 (Europe/Berlin)" in (status.message or "")
    w.start = opens - timedelta(minutes=1)
    run(w, 3)
    assert w.status.phase in ("Progressing", "Paused") and w.status.release_started_at == opens


def test_blackout_holds_promotion_but_never_a_rollback() -> None:
    blackout = {
        "start": (T0 + timedelta(minutes=5)).isoformat(),
        "end": (T0 + timedelta(days=3)).isoformat(),
        "reason": "year-end freeze",
    }
    spec = gated_spec(gates={"windows": {"blackouts": [blackout]}})
    w = world(spec)
    run(w, 60)  # started before the blackout; the canary earned its promotion inside it
    status = w.status
    assert status.phase == "Paused" and status.reason == "Blackout"
    assert "promotion held: blackout (year-end freeze)" in (status.message or "")
    assert w.stable.image.endswith(":v1")
    w.metric = breaking_at(w.start)
    run(w, 10)
    assert w.status.phase == "RolledBack" and w.status.reason == "MetricBreach"
    assert w.canary is None and w.stable.replicas == 10


def test_tag_back_to_stable_withdraws_a_held_release() -> None:
    w = world(checks=lambda _, __: (MISSING_KEY,))
    run(w, 2)
    assert w.status.phase == "Blocked"
    w.spec = gated_spec(release={"tag": "v1", "image": "registry.example.com/app:{tag}"})
    run(w, 1)
    assert w.status.phase == "Idle" and "ReleaseWithdrawn" in w.events()


HOOKS = {
    "preRollout": {
        "job": {"template": {"spec": {"containers": [{"name": "m", "image": "app:{tag}"}]}}},
        "timeout": "10m",
    }
}
SCHEMA_GATE = {
    "database": {"secretKeyRef": {"name": "db", "key": "url"}},
    "schema": {"tables": [{"name": "security_keys", "columns": [{"name": "key_hash"}]}]},
}


def schema_after_migration(w: GatedWorld) -> CheckFn:
    """The column exists once the migration Job has succeeded."""

    def checks(_: str, now: datetime) -> tuple[GateCheck, ...]:
        migrated = any(job.view(n, now).state == "Succeeded" for n, job in w.jobs.items())
        if migrated:
            return (passed(SCHEMA, "present"),)
        return (failed(SCHEMA, "SchemaMismatch", "column security_keys.key_hash missing"),)

    return checks


def test_pre_rollout_hook_runs_the_migration_then_the_schema_gate_counts() -> None:
    w = world(gated_spec(gates=SCHEMA_GATE, hooks=HOOKS))
    w.checks = schema_after_migration(w)
    run(w, 1)
    assert w.status.phase == "Waiting" and w.status.reason == "PreRolloutHookRunning"
    [created] = w.created
    assert created.hook == "preRollout" and created.tag == "v2" and created.image.endswith(":v2")
    assert created.job.startswith("app-pre-rollout-") and len(created.job) <= 63
    assert w.status.gates is not None
    pending = {r.gate: r.reason for r in w.status.gates.results}
    assert pending == {"pre-rollout": "PreRolloutHookRunning", "schema": "AfterPreRolloutHook"}
    run(w, 60)
    assert w.status.phase == "Succeeded" and len(w.created) == 1
    assert w.status.gates.hooks[0].state == "Succeeded"  # type: ignore[union-attr]
    assert w.phases() == ["Waiting", "Progressing", "Paused", "Promoting", "Succeeded"]


def test_failed_pre_rollout_hook_blocks_and_deleting_the_job_runs_it_again() -> None:
    w = world(gated_spec(hooks=HOOKS), job_outcome="Failed")
    run(w, 5)
    status = w.status
    assert status.phase == "Blocked" and status.reason == "PreRolloutHookFailed"
    assert "delete the Job to run it again" in (status.message or "")
    assert "HookFailed" in w.events() and w.canary is None
    w.jobs.clear()  # kubectl delete job ...
    w.job_outcome = "Succeeded"
    run(w, 5)
    assert w.status.phase in ("Progressing", "Paused") and len(w.created) == 2
    assert "HookRestarted" in w.events()


def test_pre_rollout_hook_that_never_finishes_times_out_and_blocks() -> None:
    w = world(gated_spec(hooks=HOOKS), job_takes=timedelta(hours=5))
    run(w, 15)
    assert w.status.phase == "Blocked" and w.status.reason == "PreRolloutHookTimedOut"


def test_hook_waits_for_the_gates_before_it() -> None:
    w = world(gated_spec(hooks=HOOKS), checks=lambda _, __: (MISSING_KEY,))
    run(w, 5)
    assert w.status.phase == "Blocked" and w.created == []


def test_post_promotion_and_on_rollback_hooks_run_once_and_are_followed() -> None:
    job = {"template": {"spec": {"containers": [{"name": "h", "image": "tools:1"}]}}}
    hooks = {"postPromotion": {"job": job}, "onRollback": {"job": job}}
    w = world(gated_spec(hooks=hooks))
    run(w, 60)
    assert w.status.phase == "Succeeded"
    assert [c.hook for c in w.created] == ["postPromotion"]
    run(w, 5)
    assert w.status.gates is not None and w.status.gates.hooks[-1].state == "Succeeded"
    assert "HookSucceeded" in w.events()
    w.spec = gated_spec(
        hooks=hooks, release={"tag": "v3", "image": "registry.example.com/app:{tag}"}
    )
    w.metric = breaking_at(w.start + timedelta(minutes=3))
    run(w, 20)
    assert w.status.phase == "RolledBack"
    assert [c.hook for c in w.created] == ["postPromotion", "onRollback"]
    assert w.created[-1].tag == "v3" and "MetricBreach" in w.created[-1].reason


def test_finished_jobs_of_past_tags_go_once_status_no_longer_records_their_runs() -> None:
    """Two hook runs per release, ten kept in status: from the sixth release on, the
    Jobs of the runs that fall out of status go with them, and nothing newer."""
    job = {"template": {"spec": {"containers": [{"name": "h", "image": "tools:1"}]}}}
    hooks = {"preRollout": {"job": job}, "postPromotion": {"job": job}}
    w = world(gated_spec(hooks=hooks))
    for n in range(2, 10):
        release = {"tag": f"v{n}", "image": "registry.example.com/app:{tag}"}
        w.spec = gated_spec(hooks=hooks, release=release)
        run(w, 70)
        assert w.status.phase == "Succeeded" and w.status.gates is not None
        runs = w.status.gates.hooks
        assert len(runs) == min(2 * (n - 1), MAX_HOOK_RUNS)
        assert set(w.jobs) == {r.job for r in runs}  # every Job a run in status, and no more
    gone = [view for _, view in w.deleted]
    assert sorted({view.tag or "" for view in gone}) == ["v2", "v3", "v4"]  # 16 runs, 10 kept
    assert len(gone) == 6 and all(view.state == "Succeeded" for view in gone)


def test_the_current_tag_and_running_jobs_are_never_pruned() -> None:
    job = {"template": {"spec": {"containers": [{"name": "h", "image": "tools:1"}]}}}
    w = world(gated_spec(hooks={"preRollout": {"job": job}}))
    run(w, 70)
    assert w.status.phase == "Succeeded" and w.status.gates is not None
    [v2] = w.created
    w.status.gates.hooks = []  # as if its run had fallen out of status
    w.jobs["slow"] = FakeJob(w.start, "Succeeded", timedelta(minutes=10), tag="v0")
    run(w, 5)
    assert set(w.jobs) == {v2.job, "slow"} and w.deleted == []
    run(w, 10)
    assert [name for name, _ in w.deleted] == ["slow"]  # once it finished
    w.spec = gated_spec(
        hooks={"preRollout": {"job": job}},
        release={"tag": "v3", "image": "registry.example.com/app:{tag}"},
    )
    run(w, 1)
    assert [name for name, _ in w.deleted] == ["slow", v2.job]


# -- breachPolicy freeze -------------------------------------------------------------


def frozen_world() -> GatedWorld:
    spec = make_spec(steps=[{"setWeight": 20}, {"pause": {"duration": "1h"}}, {"setWeight": 100}])
    raw = spec.model_dump(by_alias=True, exclude_none=True) | {"breachPolicy": "freeze"}
    w = world(CanaryReleaseSpec.model_validate(raw))
    w.metric = breaking_at(T0 + timedelta(minutes=10))
    run(w, 30)
    return w


def test_freeze_holds_the_canary_at_its_weight_and_alerts() -> None:
    w = frozen_world()
    status = w.status
    assert status.phase == "Paused" and status.reason == "Frozen"
    assert status.canary_weight == 20 and w.canary is not None and w.canary.replicas == 2
    assert w.stable.replicas == 8 and w.canary.image.endswith(":v2")
    assert status.history == [] and "RolledBack" not in w.events()
    assert w.events().count("Frozen") == 1
    frozen = next(c for c in status.conditions if c.type == "Frozen")
    assert frozen.status == "True" and frozen.reason == "MetricBreach"
    assert "frozen after MetricBreach" in (status.message or "")
    run(w, 120)  # far past the pause: still holding for a human
    assert w.status.phase == "Paused" and w.canary is not None and w.canary.replicas == 2


def test_a_human_resolves_a_freeze_forward_or_back() -> None:
    forward = frozen_world()
    forward.command = "promote-full 1"
    forward.tick(forward.start)
    assert forward.status.phase == "Promoting"
    decided = next(c for c in forward.status.conditions if c.type == "Frozen")
    assert (decided.status, decided.reason) == ("False", "PromotedByHuman")
    run(forward, 30)
    assert forward.events().count("Frozen") == 1  # the breach went on; no second freeze
    assert forward.status.phase == "Succeeded" and forward.stable.image.endswith(":v2")
    assert forward.status.gates is not None and forward.status.gates.freeze is None

    back = frozen_world()
    back.command = "abort 1"
    run(back, 10)
    assert back.status.phase == "RolledBack" and back.canary is None
    assert back.stable.image.endswith(":v1")
    thawed = next(c for c in back.status.conditions if c.type == "Frozen")
    assert thawed.status == "False"
