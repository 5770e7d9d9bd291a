"""The engine and the audit log: anomalies roll back, outages hold, clean logs promote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.engine.actions import RecordEvent
from tests.unit.auditworld import AuditWorld, Event, MemoryAuditLog, spec_with
from tests.unit.world import healthy

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]
BY_TRACK = {"sql": {"secretRef": {"name": "db", "key": "dsn"}, "trackColumn": "track"}}
SEASONAL = {"sql": {"secretRef": {"name": "db", "key": "dsn"}}}


def _traffic(start: datetime, end: datetime, *, canary_from: datetime) -> list[Event]:
    """Logins on every pod, 1 per pod-minute; rare deletions on stable; 9 stable pods, 1 canary."""
    events: list[Event] = []
    t = start
    while t < end:
        canary = t >= canary_from
        events.append((t, "user.login", "stable", 9 if canary else 10))
        if canary:
            events.append((t, "user.login", "canary", 1))
        if t.minute % 10 == 0:
            events.append((t, "user.delete", "stable", 1))
        t += timedelta(minutes=1)
    return events


def _world(audit: MemoryAuditLog, config: dict[str, object] = BY_TRACK) -> AuditWorld:
    spec = spec_with(audit_log=config, steps=STEPS)
    return AuditWorld(spec=spec, metric=healthy, start=T0, audit=audit)


def _events(world: AuditWorld) -> list[RecordEvent]:
    return [a for _, _, actions, _ in world.log for a in actions if isinstance(a, RecordEvent)]


def test_a_burst_of_deletions_on_the_canary_rolls_back_naming_the_action() -> None:
    events = _traffic(T0 - timedelta(days=8), T0 + timedelta(hours=2), canary_from=T0)
    burst = T0 + timedelta(minutes=20)
    events += [(burst + timedelta(minutes=m), "user.delete", "canary", 2) for m in range(60)]
    world = _world(MemoryAuditLog(events))
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "RolledBack" and status.reason == "AuditLogAnomaly"
    message = status.message or ""
    assert "sensitive action user.delete" in message and "expected" in message
    assert status.audit_log is not None and status.audit_log.verdict == "fail"
    anomaly = status.audit_log.anomalies[0]
    assert anomaly.action == "user.delete" and anomaly.kind == "rise" and anomaly.sensitive
    assert anomaly.count > 3 * anomaly.expected
    assert status.audit_log.comparison == "track"
    # caught within minutes of the burst, with the canary gone and capacity intact
    rolled = next(t for t, s, *_ in world.log if s.phase == "RolledBack")
    assert rolled - burst <= timedelta(minutes=10)
    assert world.canary is None and world.stable.image.endswith(":v1")
    assert min(cap for *_, cap in world.log) >= 10
    assert [(h.tag, h.outcome) for h in status.history] == [("v2", "RolledBack")]


def test_a_clean_audit_log_lets_the_release_through() -> None:
    events = _traffic(T0 - timedelta(days=8), T0 + timedelta(hours=2), canary_from=T0)
    world = _world(MemoryAuditLog(events))
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"
    assert world.status.audit_log is not None and world.status.audit_log.verdict == "pass"
    assert "in line with stable" in world.status.audit_log.reason


def test_an_action_never_seen_before_rolls_back() -> None:
    events = _traffic(T0 - timedelta(days=8), T0 + timedelta(hours=2), canary_from=T0)
    events += [(T0 + timedelta(minutes=15 + m), "admin.export_all", "canary", 1) for m in range(5)]
    world = _world(MemoryAuditLog(events))
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    assert world.status.reason == "AuditLogAnomaly"
    assert "new action admin.export_all" in (world.status.message or "")
    assert "never seen before" in (world.status.message or "")


def test_seasonal_baseline_catches_a_surge_against_the_same_hours_of_previous_days() -> None:
    events = _traffic(T0 - timedelta(days=8), T0 + timedelta(hours=2), canary_from=T0)
    events = [(t, a, "any", n) for t, a, _, n in events]
    surge = T0 + timedelta(minutes=30)
    events += [(surge + timedelta(minutes=m), "user.login_failed", "any", 3) for m in range(30)]
    events += [  # failed logins happen every day at this hour, about one a minute
        (T0 - timedelta(days=d) + timedelta(minutes=m), "user.login_failed", "any", 1)
        for d in range(1, 8)
        for m in range(120)
    ]
    events += [(T0 + timedelta(minutes=m), "user.login_failed", "any", 1) for m in range(120)]
    world = _world(MemoryAuditLog(events), SEASONAL)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.reason == "AuditLogAnomaly", status.message
    assert status.audit_log is not None and status.audit_log.comparison == "seasonal"
    assert status.audit_log.baseline_days == 7
    assert "user.login_failed" in (status.message or "")


def test_seasonal_baseline_needs_three_days_of_history_and_holds_without() -> None:
    events = _traffic(T0 - timedelta(days=2), T0 + timedelta(hours=2), canary_from=T0)
    world = _world(MemoryAuditLog(events), SEASONAL)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "Paused" and status.reason == "AwaitingAnalysis"
    assert status.audit_log is not None and status.audit_log.verdict == "inconclusive"
    assert "needs 3" in status.audit_log.reason
    condition = next(c for c in status.conditions if c.type == "AuditLogAvailable")
    assert condition.status == "Unknown"


def test_database_down_holds_with_a_condition_and_one_event_then_carries_on() -> None:
    events = _traffic(T0 - timedelta(days=8), T0 + timedelta(hours=4), canary_from=T0)
    audit = MemoryAuditLog(events, down=True)
    world = _world(audit)
    world.run(until=timedelta(hours=2), every=timedelta(seconds=30))
    status = world.status
    assert status.phase == "Paused" and status.reason == "AwaitingAnalysis"
    condition = next(c for c in status.conditions if c.type == "AuditLogAvailable")
    assert condition.status == "False" and condition.reason == "AuditLogUnreachable"
    assert "holding" in condition.message and "connection refused" in condition.message
    assert [e.reason for e in _events(world)].count("AuditLogUnreachable") == 1
    assert world.canary is not None  # not rolled back
    audit.down = False
    world.start = T0 + timedelta(hours=2)
    world.run(until=timedelta(minutes=30), every=timedelta(seconds=30))
    assert world.status.phase == "Succeeded"
    condition = next(c for c in world.status.conditions if c.type == "AuditLogAvailable")
    assert condition.status == "True"


def test_a_database_still_down_when_the_release_is_aborted_holds_nothing_after() -> None:
    events = _traffic(T0 - timedelta(days=8), T0 + timedelta(hours=4), canary_from=T0)
    world = _world(MemoryAuditLog(events, down=True))
    world.run(until=timedelta(hours=1), every=timedelta(seconds=30))
    condition = next(c for c in world.status.conditions if c.type == "AuditLogAvailable")
    assert condition.status == "False"
    world.command = "abort 1"
    world.start = T0 + timedelta(hours=1)
    world.run(until=timedelta(minutes=5), every=timedelta(seconds=30))
    assert world.status.phase == "RolledBack" and world.status.reason == "Aborted"
    condition = next(c for c in world.status.conditions if c.type == "AuditLogAvailable")
    assert (condition.status, condition.reason) == ("Unknown", "NotJudging")
    assert "connection refused" in condition.message
    audit = world.status.audit_log
    assert audit is None or audit.unreachable_since is None  # the next canary's clock starts afresh
