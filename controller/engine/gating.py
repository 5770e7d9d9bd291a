"""Gates before a release starts: Blocked, Waiting, or go.

When the engine would start a release it first asks the runtime to check the
gates for that tag (the `CheckGates` action); the runtime checks them and
decides again with the results in `Observed.gates`. Gate I/O therefore
happens only when a release is about to start or is still held, never while
one runs.

The gates are taken in the order of the checklist:
1. environment, backups, the migration lint and the start window;
2. the pre-rollout hook (typically the migration itself), only once (1) passes;
3. the schema and migration-history gates, which describe the database after
   the migration, so they count only once the hook has succeeded.
A failure anywhere is `Blocked` (someone must fix something); something
still to come (a window, a running hook) is `Waiting`. Neither touches the
running version, and both are re-checked on every reconcile, so fixing the
cause, or the window opening, is enough to start the release.
"""

from __future__ import annotations

from controller.api.gates import (
    MAX_EVIDENCE,
    MAX_EVIDENCE_CHARS,
    MAX_GATE_RESULTS,
    MAX_MESSAGE_CHARS,
    GateResult,
    GatesStatus,
)
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, Phase
from controller.engine.actions import CheckGates, CreateHookJob
from controller.engine.conditions import set_condition
from controller.engine.context import Decision
from controller.engine.deploy_windows import IN_BLACKOUT, OUTSIDE_WINDOW, window_check
from controller.engine.freeze import thaw
from controller.engine.hooks import (
    find_run,
    follow_runs,
    gates_status,
    hook_job_name,
    prune_jobs,
    refresh_run,
    release_name,
    restart_run,
    start_run,
    store_run,
)
from controller.gates.checks import (
    AFTER_HOOK,
    AFTER_PRE_ROLLOUT,
    FILES_NOT_EXTRACTED,
    MIGRATION_LINT,
    PRE_ROLLOUT,
    PROMOTE_WINDOW,
    GateCheck,
    worst,
)

GATES_PASSED = "GatesPassed"
HELD_PHASES = ("Blocked", "Waiting")
WINDOW_REASONS = (OUTSIDE_WINDOW, IN_BLACKOUT)


def gates_configured(spec: CanaryReleaseSpec) -> bool:
    return spec.gates is not None or (spec.hooks is not None and spec.hooks.pre_rollout is not None)


def clear_to_start(d: Decision, tag: str) -> bool:
    """True if `tag` may start now; otherwise the release is Blocked or Waiting, saying why."""
    if not gates_configured(d.spec):
        return True
    observed = d.observed.gates
    if observed is None or observed.tag != tag:
        d.actions.append(CheckGates(tag))
        return False
    windows = d.spec.gates.windows if d.spec.gates else None
    before = [c for c in observed.checks if c.gate not in AFTER_HOOK]
    after = [c for c in observed.checks if c.gate in AFTER_HOOK]
    window, opens = window_check(windows, "start", d.now)
    if window is not None:
        before.append(window)
    _extract_migration_files(d, tag, before)
    hook = d.spec.hooks.pre_rollout if d.spec.hooks else None
    hook_check = None
    if hook is not None and worst(before) is None:
        hook_check = _pre_rollout(d, tag)
    if hook is not None and (hook_check is None or hook_check.verdict != "pass"):
        after = [_after_hook(c) for c in after]
    checks = [*before, *([hook_check] if hook_check else []), *after]
    deciding = worst(checks)
    gates = gates_status(d)
    _record(d, gates, tag, checks)
    gates.not_before = opens if deciding is not None and deciding is window else None
    if deciding is not None:
        _hold(d, tag, deciding, sum(c.verdict == deciding.verdict for c in checks))
        return False
    was_held = d.status.phase in HELD_PHASES
    d.status.conditions = set_condition(
        d.status.conditions, GATES_PASSED, "True", "Passed", f"every gate passed for {tag}", d.now
    )
    if was_held:
        d.event("GatesPassed", f"every gate passed for {tag}; starting")
    return True


