"""The Prometheus audit provider against a real, backfilled Prometheus with a known anomaly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from controller.adapters.ports import AuditLogRejected, AuditLogUnreachable
from controller.adapters.prometheus import PrometheusSource
from controller.adapters.prometheus_audit import PrometheusAuditCounter
from controller.api.auditlog import AuditLog
from controller.auditlog import AuditPlan
from controller.auditlog.detection import detect
from devenv.backfill import Series, constant, counter_series, with_step
from devenv.prometheus import PrometheusServer, free_port
from tests.fixtures_servers import BackfillFactory

HOUR, MINUTE = 3600.0, 60.0
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z: four days of history before the canary day
DAY5 = START + 4 * 24 * HOUR
END = DAY5 + 15 * HOUR
WINDOW = (DAY5 + 13 * HOUR, DAY5 + 14 * HOUR)  # the canary hour
QUIET = (DAY5 + 10 * HOUR, DAY5 + 11 * HOUR)
BURST = (DAY5 + 13 * HOUR + 10 * MINUTE, DAY5 + 13 * HOUR + 40 * MINUTE)
SEASONAL = 'sum by (action) (increase(audit_events_total{namespace="{{namespace}}"}[{{window}}]))'
TRACKED = (
    "sum by (action) (increase(audit_events_total"
    '{namespace="{{namespace}}",track="{{track}}"}[{{window}}]))'
)


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _series(action: str, rate_per_min: float, *, track: str | None = None, **kw: float) -> Series:
    labels = {"namespace": "shop", "action": action} | ({"track": track} if track else {})
    rate = constant(rate_per_min / MINUTE)
    if "extra" in kw:
        rate = with_step(rate, kw["extra"] / MINUTE, BURST[0], BURST[1])
    start = kw.get("start", START)
    return counter_series("audit_events_total", labels, start, END, MINUTE, rate)


def _history() -> list[Series]:
    """Logins, deletions and rare role grants every day; at 13:10-13:40 on the fifth day
    role grants jump by 2 a minute, and admin.impersonate appears for the first time."""
    return [
        _series("user.login", 30),
        _series("user.delete", 1),
        _series("role.grant", 0.2, extra=2),
        _series("admin.impersonate", 0, extra=0.2, start=DAY5 + 13 * HOUR),
    ]


def _tracked_history() -> list[Series]:
    """The same, split by track: the canary has one pod in ten, and its grants jump."""
    out = []
    for track, share in (("stable", 0.9), ("canary", 0.1)):
        burst = {"extra": 2.0} if track == "canary" else {}
        out += [
            _series("user.login", 30 * share, track=track),
            _series("role.grant", 1 * share, track=track, **burst),
        ]
    return out


@pytest.fixture
def counter_for(
    backfilled_prometheus: BackfillFactory,
) -> Iterator[tuple[PrometheusServer, PrometheusServer]]:
    seasonal = backfilled_prometheus(_history())
    tracked = backfilled_prometheus(_tracked_history())
    yield seasonal, tracked


def _config(query: str) -> AuditLog:
    return AuditLog.model_validate({"prometheus": {"query": query}})


def _counter(url: str, config: AuditLog) -> PrometheusAuditCounter:
    assert config.prometheus is not None
    return PrometheusAuditCounter(
        PrometheusSource(url), config.prometheus, namespace="shop", name="web", target="web"
    )


def _plan(window: tuple[float, float], *, by_track: bool = False) -> AuditPlan:
    return AuditPlan(_at(window[0]), _at(window[1]), by_track=by_track, baseline_days=7)


def test_counts_and_history_from_the_counter(
    counter_for: tuple[PrometheusServer, PrometheusServer],
) -> None:
    seasonal, _ = counter_for
    sample = _counter(seasonal.url, _config(SEASONAL)).fetch(_plan(WINDOW))
    # windows aligned with the samples: nothing to extrapolate, exact counts
    assert sample.canary["user.login"] == pytest.approx(1800)
    assert sample.canary["role.grant"] == pytest.approx(12 + 60)
    assert len(sample.baseline) == 4  # the counter starts four days earlier
    assert all(day["role.grant"] == pytest.approx(12) for day in sample.baseline)
    assert "admin.impersonate" not in sample.seen_before
    assert {"user.login", "user.delete", "role.grant"} <= sample.seen_before


def test_the_known_anomaly_is_found_at_its_known_time(
    counter_for: tuple[PrometheusServer, PrometheusServer],
) -> None:
    seasonal, _ = counter_for
    config, plan = _config(SEASONAL), _plan(WINDOW)
    report = detect(
        config, plan, _counter(seasonal.url, config).fetch(plan), canary_share=None, now=plan.end
    )
    assert report.verdict == "fail" and report.baseline_days == 4
    found = {f.action: f for f in report.anomalies}
    assert set(found) == {"role.grant", "admin.impersonate"}
    assert found["role.grant"].kind == "rise" and found["role.grant"].sensitive
    assert found["role.grant"].expected == pytest.approx(12)
    assert found["admin.impersonate"].kind == "new" and found["admin.impersonate"].count >= 5


def test_the_same_hour_earlier_that_day_passes(
    counter_for: tuple[PrometheusServer, PrometheusServer],
) -> None:
    seasonal, _ = counter_for
    config, plan = _config(SEASONAL), _plan(QUIET)
    report = detect(
        config, plan, _counter(seasonal.url, config).fetch(plan), canary_share=None, now=plan.end
    )
    assert report.verdict == "pass", report.reason


def test_canary_against_stable_when_the_counter_carries_the_track(
    counter_for: tuple[PrometheusServer, PrometheusServer],
) -> None:
    _, tracked = counter_for
    config = _config(TRACKED)
    assert config.prometheus is not None and config.prometheus.carries_track
    reports = {}
    for window in (WINDOW, QUIET):
        plan = _plan(window, by_track=True)
        sample = _counter(tracked.url, config).fetch(plan)
        reports[window] = detect(config, plan, sample, canary_share=0.1, now=plan.end)
    assert reports[QUIET].verdict == "pass", reports[QUIET].reason
    [grant] = reports[WINDOW].anomalies
    assert grant.action == "role.grant" and grant.expected == pytest.approx(6)  # 0.1 x 60
    assert grant.count == pytest.approx(66)


def test_a_query_without_the_action_label_is_rejected(
    counter_for: tuple[PrometheusServer, PrometheusServer],
) -> None:
    seasonal, _ = counter_for
    config = _config('sum(increase(audit_events_total{namespace="{{namespace}}"}[{{window}}]))')
    with pytest.raises(AuditLogRejected, match="action"):
        _counter(seasonal.url, config).fetch(_plan(WINDOW))


def test_prometheus_down_is_unreachable() -> None:
    config = _config(SEASONAL)
    with pytest.raises(AuditLogUnreachable):
        _counter(f"http://127.0.0.1:{free_port()}", config).fetch(_plan(WINDOW))
