"""The decision engine: (spec, status, observed, now) -> (next status, actions).

Pure: no I/O, no clock. The runtime observes, calls `decide`, writes the
returned status, then performs the actions. Because every action is an
idempotent "make it so" and all state is in status, running `decide` again on
the same inputs gives the same answer, and a restart resumes where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from controller.api.spec import TAG_PATTERN, CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, Outcome
from controller.engine.actions import Action, CheckGates, RecordEvent
from controller.engine.analysis import (
    ANALYSIS,
    analysis_passed,
    apply_measurements,
    inconclusive_choice,
    inconclusive_message,
)
from controller.engine.auditing import ANOMALY, AUDIT_LOG, apply_audit_report, audit_log_passed
from controller.engine.conditions import (
    TARGET_FOUND,
    false_since,
    find_condition,
    set_condition,
    target_missing,
)
from controller.engine.context import Decision
from controller.engine.freeze import freeze
from controller.engine.gate_observations import GateObservations
from controller.engine.gating import clear_to_start, follow_up, promotion_held
from controller.engine.health import pod_trouble
from controller.engine.observations import Observed
from controller.engine.quick_rollback import (
    QUICK_ROLLBACK,
    QUICK_ROLLBACK_RUNS,
    finish_quick_rollback,
    quick_rollback_image,
    quick_rollback_refusal,
    start_quick_rollback,
)
from controller.engine.replicas import weight_at
from controller.engine.rollout import (
    drive_promotion,
    reconcile_weight,
    settle,
    start_stable_rollout,
)
from controller.engine.routing import canary_goal, record_route
from controller.engine.stalls import (
    rollback_superseded,
    stable_rolling_back,
    stalled_rollout,
    watch_rollback,
)
from controller.engine.summary import describe_step, summarize
from controller.engine.watching import (
    end_watch,
    judge_after_promotion,
    roll_back_promotion,
    start_watch,
    watching,
)

SPEC_VALID = "SpecValid"
#: Phases with nothing to lose: `Failed` (a missing target, an invalid spec) returns to Idle.
RECOVERABLE_PHASES = ("Idle", "Failed", "Blocked", "Waiting")


def decide(
    spec: CanaryReleaseSpec, status: CanaryReleaseStatus, observed: Observed, now: datetime
) -> tuple[CanaryReleaseStatus, list[Action]]:
    d = Decision(spec, status.model_copy(deep=True), observed, now)
    d.status.observed_generation = observed.generation
    invalid_since = false_since(status, SPEC_VALID)
    missing_since = false_since(status, TARGET_FOUND)
    _spec_valid(d)
    if invalid_since is not None:  # the time held by both is added once, when the last one ends
        _resume_clocks(d, (missing_since or d.now) - invalid_since)
    if observed.target is None:
        _target_missing(d)
        return d.status, d.actions
    _target_found(d)
    if missing_since is not None:
        _resume_clocks(d, d.now - missing_since)
    _adopt(d)
    _handle_command(d)
    _handle_tag(d)
    _follow_resize(d)
    if d.status.phase in ("Progressing", "Paused"):
        _run_canary(d)
    if d.status.phase == "Promoting":
        _run_promotion(d)
    if d.status.phase == "Succeeded":
        _watch_after_promotion(d)
    if not d.active:
        settle(d)
        _stand_down(d)
    record_route(d)
    follow_up(d, status)
    d.status.message = summarize(d)
    return d.status, d.actions


def _stand_down(d: Decision) -> None:
    """Outside a canary nothing is judged: a lost Prometheus or audit log holds nothing.

    Its condition turns Unknown (so an alert on `False` ends with the
    release), and the outage clock restarts with the next canary.
    """
    status = d.status
    status.prometheus_unreachable_since = None
    if status.audit_log is not None:
        status.audit_log.unreachable_since = None
    for kind in (ANALYSIS, AUDIT_LOG):
        current = find_condition(status.conditions, kind)
        if current is not None and current.status == "False":
            message = (
                f"nothing is judged while the release is {status.phase}; last: {current.message}"
            )
            status.conditions = set_condition(
                status.conditions, kind, "Unknown", "NotJudging", message[:1024], d.now
            )


def tag_of(template: str, image: str) -> str | None:
    """Recover the tag from an image rendered from `template` (None if it does not match).

    A digest pinned after the tag (`app:v1@sha256:...`, as image automation
    writes it) is not part of the tag: the tag must be one `spec.release.tag`
    accepts, or a quick rollback to it could never be asked for.
    """
    prefix, _, suffix = template.partition("{tag}")
    if "@" not in template:
        image = image.split("@")[0]
    match = re.fullmatch(re.escape(prefix) + r"(.+?)" + re.escape(suffix), image)
    if match is None or not re.fullmatch(TAG_PATTERN, match.group(1)):
        return None
    return match.group(1)


def _target_missing(d: Decision) -> None:
    """No Deployment to act on: say so, and lose nothing the release already knows.

    It is often back within a minute (`kubectl replace --force`, a GitOps
    `Replace=true` sync), so a release that has something to lose keeps it: a
    canary its step and clock, a rolled-back tag its verdict (which keeps it
    from being canaried again by itself).
    """
    status, name = d.status, d.spec.target_ref.name
    message = f"Deployment {name!r} not found in this namespace; waiting for it to exist"
    if not target_missing(status):  # said once, when it goes
        d.event("TargetNotFound", message, warning=True)
    status.conditions = set_condition(
        status.conditions, TARGET_FOUND, "False", "NotFound", message, d.now
    )
    _fail_or_hold(status, "TargetNotFound", message, "until it exists again")


def decide_checking_gates(
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
    observed: Observed,
    now: datetime,
    check: Callable[[CheckGates], GateObservations],
) -> tuple[CanaryReleaseStatus, list[Action]]:
    """`decide`, and when it asks for the gates (a release about to start), decide
    again from the same status with `check`'s verdicts: the runtime and the
    simulated world answer the request the same way."""
    new_status, actions = decide(spec, status, observed, now)
    request = next((a for a in actions if isinstance(a, CheckGates)), None)
    if request is None:
        return new_status, actions
    return decide(spec, status, replace(observed, gates=check(request)), now)


def _resume_clocks(d: Decision, held: timedelta) -> None:
    """A held canary's step, and a held watch after promotion, did not run meanwhile.

    Nothing was measured while it was held, so counting that time would end
    a 24-hour pause with hours of it never judged. The clock moves on by the
    time held, as after a human's pause (whose own `resume` covers the time,
    so a paused step is left to it).
    """
    status = d.status
    if held <= timedelta(0):
        return
    canary = status.phase in ("Progressing", "Paused") and status.paused_at is None
    if canary and status.step_started_at is not None:
        status.step_started_at += held
    if watching(status) and status.post_promotion is not None:
        status.post_promotion.until += held


def _target_found(d: Decision) -> None:
    status = d.status
    status.conditions = set_condition(
        status.conditions, TARGET_FOUND, "True", "Found", "target Deployment exists", d.now
    )
    if status.phase == "Failed" and status.reason in ("TargetNotFound", "InvalidSpec"):
        status.phase, status.reason = "Idle", None


def _follow_resize(d: Decision) -> None:
    """Someone else scaled the target up while the release holds it: that is its full size now.

    During an incident a human scales up by hand; reverting that within a
    second would take the capacity away again. Their number is the new total:
    the canary's share comes out of it, and it is restored after the release.
    Only a size above the total counts: below it is where the controller
    itself keeps stable during a canary, and an earlier version of it wrote
    those sizes under another field manager.
    """
    status, target = d.status, d.target
    pending = d.active or status.saved_strategy is not None or d.observed.canary is not None
    by = target.replicas_set_by
    if d.autoscaled or not pending or by is None or status.target_replicas is None:
        return
    if target.replicas <= status.target_replicas:
        return
    d.event(
        "TargetResized",
        f"{target.name}'s replicas set to {target.replicas} by {by} "
        f"(was {status.target_replicas}): its full size from now on, the canary's share included",
    )
    status.target_replicas = target.replicas


def _adopt(d: Decision) -> None:
    """First sight of the target: whatever it runs now is stable."""
    status, target = d.status, d.target
    if status.stable_image is None:
        status.stable_image = target.image
        status.stable_tag = tag_of(d.spec.release.image, target.image)


def command_pending(command: str | None, status: CanaryReleaseStatus) -> bool:
    """A `canary.dev/command` annotation not handled yet (an empty one is no command)."""
    return bool(command) and command != status.last_command


def _handle_command(d: Decision) -> None:
    """One-shot commands from the `canary.dev/command` annotation, each handled once."""
    command, status = d.observed.command, d.status
    if command is None or not command_pending(command, status):
        return
    status.last_command = command
    verb = command.split()[0].lower()
    phase = status.phase
    if verb in ("abort", "pause") and status.reason == QUICK_ROLLBACK and d.active:
        d.event("CommandIgnored", f"{command!r}: {QUICK_ROLLBACK_RUNS}", warning=True)
    elif verb == "pause" and phase == "Promoting":
        d.event(
            "CommandIgnored",
            f"{command!r}: the promotion is rolling onto every replica and cannot be paused; "
            "abort rolls stable back",
            warning=True,
        )
    elif verb == "promote" and d.active:
        d.force_advance = True
        status.paused_at = None  # a pause (a human's, or a freeze) ends with its step
        d.event("PromoteRequested", f"step skipped by a human ({command})")
    elif verb == "promote-full" and d.active:
        d.force_promotion = True
        d.event("PromoteRequested", f"full promotion requested by a human ({command})")
    elif verb == "abort" and d.active:
        _roll_back(d, "Aborted", f"aborted by a human ({command})", outcome="Aborted")
    elif verb == "pause" and d.active and status.paused_at is None:
        status.paused_at = d.now
        d.event("Paused", f"paused by a human ({command})")
    elif verb == "resume" and status.paused_at is not None:
        if status.step_started_at is not None:
            status.step_started_at += max(d.now - status.paused_at, timedelta(0))
        status.paused_at = None
        d.event("Resumed", f"resumed by a human ({command})")
    elif verb == "retry" and phase in ("RolledBack", "Failed") and stable_rolling_back(status):
        d.event(
            "CommandIgnored",
            f"{command!r}: stable is still rolling back to {status.stable_tag}; retry once "
            "it runs there, so the canary is judged against the build stable runs",
            warning=True,
        )
    elif verb == "retry" and phase in ("RolledBack", "Failed") and _retryable(d):
        _start_release(d, d.spec.release.tag or "")
    elif verb == "rollback":
        _handle_rollback(d, command)
    else:
        d.event("CommandIgnored", f"{command!r} does nothing in phase {phase}", warning=True)


def _handle_rollback(d: Decision, command: str) -> None:
    """During a canary the old version still runs: roll back now. After it: the quick rollback."""
    if d.status.reason == QUICK_ROLLBACK and d.active:
        refusal: str | None = "a rollback is already running"
    elif d.active:
        _roll_back(d, QUICK_ROLLBACK, f"rolled back by a human ({command})")
        return
    else:
        refusal = quick_rollback_refusal(d)
    if refusal is None:
        start_quick_rollback(d, command)
    else:
        d.event("CommandIgnored", f"{command!r}: {refusal}", warning=True)


def _retryable(d: Decision) -> bool:
    """A tag to retry exists and is not what already runs (after a quick rollback it is)."""
    tag = d.spec.release.tag
    return tag is not None and tag != d.status.stable_tag


def _handle_tag(d: Decision) -> None:
    tag, status = d.spec.release.tag, d.status
    if tag is None and d.active and status.reason != QUICK_ROLLBACK:
        tag = status.stable_tag  # no release asked for any more: as if set back to stable's
    if tag is None:
        return
    if d.active:
        if tag == status.canary_tag:
            return
        reason = f"superseded by tag {tag}" if d.spec.release.tag else "the tag was removed"
        if status.reason == QUICK_ROLLBACK:
            # The previous tag is what runs from here on, whatever comes next:
            # rolling back the new tag must not bring back the one undone.
            finish_quick_rollback(d, quick_rollback_image(d), superseded_by=tag)
        elif status.phase == "Promoting" and d.spec.breach_policy == "freeze":
            return  # never back to the build before the migration: the new tag waits
        elif tag == status.stable_tag or status.phase == "Promoting":
            # Stable first goes back to the build it ran (settle); the new canary
            # starts once it has (below): a half-promoted build must not serve
            # beside, and be judged against, the next.
            _roll_back(d, "Superseded", reason, outcome="Superseded")
            return
        else:
            d.record_history("Superseded", reason)
            d.event("Superseded", f"release {status.canary_tag} {reason}")
            _start_release(d, tag)
            return
    if tag == status.stable_tag:
        return
    if status.phase == "RolledBack" and tag == status.canary_tag:
        return  # a rolled-back tag is neither adopted nor retried by itself; `retry` does it
    if stable_rolling_back(status):
        return  # the next canary runs beside, and is judged against, the build stable ran
    if d.target.image == d.spec.release.image_for(tag) and d.observed.canary is None:
        end_watch(status)  # what runs is no longer what that watch judges
        status.stable_tag, status.stable_image = tag, d.target.image
        return
    _start_release(d, tag)


def _start_release(d: Decision, tag: str) -> None:
    if not clear_to_start(d, tag):
        return  # Blocked or Waiting, with the reason (see gating.py)
    status, target, now = d.status, d.target, d.now
    if d.observed.canary is None and status.saved_strategy is None:
        status.target_replicas = target.replicas
        status.stable_image = target.image
        status.stable_tag = tag_of(d.spec.release.image, target.image) or status.stable_tag
    rollback_superseded(d, tag)
    end_watch(status)
    status.phase, status.canary_tag = "Progressing", tag
    status.current_step_index, status.step_started_at = 0, now
    status.release_started_at, status.paused_at = now, None
    status.canary_weight, status.metrics = 0, []
    status.reason, status.canary_unready_since = None, None
    status.prometheus_unreachable_since = None
    analysis = d.spec.analysis
    status.next_analysis_at = now + analysis.interval_length() if analysis else None
    d.event("ReleaseStarted", f"canary of {tag} started (stable: {status.stable_tag})")
    if d.autoscaled:
        d.event(
            "Autoscaled",
            f"HorizontalPodAutoscaler {target.autoscaler} owns {target.name}'s replicas: "
            "stable keeps the size it sets, and the canary runs beside it as extra pods",
        )


def _run_canary(d: Decision) -> None:
    status, steps = d.status, d.spec.steps
    assert status.canary_tag is not None and status.current_step_index is not None
    if d.spec.analysis is None:
        status.next_analysis_at = None  # removed mid-canary: nothing to wake for
    index = min(status.current_step_index, len(steps) - 1)
    status.current_step_index = index  # the steps may have been shortened meanwhile
    if _stable_changed_by_hand(d):
        return
    weight = weight_at(steps, index)
    goal = canary_goal(d, weight)
    if _breached_health(d, goal) or _breached_analysis(d) or _breached_audit_log(d):
        return
    step = steps[index]
    if step.set_weight == 100 or d.force_promotion:
        _start_promotion(d, forced=d.force_promotion or d.force_advance)
        return
    status.canary_weight = weight
    converged = reconcile_weight(d, d.spec.release.image_for(status.canary_tag), goal)
    if status.paused_at is not None:
        status.phase = "Paused"
        return
    status.phase = "Progressing" if step.pause is None else "Paused"
    if step.pause is None:
        done = converged
    else:
        length = step.pause.length()
        started = status.step_started_at or d.now
        done = converged and length is not None and d.now - started >= length
    if done or d.force_advance:
        _advance(d, index)


def _advance(d: Decision, index: int) -> None:
    status, steps = d.status, d.spec.steps
    if index + 1 >= len(steps):
        _start_promotion(d, forced=d.force_advance)
        return
    status.current_step_index, status.step_started_at = index + 1, d.now
    d.event("StepAdvanced", f"step {index + 2}/{len(steps)}: {describe_step(steps[index + 1])}")


def _start_promotion(d: Decision, *, forced: bool) -> None:
    status = d.status
    choice = None
    if not forced and not (analysis_passed(d) and audit_log_passed(d)):
        choice = inconclusive_choice(d) if audit_log_passed(d) else None
        if choice == "rollback":
            _roll_back(d, "AnalysisInconclusive", inconclusive_message(d))
            return
        if choice != "promote":
            status.reason = "AwaitingAnalysis"
            return
    if not forced and promotion_held(d):
        return  # the promote window is closed; rollbacks are never held
    status.phase, status.reason, status.paused_at = "Promoting", None, None
    start_stable_rollout(d)
    how = "by a human, skipping analysis" if forced else "analysis passed"
    if choice == "promote":
        how = "analysis inconclusive at the end of the last step; onInconclusive: promote"
    d.event("Promoting", f"promoting {status.canary_tag} to all replicas ({how})")


def _run_promotion(d: Decision) -> None:
    status = d.status
    assert status.canary_tag is not None
    rolling_back = status.reason == QUICK_ROLLBACK
    if not rolling_back and (_breached_analysis(d) or _breached_audit_log(d)):
        return
    image = quick_rollback_image(d) if rolling_back else d.spec.release.image_for(status.canary_tag)
    if rolling_back:
        watch_rollback(d, image)
    elif _promotion_stalled(d, image):
        return
    if not drive_promotion(d, image):
        return
    if rolling_back:
        finish_quick_rollback(d, image)
        return
    d.record_history("Succeeded", "promoted")
    d.event("Promoted", f"{status.canary_tag} runs on all {d.total_replicas} replicas")
    status.previous_stable_tag = status.stable_tag
    status.previous_stable_image = status.stable_image
    status.stable_tag, status.stable_image = status.canary_tag, image
    status.phase, status.reason, status.canary_tag = "Succeeded", None, None
    status.current_step_index, status.next_analysis_at, status.canary_weight = None, None, 0
    status.promotion_started_at = None
    start_watch(d)


def _promotion_stalled(d: Decision, image: str) -> bool:
    """The Deployment's own deadline passed while the new image rolled onto every replica.

    A canary that was fine at 10% can still fail at full size (no room for the
    new pods, a dependency that gives way under all the traffic). With
    maxUnavailable 0 the old pods keep serving, so nothing breaks, but the
    promotion would wait forever (stalls.py says when a stall is this one's).

    A stall rolls back whatever `breachPolicy` says: the old pods still serve,
    so going back changes what runs nowhere, and freezing would wait on a
    rollout that cannot finish.
    """
    stall = stalled_rollout(d, image)
    if stall is None:
        return False
    message = f"rolling {d.status.canary_tag} onto all {d.total_replicas} replicas {stall}"
    _roll_back(d, "PromotionStalled", message)
    return True


def _breached_health(d: Decision, goal: int) -> bool:
    """The built-in check: a canary that crash-loops or never becomes Ready is a breach."""
    status, check = d.status, d.spec.health_check
    trouble = pod_trouble(d.observed.canary_pods, check, "canary")
    if trouble is not None:
        return _on_breach(d, "Canary" + trouble[0], trouble[1])
    canary = d.observed.canary
    ready = canary.ready_replicas if canary is not None else 0
    if goal == 0 or ready >= goal:
        status.canary_unready_since = None
        return False
    since = status.canary_unready_since or d.now
    status.canary_unready_since = since
    if d.now - since < check.ready_length():
        return False
    message = f"only {ready}/{goal} canary pods Ready after {check.ready_deadline}"
    return _on_breach(d, "CanaryNotReady", message)


def _breached_analysis(d: Decision) -> bool:
    measurements = d.observed.measurements
    if measurements is None or d.spec.analysis is None or d.analysed:
        return False
    d.analysed = True
    breach = apply_measurements(d, measurements)
    if breach is None:
        return False
    message = (
        f"metric {breach.name}: {breach.reason} "
        f"(query: {breach.query}; measured at {breach.measured_at.isoformat(timespec='seconds')})"
    )
    return _on_breach(d, "MetricBreach", message)


def _breached_audit_log(d: Decision) -> bool:
    message = apply_audit_report(d)
    if message is None:
        return False
    return _on_breach(d, ANOMALY, message)


def _on_breach(d: Decision, reason: str, message: str) -> bool:
    """A breach rolls back; under breachPolicy freeze it holds for a human (freeze.py).

    True when the canary must not move on in this reconcile.
    """
    if d.spec.breach_policy == "freeze":
        return freeze(d, reason, message)
    _roll_back(d, reason, message)
    return True


def _stable_changed_by_hand(d: Decision) -> bool:
    """Someone set the Deployment's image during the canary (a hotfix, say).

    The canary would be judged against a build no release chose, and a rollback
    would silently undo the change. So the canary ends (`Superseded`, reason
    `TargetImageChanged`) and what the human set becomes stable: the rollback
    that follows removes the canary and leaves that image in place.
    """
    status, image = d.status, d.target.image
    canary = d.spec.release.image_for(status.canary_tag or "")
    if status.stable_image is None or image in (status.stable_image, canary):
        return False
    was = status.stable_tag or status.stable_image
    status.stable_image, status.stable_tag = image, tag_of(d.spec.release.image, image)
    _roll_back(
        d,
        "TargetImageChanged",
        f"{d.target.name}'s image was set to {image} outside the release, during the canary "
        f"of {status.canary_tag} against {was}: the canary ended and stable keeps {image}; "
        f"`canaryctl retry` judges {status.canary_tag} against it",
        outcome="Superseded",
    )
    return True


def _watch_after_promotion(d: Decision) -> None:
    """After promotion: keep judging absolute bounds; a breach puts the previous image back."""
    message = judge_after_promotion(d)
    if message is not None:
        roll_back_promotion(d, message)


def _roll_back(d: Decision, reason: str, message: str, outcome: Outcome = "RolledBack") -> None:
    status = d.status
    d.record_history(outcome, f"{reason}: {message}")
    d.event(
        "RolledBack" if outcome == "RolledBack" else outcome, f"{reason}: {message}", warning=True
    )
    status.phase, status.reason, status.message = "RolledBack", reason, message
    status.current_step_index, status.canary_weight = None, 0
    status.next_analysis_at, status.paused_at, status.canary_unready_since = None, None, None
    # A promotion cut short: stable now rolls back to its own image (settle), timed from here.
    cut_short = status.stable_image is not None and d.target.image != status.stable_image
    status.promotion_started_at = d.now if cut_short else None


def reject_spec(
    status: CanaryReleaseStatus, problem: str, generation: int, now: datetime
) -> tuple[CanaryReleaseStatus, list[Action]]:
    """A spec the models reject (the apiserver's schema is weaker): say why, touch nothing.

    A release in progress (or under watch) keeps its phase, step and clocks, so
    fixing the spec resumes it where it was; a new canary from step 0 would
    repeat a 24-hour window. Nothing is judged meanwhile, which
    `SpecValid=False` (and its alert) says.
    """
    message = f"invalid spec: {problem}"[:1024]
    actions: list[Action] = []
    current = find_condition(status.conditions, SPEC_VALID)
    if not (current is not None and current.status == "False" and current.message == message):
        actions.append(RecordEvent("Warning", "InvalidSpec", message))
    update: dict[str, object] = {
        "conditions": set_condition(
            status.conditions, SPEC_VALID, "False", "InvalidSpec", message, now
        ),
        "observed_generation": generation,
    }
    held = status.model_copy(deep=True, update=update)
    _fail_or_hold(held, "InvalidSpec", message, "nothing is judged or changed until it is fixed")
    return held, actions


def _fail_or_hold(status: CanaryReleaseStatus, reason: str, message: str, until: str) -> None:
    """Phase `Failed` only where it loses nothing; any other phase is held as it is.

    Idle, Blocked and Waiting come back exactly as they were once the cause is
    gone (`_target_found` returns to Idle and the gates are read again). A
    canary, a promotion or the watch after it keeps its step and clocks; a
    rollback keeps its message, the answer to "why did it roll back?".
    """
    if status.phase in RECOVERABLE_PHASES and not watching(status):
        status.phase, status.reason, status.message = "Failed", reason, message
    elif status.phase == "Succeeded" and not watching(status):
        status.message = f"{message}; {status.stable_tag} stays promoted"
    elif status.phase != "RolledBack":
        status.message = f"{message}; {status.phase} is held as it is: {until}, then it resumes"


def _spec_valid(d: Decision) -> None:
    current = find_condition(d.status.conditions, SPEC_VALID)
    if current is not None and current.status == "False":
        d.status.conditions = set_condition(
            d.status.conditions, SPEC_VALID, "True", "Valid", "the spec is valid", d.now
        )