def _after_hook(check: GateCheck) -> GateCheck:
    return GateCheck(
        check.gate, "pending", AFTER_PRE_ROLLOUT, "checked once the pre-rollout hook has succeeded"
    )


def _extract_migration_files(d: Decision, tag: str, checks: list[GateCheck]) -> None:
    """Lint from an image: ask for the Job that prints the files, once the runtime misses it."""
    release = release_name(d)
    wanted = any(c.gate == MIGRATION_LINT and c.reason == FILES_NOT_EXTRACTED for c in checks)
    if not wanted or release is None:
        return
    lint = d.spec.gates.migrations.lint if d.spec.gates and d.spec.gates.migrations else None
    source = lint.image if lint is not None else None
    image = source.image.replace("{tag}", tag) if source and source.image else None
    d.actions.append(
        CreateHookJob(
            hook="migrationFiles",
            job=hook_job_name(release, "migrationFiles", tag),
            tag=tag,
            image=image or d.spec.release.image_for(tag),
            stable_tag=d.status.stable_tag,
        )
    )


def _pre_rollout(d: Decision, tag: str) -> GateCheck:
    hooks = d.spec.hooks
    assert hooks is not None and hooks.pre_rollout is not None
    release = release_name(d)
    run = find_run(d, hook_job_name(release, "preRollout", tag)) if release else None
    observed = d.observed.gates
    if run is None:
        run = start_run(d, "preRollout", tag, "", "before the canary")
    elif run.state in ("Failed", "TimedOut") and observed and observed.jobs is not None:
        if observed.job(run.job) is None:  # a human deleted the failed Job: run it again
            run = restart_run(d, run)
    else:
        run = refresh_run(d, run, hooks.pre_rollout)
        store_run(d, run)
    if run is None:
        return GateCheck(PRE_ROLLOUT, "fail", "HookUnavailable", "the hook Job cannot be named")
    what = f"Job {run.job}"
    if run.state == "Succeeded":
        return GateCheck(PRE_ROLLOUT, "pass", "Passed", f"{what} succeeded")
    if run.state == "Running":
        since = run.started_at.isoformat()
        return GateCheck(
            PRE_ROLLOUT, "pending", "PreRolloutHookRunning", f"{what} running since {since}"
        )
    reason = "PreRolloutHookTimedOut" if run.state == "TimedOut" else "PreRolloutHookFailed"
    detail = f": {run.message}" if run.message else ""
    return GateCheck(
        PRE_ROLLOUT,
        "fail",
        reason,
        f"{what} {run.state.lower()}{detail}; delete the Job to run it again",
    )


def _bounded(check: GateCheck) -> tuple[str, list[str]]:
    message = check.message[:MAX_MESSAGE_CHARS]
    evidence = [e[:MAX_EVIDENCE_CHARS] for e in check.evidence[:MAX_EVIDENCE]]
    return message, evidence


def _record(d: Decision, gates: GatesStatus, tag: str, checks: list[GateCheck]) -> None:
    """Every verdict with its evidence; `since` moves only when a verdict or its reason changes."""
    previous = {r.gate: r for r in gates.results} if gates.tag == tag else {}
    results = []
    for check in checks[:MAX_GATE_RESULTS]:
        message, evidence = _bounded(check)
        old = previous.get(check.gate)
        same = old is not None and (old.verdict, old.reason, old.message, old.evidence) == (
            check.verdict,
            check.reason,
            message,
            evidence,
        )
        results.append(
            GateResult(
                gate=check.gate,
                verdict=check.verdict,
                reason=check.reason,
                message=message,
                evidence=evidence,
                since=old.since if same and old is not None else d.now,
            )
        )
    gates.tag, gates.results = tag, results


