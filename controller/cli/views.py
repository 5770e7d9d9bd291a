"""What `canaryctl` shows, computed from a CanaryRelease object: plain data, no I/O.

The same view feeds the rich rendering on a terminal and `-o json|yaml`, so a
script sees exactly what a human sees. The computed fields (time left in the
step, each metric's bound as text) are what on-call would otherwise work out
by hand from the spec and the status at 3 a.m.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from controller.api.auditlog import AuditLogStatus
from controller.api.base import describe_validation_error
from controller.api.durations import format_duration
from controller.api.spec import CanaryReleaseSpec, Metric
from controller.api.status import (
    TEST_LABELS,
    CanaryReleaseStatus,
    Evidence,
    MetricResult,
    PostPromotionStatus,
)
from controller.engine.deploy_windows import IN_BLACKOUT, OUTSIDE_WINDOW
from controller.engine.summary import describe_step

View = dict[str, Any]
SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """A tiny trend, one block per measurement, scaled between the series' min and max."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return SPARKS[3] * len(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - low) / (high - low) * top)] for v in values)


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"


def bound_text(metric: Metric) -> str:
    """The rule a metric is judged by, as on-call reads it: `<= 0.05; <= 3x stable`."""
    parts = []
    if metric.threshold is not None:
        low, high = metric.threshold.min, metric.threshold.max
        if low is not None and high is not None:
            parts.append(f"{_fmt(low)}..{_fmt(high)}")
        elif high is not None:
            parts.append(f"<= {_fmt(high)}")
        else:
            parts.append(f">= {_fmt(low)}")
    if metric.compare is not None:
        parts.append(f"<= {_fmt(metric.compare.max_ratio)}x stable")
    return "; ".join(parts)


def parse_spec(release: dict[str, Any]) -> CanaryReleaseSpec | None:
    return spec_and_problem(release)[0]


def spec_and_problem(release: dict[str, Any]) -> tuple[CanaryReleaseSpec | None, str | None]:
    """The spec, or why the controller's models reject it (the apiserver's schema is weaker)."""
    try:
        return CanaryReleaseSpec.model_validate(release.get("spec") or {}), None
    except ValidationError as exc:
        return None, describe_validation_error(exc)


def parse_status(release: dict[str, Any]) -> CanaryReleaseStatus:
    return CanaryReleaseStatus.model_validate(release.get("status") or {})


def step_view(
    spec: CanaryReleaseSpec | None, status: CanaryReleaseStatus, now: datetime
) -> View | None:
    """The current step: its number, what it does, and how long until it ends by itself."""
    index = status.current_step_index
    if spec is None or index is None or not 0 <= index < len(spec.steps):
        return None
    step = spec.steps[index]
    view: View = {
        "index": index,
        "number": index + 1,
        "of": len(spec.steps),
        "description": describe_step(step),
        "startedAt": status.step_started_at.isoformat() if status.step_started_at else None,
        "secondsLeft": None,
        "waitingFor": None,
    }
    held = _promotion_hold(status)
    if held is not None:  # the steps are done; the promotion itself waits
        view["waitingFor"] = held
        return view
    if step.pause is None:
        view["waitingFor"] = "the canary's pods to be Ready at this weight"
        return view
    length = step.pause.length()
    if length is None:
        view["waitingFor"] = "a human: canaryctl promote"
        return view
    started = status.step_started_at or now
    elapsed = (status.paused_at or now) - started
    view["secondsLeft"] = max(0, int((length - elapsed).total_seconds()))
    if status.paused_at is not None and status.reason == "Frozen":
        view["waitingFor"] = "a human: frozen, canaryctl promote --full, abort or resume"
    elif status.paused_at is not None:
        view["waitingFor"] = "a human: paused, canaryctl resume"
    return view


