"""Which windows to count, from the spec and where the release stands."""

from __future__ import annotations

from datetime import datetime

from controller.api.auditlog import AuditLog
from controller.api.status import CanaryReleaseStatus
from controller.auditlog.samples import AuditPlan


def carries_track(config: AuditLog) -> bool:
    if config.sql is not None:
        return config.sql.track_column is not None
    assert config.prometheus is not None
    return config.prometheus.carries_track


def plan_audit(config: AuditLog, status: CanaryReleaseStatus, now: datetime) -> AuditPlan:
    """Canary against stable since the step started (the pod share was constant over it);
    against previous days since the release started (the share does not matter there).
    """
    by_track = carries_track(config)
    if by_track:
        start = status.step_started_at or status.release_started_at or now
    else:
        start = status.release_started_at or status.step_started_at or now
    return AuditPlan(
        start=min(start, now),
        end=now,
        by_track=by_track,
        baseline_days=config.baseline_days,
        canary_tag=status.canary_tag,
        stable_tag=status.stable_tag,
    )