def _hold(d: Decision, tag: str, deciding: GateCheck, count: int) -> None:
    status = d.status
    blocked = deciding.verdict == "fail"
    phase: Phase = "Blocked" if blocked else "Waiting"
    more = f" (and {count - 1} more)" if count > 1 else ""
    verb = "blocked" if phase == "Blocked" else "waiting"
    message = f"{tag} {verb}: {deciding.gate}: {deciding.message}{more}"
    changed = (status.phase, status.reason) != (phase, deciding.reason)
    status.phase, status.reason, status.message = phase, deciding.reason, message
    # Nothing of a canary remains: a superseded one is cleaned up (settle) while this waits.
    status.canary_tag, status.current_step_index, status.canary_weight = None, None, 0
    status.next_analysis_at, status.paused_at, status.canary_unready_since = None, None, None
    status.conditions = set_condition(
        status.conditions,
        GATES_PASSED,
        "False" if blocked else "Unknown",
        deciding.reason,
        message,
        d.now,
    )
    if changed:
        reason = "ReleaseBlocked" if phase == "Blocked" else "ReleaseWaiting"
        d.event(reason, message, warning=phase == "Blocked")


def promotion_held(d: Decision) -> bool:
    """Called before an automatic promotion: hold it while the promote window is closed."""
    windows = d.spec.gates.windows if d.spec.gates else None
    check, opens = window_check(windows, "promote", d.now)
    if check is None or check.verdict == "pass":
        if d.status.gates is not None:
            d.status.gates.not_before = None
        return False
    gates = gates_status(d)
    if d.status.reason != check.reason:
        d.event("PromotionWaiting", f"{d.status.canary_tag}: {check.message}")
    d.status.reason = check.reason
    gates.not_before = opens
    message, evidence = _bounded(check)
    kept = [r for r in gates.results if r.gate != PROMOTE_WINDOW]
    old = next((r for r in gates.results if r.gate == PROMOTE_WINDOW), None)
    since = old.since if old is not None and old.message == message else d.now
    result = GateResult(
        gate=PROMOTE_WINDOW,
        verdict=check.verdict,
        reason=check.reason,
        message=message,
        evidence=evidence,
        since=since,
    )
    gates.results = [*kept, result][-MAX_GATE_RESULTS:]
    return True


def promotion_note(status: CanaryReleaseStatus) -> str | None:
    """For the one-line summary: why an earned promotion is waiting."""
    if status.reason not in WINDOW_REASONS or status.gates is None:
        return None
    result = next((r for r in status.gates.results if r.gate == PROMOTE_WINDOW), None)
    return f"promotion held: {result.message}" if result else "promotion held by a deploy window"


def follow_up(d: Decision, previous: CanaryReleaseStatus) -> None:
    """After the main decision: hooks for what just happened, hook outcomes, stand-down, thaw."""
    if d.status.gates is None and d.spec.hooks is None and not gates_configured(d.spec):
        return
    _stand_down(d)
    _hooks_for_transitions(d, previous)
    follow_runs(d)
    thaw(d)
    prune_jobs(d)  # last: housekeeping that fails must not hold back what matters


def _stand_down(d: Decision) -> None:
    """A held release whose tag is no longer wanted (back to stable, or removed) goes Idle."""
    status, gates = d.status, d.status.gates
    if status.phase not in HELD_PHASES or any(isinstance(a, CheckGates) for a in d.actions):
        return
    tag = d.spec.release.tag
    held = gates.tag if gates is not None else None
    if tag is not None and tag == held and tag != status.stable_tag:
        return
    d.event("ReleaseWithdrawn", f"{held} is no longer requested; nothing to start")
    status.phase, status.reason, status.message = "Idle", None, None
    if gates is not None:
        gates.not_before = None


def _hooks_for_transitions(d: Decision, previous: CanaryReleaseStatus) -> None:
    status = d.status
    started = status.release_started_at.isoformat() if status.release_started_at else ""
    if status.phase == "Succeeded" and previous.phase != "Succeeded" and status.stable_tag:
        start_run(d, "postPromotion", status.stable_tag, started, "promoted")
    if status.phase == "RolledBack" and previous.phase != "RolledBack":
        last = status.history[-1] if status.history else None
        recorded = last is not None and last.finished_at == d.now
        tag = last.tag if recorded and last is not None else status.canary_tag
        if tag:
            reason = f"{status.reason}: {status.message}" if status.reason else "rolled back"
            start_run(d, "onRollback", tag, f"{started}/{d.now.isoformat()}", reason)