def _promotion_hold(status: CanaryReleaseStatus) -> str | None:
    if status.reason == "AwaitingAnalysis":
        return "every metric to pass before promotion (or canaryctl promote)"
    if status.reason in (OUTSIDE_WINDOW, IN_BLACKOUT):
        opens = status.gates.not_before if status.gates is not None else None
        when = f" at {opens.isoformat()}" if opens is not None else ""
        return f"the promote window to open{when} (or canaryctl promote)"
    return None


def metric_views(spec: CanaryReleaseSpec | None, status: CanaryReleaseStatus) -> list[View]:
    """Every metric of the spec with its latest result (also results the spec no longer has)."""
    metrics = spec.analysis.metrics if spec is not None and spec.analysis is not None else []
    return _metric_views(metrics, status.metrics)


def _metric_views(metrics: list[Metric], measured: list[MetricResult]) -> list[View]:
    results = {r.name: r for r in measured}
    views = [_metric_view(m.name, bound_text(m), results.pop(m.name, None)) for m in metrics]
    views += [_metric_view(name, None, result) for name, result in results.items()]
    return views


def _metric_view(name: str, bound: str | None, result: MetricResult | None) -> View:
    if result is None:
        return {
            "name": name,
            "bound": bound,
            "canary": None,
            "stable": None,
            "verdict": None,
            "reason": "not measured yet",
            "measuredAt": None,
            "trend": [],
            "sparkline": "",
            "evidence": None,
        }
    return {
        "name": name,
        "bound": bound,
        "canary": result.canary_value,
        "stable": result.stable_value,
        "verdict": result.verdict,
        "reason": result.reason,
        "measuredAt": result.measured_at.isoformat(),
        "trend": list(result.trend),
        "sparkline": sparkline(list(result.trend)),
        "evidence": evidence_view(result.evidence),
    }


def evidence_view(evidence: Evidence | None) -> View | None:
    """How far each sequential test is from deciding: on-call's "how close is a rollback?".

    A test decides when its e-value reaches `needed`; `progress` is that as
    text, `worse 41/600`, for the table. The counts are over the whole release.
    """
    if evidence is None:
        return None
    tests = [{"test": t.test, "eValue": t.e_value, "needed": t.needed} for t in evidence.tests]
    progress = [
        f"{TEST_LABELS[t.test]} {_fmt_e(t.e_value)}/{_fmt_e(t.needed)}" for t in evidence.tests
    ]
    return {
        "looks": evidence.looks,
        "canaryEvents": evidence.counted_canary.events,
        "canaryTotal": evidence.counted_canary.total,
        "expectedCanaryEvents": evidence.expected_canary_events,
        "tests": tests,
        "progress": " · ".join(progress),
    }


