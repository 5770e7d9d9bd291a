"""Hook Jobs: run before the canary, after a promotion and after a rollback.

The engine never waits on a Job by polling it; it records a run in status
(`status.gates.hooks`), asks for the Job with an idempotent action, and reads
the outcome from the Job's status on later reconciles. The Job's name is a
hash of (hook, tag, attempt), so asking twice never runs it twice, and a
restarted controller finds the Job it created before.

A run that has no outcome after the hook's timeout is `TimedOut`, counted
from when the engine asked for it, so a Job that could not even be created
(an invalid spec) still ends.
"""

from __future__ import annotations

import hashlib

from controller.api.durations import format_duration
from controller.api.gates import MAX_HOOK_RUNS, GatesStatus, Hook, HookName, HookRun
from controller.engine.actions import CreateHookJob, DeleteHookJob
from controller.engine.context import Decision

_SLUGS = {
    "preRollout": "pre-rollout",
    "postPromotion": "post-promotion",
    "onRollback": "on-rollback",
    "migrationFiles": "migration-files",
}
#: Job names must fit a label value (63 characters): release stem + slug + 8 hex digits.
_STEM = 38


def hook_job_name(release: str, hook: str, tag: str, attempt: str = "") -> str:
    # The full release name is hashed too: two releases sharing a long prefix never collide.
    digest = hashlib.sha256(f"{release}\0{hook}\0{tag}\0{attempt}".encode()).hexdigest()[:8]
    stem = release[:_STEM].rstrip("-.") or "release"
    return f"{stem}-{_SLUGS[hook]}-{digest}"


def gates_status(d: Decision) -> GatesStatus:
    """status.gates, created on first use (a release without gates never gets one)."""
    if d.status.gates is None:
        d.status.gates = GatesStatus()
    return d.status.gates


def release_name(d: Decision) -> str | None:
    observed = d.observed.gates
    return observed.release if observed is not None else None


def store_run(d: Decision, run: HookRun) -> None:
    gates = gates_status(d)
    others = [r for r in gates.hooks if r.job != run.job]
    finished = [r for r in others if r.state != "Running"]
    # Bounded: the oldest finished runs go first; running ones are kept.
    while len(others) + 1 > MAX_HOOK_RUNS and finished:
        others.remove(finished.pop(0))
    gates.hooks = [*others, run][-MAX_HOOK_RUNS:]


def find_run(d: Decision, job: str) -> HookRun | None:
    gates = d.status.gates
    return next((r for r in gates.hooks if r.job == job), None) if gates else None


def _ask(d: Decision, hook: HookName, job: str, tag: str, reason: str) -> None:
    d.actions.append(
        CreateHookJob(
            hook=hook,
            job=job,
            tag=tag,
            image=d.spec.release.image_for(tag),
            stable_tag=d.status.stable_tag,
            reason=reason,
        )
    )


def start_run(d: Decision, hook: HookName, tag: str, attempt: str, reason: str) -> HookRun | None:
    """Ask for the hook's Job and record the run; None when the hook is not configured."""
    config = d.spec.hooks.get(hook) if d.spec.hooks else None
    release = release_name(d)
    if config is None or release is None:
        return None
    job = hook_job_name(release, hook, tag, attempt)
    existing = find_run(d, job)
    if existing is not None:
        return existing
    observed = d.observed.gates.job(job) if d.observed.gates else None
    if observed is None:
        _ask(d, hook, job, tag, reason)
        started = d.now
    else:
        started = observed.created_at
    run = HookRun(
        hook=hook, tag=tag, job=job, state="Running", started_at=started, reason=reason[:1024]
    )
    run = refresh_run(d, run, config)
    store_run(d, run)
    return run


def restart_run(d: Decision, run: HookRun) -> HookRun:
    """Run a failed hook again (its Job was deleted by a human to ask for exactly this)."""
    _ask(d, run.hook, run.job, run.tag, run.reason)
    fresh = HookRun(
        hook=run.hook,
        tag=run.tag,
        job=run.job,
        state="Running",
        started_at=d.now,
        reason=run.reason,
    )
    store_run(d, fresh)
    d.event("HookRestarted", f"{run.hook} hook for {run.tag}: Job {run.job} runs again")
    return fresh


def refresh_run(d: Decision, run: HookRun, config: Hook, *, reask: bool = True) -> HookRun:
    """Fold the Job's observed status into the run; re-ask for a Job that is not there.

    A Job can be missing because the create is not visible yet or it failed
    (both harmless to ask again: the name makes it idempotent).
    """
    observed = d.observed.gates
    if run.state != "Running" or observed is None:
        return run
    job = observed.job(run.job)
    what = f"{run.hook} hook for {run.tag} (Job {run.job})"
    if job is not None and job.state != "Running":
        done = run.model_copy(
            update={"state": job.state, "finished_at": d.now, "message": job.message[:1024]}
        )
        if job.state == "Succeeded":
            d.event("HookSucceeded", f"{what} succeeded")
        else:
            d.event("HookFailed", f"{what} failed: {job.message}", warning=True)
        return done
    timeout = config.timeout_length()
    if d.now - run.started_at >= timeout:
        message = f"no outcome after {format_duration(timeout)}"
        d.event("HookFailed", f"{what} timed out: {message}", warning=True)
        return run.model_copy(
            update={"state": "TimedOut", "finished_at": d.now, "message": message}
        )
    if reask and observed.jobs is not None and job is None:
        _ask(d, run.hook, run.job, run.tag, run.reason)
    return run


def follow_runs(d: Decision) -> None:
    """Fold Job outcomes into every running hook run (post-promotion and on-rollback ones)."""
    gates, hooks = d.status.gates, d.spec.hooks
    if gates is None or hooks is None:
        return
    for run in list(gates.hooks):
        config = hooks.get(run.hook)
        if run.state == "Running" and config is not None:
            # A pre-rollout Job is (re)created only by the gate, while its release is held.
            store_run(d, refresh_run(d, run, config, reask=run.hook != "preRollout"))


def hooks_running(status_gates: GatesStatus | None) -> bool:
    """The runtime reads hook Jobs only while this is True (or when gates are checked)."""
    return status_gates is not None and any(r.state == "Running" for r in status_gates.hooks)


def prune_jobs(d: Decision) -> None:
    """Delete the finished hook Jobs that belong to neither the release's tag nor a run
    in status (one that fell out of the last MAX_HOOK_RUNS), whenever the Jobs are read.

    Without this, every release left its Jobs and their pods behind for good.
    The current tag's Jobs stay: a `retry` reuses a succeeded pre-rollout Job,
    and deleting a failed one is how a human asks for a run again. So do the
    Jobs of the runs in status, which on-call reads when asking why.
    """
    observed = d.observed.gates
    if observed is None or observed.jobs is None:
        return
    recorded = {r.job for r in d.status.gates.hooks} if d.status.gates else set()
    asked = {a.job for a in d.actions if isinstance(a, CreateHookJob)}
    for job in observed.jobs:
        past = job.tag is not None and job.tag != d.spec.release.tag
        if job.state != "Running" and past and job.name not in recorded | asked:
            d.actions.append(DeleteHookJob(job.name))
