"""Folding an audit-log report into status, and deciding whether it is a breach.

Anomalies roll the canary back; a source that does not answer or rejects the
query never does. It holds instead: no promotion until the audit log has been
judged clean in this release, and a condition plus one Event saying why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from controller.api.auditlog import MAX_ANOMALIES, AuditAnomaly, AuditLogStatus
from controller.auditlog.reports import AuditReport
from controller.engine.conditions import condition_status, set_condition
from controller.engine.context import Decision

AUDIT_LOG = "AuditLogAvailable"
ANOMALY = "AuditLogAnomaly"
State = Literal["True", "False", "Unknown"]


def _config_present(d: Decision) -> bool:
    return d.spec.analysis is not None and d.spec.analysis.audit_log is not None


def audit_log_passed(d: Decision) -> bool:
    """Promotion waits until the audit log was judged clean since this release started."""
    if not _config_present(d):
        return True
    latest, started = d.status.audit_log, d.status.release_started_at
    return (
        latest is not None
        and latest.verdict == "pass"
        and (started is None or latest.measured_at >= started)
    )


def apply_audit_report(d: Decision) -> str | None:
    """Record the report; return the rollback message when it found anomalies."""
    report = d.observed.audit_log
    if report is None or not _config_present(d):
        return None
    previous = d.status.audit_log
    if previous is not None and previous.measured_at == d.now:
        return None  # already folded in earlier in this decision
    unreachable_since = None
    if report.unreachable:
        unreachable_since = (previous.unreachable_since if previous else None) or d.now
    d.status.audit_log = _status_of(report, unreachable_since)
    _track_availability(d, report, unreachable_since)
    if report.verdict != "fail" or not report.anomalies:
        return None
    return f"audit log: {report.describe_anomalies()}"


def _status_of(report: AuditReport, unreachable_since: datetime | None) -> AuditLogStatus:
    anomalies = [
        AuditAnomaly(
            action=f.action,
            kind=f.kind,
            count=f.count,
            expected=round(f.expected, 3),
            ratio=None if f.ratio is None else round(f.ratio, 3),
            p_value=f.p_value,
            sensitive=f.sensitive,
            actors=f.actors,
        )
        for f in report.anomalies[:MAX_ANOMALIES]
    ]
    return AuditLogStatus(
        verdict=report.verdict,
        reason=report.reason,
        comparison=report.comparison,
        measured_at=report.measured_at,
        window_start=report.window_start,
        baseline_days=report.baseline_days,
        actions_tested=report.actions_tested,
        anomalies=anomalies,
        unreachable_since=unreachable_since,
    )


def _track_availability(
    d: Decision, report: AuditReport, unreachable_since: datetime | None
) -> None:
    """A condition (and one Event) once the source stays down past the deadline, or rejects."""
    analysis = d.spec.analysis
    assert analysis is not None
    status, now = d.status, d.now
    was = condition_status(status.conditions, AUDIT_LOG)
    if report.unreachable:
        since = unreachable_since or now
        if now - since < analysis.unreachable_length():
            return
        message = (
            f"audit log unreachable since {since.isoformat()}: {report.reason}; "
            "holding (no promotion, no rollback)"
        )
        _set(d, "False", "AuditLogUnreachable", message, event=was != "False")
        return
    if report.verdict == "error":
        message = f"audit log query failed: {report.reason}; holding (no promotion, no rollback)"
        _set(d, "False", "AuditLogError", message, event=was != "False")
        return
    if report.verdict == "inconclusive":
        _set(d, "Unknown", "Inconclusive", report.reason, event=False)
        return
    _set(d, "True", "Measured", report.reason, event=False)
    if was == "False":
        d.event("AuditLogAvailable", "the audit log is measured again")


def _set(d: Decision, state: State, reason: str, message: str, *, event: bool) -> None:
    d.status.conditions = set_condition(
        d.status.conditions, AUDIT_LOG, state, reason, message, d.now
    )
    if event:
        d.event(reason, message, warning=True)