def _fmt_e(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def audit_log_view(audit: AuditLogStatus | None) -> View | None:
    """The audit-log judgement with every anomaly it flagged: seen against expected."""
    if audit is None:
        return None
    return {
        "verdict": audit.verdict,
        "reason": audit.reason,
        "comparison": audit.comparison,
        "measuredAt": audit.measured_at.isoformat(),
        "windowStart": audit.window_start.isoformat() if audit.window_start else None,
        "baselineDays": audit.baseline_days,
        "actionsTested": audit.actions_tested,
        "unreachableSince": (
            audit.unreachable_since.isoformat() if audit.unreachable_since else None
        ),
        "anomalies": [a.model_dump(mode="json", by_alias=True) for a in audit.anomalies],
    }


def post_promotion_view(
    spec: CanaryReleaseSpec | None, watch: PostPromotionStatus | None, now: datetime
) -> View | None:
    """The watch after promotion: its state, how long it still runs, and its metrics."""
    if watch is None:
        return None
    metrics = spec.post_promotion.metrics if spec and spec.post_promotion else []
    return {
        "state": watch.state,
        "startedAt": watch.started_at.isoformat(),
        "until": watch.until.isoformat(),
        "secondsLeft": (
            max(0, int((watch.until - now).total_seconds())) if watch.state == "Watching" else None
        ),
        "metrics": _metric_views(metrics, watch.metrics),
    }


def gate_views(release: dict[str, Any]) -> View | None:
    """`status.gates` if this release reports gates (None when it does not).

    Read loosely, by field names, not through the status model: the CLI must
    keep working against a controller whose gate status has grown a field.
    """
    gates = (release.get("status") or {}).get("gates")
    if not isinstance(gates, dict):
        return None
    results = []
    for result in gates.get("results") or []:
        if isinstance(result, dict):
            results.append(
                {
                    "gate": result.get("gate") or result.get("name") or "?",
                    "verdict": result.get("verdict"),
                    "reason": result.get("reason") or "",
                    "message": result.get("message") or "",
                    "evidence": list(result.get("evidence") or []),
                    "since": result.get("since"),
                }
            )
    hooks = [
        {k: h.get(k) for k in ("hook", "tag", "job", "state", "message")}
        for h in gates.get("hooks") or []
        if isinstance(h, dict)
    ]
    freeze = gates.get("freeze")
    return {
        "tag": gates.get("tag"),
        "results": results,
        "notBefore": gates.get("notBefore"),
        "freeze": freeze if isinstance(freeze, dict) else None,
        "hooks": hooks,
    }


def rollback_view(status: CanaryReleaseStatus) -> View | None:
    if status.phase != "RolledBack":
        return None
    last = status.history[-1] if status.history else None
    return {
        "reason": status.reason,
        "message": status.message,
        "tag": last.tag if last else status.canary_tag,
        "at": last.finished_at.isoformat() if last else None,
    }


def status_view(release: dict[str, Any], now: datetime) -> View:
    meta = release.get("metadata") or {}
    (spec, problem), status = spec_and_problem(release), parse_status(release)
    next_analysis = None
    if status.next_analysis_at is not None:
        next_analysis = max(0, int((status.next_analysis_at - now).total_seconds()))
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "phase": status.phase,
        "reason": status.reason,
        "message": status.message,
        "specTag": ((release.get("spec") or {}).get("release") or {}).get("tag"),
        "stableTag": status.stable_tag,
        "canaryTag": status.canary_tag,
        "previousStableTag": status.previous_stable_tag,
        "weight": status.canary_weight,
        "step": step_view(spec, status, now),
        "paused": status.paused_at is not None,
        "nextAnalysisInSeconds": next_analysis,
        "metrics": metric_views(spec, status),
        "auditLog": audit_log_view(status.audit_log),
        "postPromotion": post_promotion_view(spec, status.post_promotion, now),
        "gates": gate_views(release),
        "rollback": rollback_view(status),
        "conditions": [
            c.model_dump(mode="json", by_alias=True)
            for c in status.conditions
            if c.status != "True"
        ],
        "lastCommand": status.last_command,
        "specValid": spec is not None,
        "specProblem": problem,
    }


def list_row(release: dict[str, Any], now: datetime) -> View:
    view = status_view(release, now)
    step = view["step"]
    return {
        "namespace": view["namespace"],
        "name": view["name"],
        "phase": view["phase"],
        "stableTag": view["stableTag"],
        "canaryTag": view["canaryTag"] if view["phase"] != "Succeeded" else None,
        "weight": view["weight"],
        "step": f"{step['number']}/{step['of']}" if step else None,
        "secondsLeft": step["secondsLeft"] if step else None,
        "reason": view["reason"],
        "message": view["message"],
    }


def history_rows(release: dict[str, Any]) -> list[View]:
    """Newest first, with how long each release took."""
    rows = []
    for entry in reversed(parse_status(release).history):
        took = entry.finished_at - entry.started_at if entry.started_at else None
        rows.append(
            {
                "tag": entry.tag,
                "outcome": entry.outcome,
                "reason": entry.reason,
                "startedAt": entry.started_at.isoformat() if entry.started_at else None,
                "finishedAt": entry.finished_at.isoformat(),
                "duration": format_duration(took) if took is not None else None,
            }
        )
    return rows


def seconds_text(seconds: int | None) -> str:
    return "" if seconds is None else format_duration(timedelta(seconds=seconds))
