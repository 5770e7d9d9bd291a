"""Detection over counts: which actions are flagged, as new or as a sharp rise, and which not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.api.auditlog import AuditLog
from controller.auditlog import AuditPlan, AuditSample
from controller.auditlog.detection import detect, is_sensitive

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SEASONAL = AuditPlan(NOW - timedelta(hours=1), NOW, by_track=False, baseline_days=7)
BY_TRACK = AuditPlan(NOW - timedelta(hours=1), NOW, by_track=True, baseline_days=7)


def _config(**overrides: object) -> AuditLog:
    raw: dict[str, object] = {"sql": {"secretRef": {"name": "db", "key": "dsn"}}}
    return AuditLog.model_validate({**raw, **overrides})


def _days(n: int, **counts: float) -> tuple[dict[str, float], ...]:
    return tuple({k.replace("_", "."): v for k, v in counts.items()} for _ in range(n))


def test_an_ordinary_day_passes_against_the_seasonal_baseline() -> None:
    sample = AuditSample(
        canary={"user.login": 104, "user.delete": 6, "order.create": 51},
        baseline=_days(7, user_login=100, user_delete=5, order_create=50),
        seen_before=frozenset({"user.login", "user.delete", "order.create"}),
    )
    report = detect(_config(), SEASONAL, sample, canary_share=None, now=NOW)
    assert report.verdict == "pass" and report.anomalies == ()
    assert report.actions_tested == 3 and report.baseline_days == 7
    assert "the same hours of 7 previous days" in report.reason


def test_a_sharp_rise_of_deletions_is_flagged_with_count_and_expected_count() -> None:
    sample = AuditSample(
        canary={"user.login": 104, "user.delete": 40},
        baseline=_days(7, user_login=100, user_delete=5),
        seen_before=frozenset({"user.login", "user.delete"}),
        actors={"user.delete": 1},
    )
    report = detect(_config(), SEASONAL, sample, canary_share=None, now=NOW)
    assert report.verdict == "fail"
    [finding] = report.anomalies
    assert (finding.action, finding.kind, finding.count) == ("user.delete", "rise", 40)
    assert finding.expected == pytest.approx(5.0) and finding.ratio == pytest.approx(8.0)
    assert finding.sensitive and finding.p_value is not None and finding.p_value < 1e-4
    assert "sensitive action user.delete: 40 events, expected 5.0, 8.0x" in report.reason
    assert "1 actor" in report.reason


def test_sensitive_actions_have_a_stricter_bound_than_ordinary_ones() -> None:
    # the same 1.8x rise on plenty of events: flagged for a deletion, not for a page view
    sample = AuditSample(
        canary={"page.view": 180, "user.delete": 180},
        baseline=_days(7, page_view=100, user_delete=100),
        seen_before=frozenset({"page.view", "user.delete"}),
    )
    report = detect(_config(), SEASONAL, sample, canary_share=None, now=NOW)
    assert [f.action for f in report.anomalies] == ["user.delete"]
    # the sensitive list is configurable; emptied, nothing is stricter
    relaxed = _config(sensitive={"patterns": []})
    assert detect(relaxed, SEASONAL, sample, canary_share=None, now=NOW).verdict == "pass"


def test_a_significant_but_mild_rise_is_not_flagged() -> None:
    # 1.3x on tens of thousands of events is certain, but it is not a sharp rise
    sample = AuditSample(
        canary={"page.view": 13_000},
        baseline=_days(7, page_view=10_000),
        seen_before=frozenset({"page.view"}),
    )
    assert detect(_config(), SEASONAL, sample, canary_share=None, now=NOW).verdict == "pass"


def test_new_actions_are_flagged_after_a_few_events_sensitive_ones_after_one() -> None:
    sample = AuditSample(
        canary={"user.login": 100, "report.export": 3, "report.print": 2, "role.grant": 1},
        baseline=_days(7, user_login=100),
        seen_before=frozenset({"user.login"}),
    )
    report = detect(_config(), SEASONAL, sample, canary_share=None, now=NOW)
    assert [(f.action, f.kind) for f in report.anomalies] == [
        ("role.grant", "new"),
        ("report.export", "new"),
    ]
    off = _config(newActions=False)
    assert detect(off, SEASONAL, sample, canary_share=None, now=NOW).verdict == "pass"


def test_an_action_seen_earlier_in_the_history_is_not_new() -> None:
    sample = AuditSample(
        canary={"report.export": 3},
        baseline=_days(7),
        seen_before=frozenset({"report.export"}),  # last week, at another hour
    )
    assert detect(_config(), SEASONAL, sample, canary_share=None, now=NOW).verdict == "pass"


def test_seasonal_needs_three_days() -> None:
    sample = AuditSample(canary={"a": 100}, baseline=_days(2, a=1))
    report = detect(_config(), SEASONAL, sample, canary_share=None, now=NOW)
    assert report.verdict == "inconclusive" and "needs 3" in report.reason


def test_canary_against_stable_uses_the_pod_share() -> None:
    fine = AuditSample(
        canary={"user.login": 100, "user.delete": 5},
        stable={"user.login": 900, "user.delete": 45},
    )
    assert detect(_config(), BY_TRACK, fine, canary_share=0.1, now=NOW).verdict == "pass"
    bad = AuditSample(
        canary={"user.login": 100, "user.delete": 30},
        stable={"user.login": 900, "user.delete": 45},
    )
    report = detect(_config(), BY_TRACK, bad, canary_share=0.1, now=NOW)
    [finding] = report.anomalies
    assert finding.action == "user.delete" and finding.expected == pytest.approx(5.0)
    assert report.comparison == "track" and "against stable" in report.reason


def test_a_new_action_that_stable_does_too_is_not_the_canarys() -> None:
    sample = AuditSample(canary={"cron.cleanup": 3}, stable={"cron.cleanup": 27})
    assert detect(_config(), BY_TRACK, sample, canary_share=0.1, now=NOW).verdict == "pass"


def test_canary_against_stable_without_pods_is_inconclusive() -> None:
    sample = AuditSample(canary={}, stable={"user.login": 10})
    report = detect(_config(), BY_TRACK, sample, canary_share=None, now=NOW)
    assert report.verdict == "inconclusive"


def test_benjamini_hochberg_reports_more_of_a_broad_rise() -> None:
    # six actions each about twice their usual 20: Holm flags the strongest, BH more of them
    canary = {f"export.{i}": 40.0 + i for i in range(6)}
    sample = AuditSample(
        canary=canary,
        baseline=_days(7, **{f"export_{i}": 20.0 for i in range(6)}),
        seen_before=frozenset(canary),
    )
    holm = detect(_config(), SEASONAL, sample, canary_share=None, now=NOW)
    bh = detect(
        _config(correction="benjamini-hochberg"),
        SEASONAL,
        sample,
        canary_share=None,
        now=NOW,
    )
    assert [f.action for f in holm.anomalies] == ["export.5", "export.4"]
    assert len(bh.anomalies) == 4


@pytest.mark.parametrize(
    ("action", "sensitive"),
    [
        ("user.login_failed", True),
        ("LOGIN_FAILURE", True),
        ("auth.failed", True),
        ("permission.changed", True),
        ("role.grant", True),
        ("order.delete", True),
        ("user.login", False),
        ("order.create", False),
    ],
)
def test_default_sensitive_patterns(action: str, sensitive: bool) -> None:
    assert is_sensitive(action, _config().sensitive.patterns) is sensitive
