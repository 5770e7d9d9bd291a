"""From counts per action to a verdict: new actions and sharp rises, corrected for many tests.

An action is flagged as a rise only when three things hold: the corrected
anytime-valid test rejects "no higher than its reference" (it is not chance),
the count is at least `minRatio` times what was expected (it is sharp), and at
least `minCount` events were seen (it is not two events instead of one).
Sensitive actions get a lower ratio and count, and their own share of alpha.
An action never seen before (not in the whole history, not on stable now) is
flagged once it has `newActionMinCount` events; one event is enough for a
sensitive action.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.api.auditlog import AuditLog
from controller.auditlog.corrections import benjamini_hochberg, holm
from controller.auditlog.rates import (
    anytime_pvalue,
    events,
    expected_count,
    null_share_seasonal,
)
from controller.auditlog.reports import ActionFinding, AuditReport, Comparison, Verdict
from controller.auditlog.samples import AuditPlan, AuditSample

MIN_BASELINE_DAYS = 3


def is_sensitive(action: str, patterns: list[str]) -> bool:
    lowered = action.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


def detect(
    config: AuditLog,
    plan: AuditPlan,
    sample: AuditSample,
    *,
    canary_share: float | None,
    now: datetime,
) -> AuditReport:
    """Judge one sample. `canary_share` is the canary's share of the pods (track comparison)."""
    comparison: Comparison = "track" if plan.by_track else "seasonal"

    def report(verdict: Verdict, reason: str, days: int | None, **more: Any) -> AuditReport:
        return AuditReport(
            verdict,
            reason,
            now,
            comparison=comparison,
            window_start=plan.start,
            baseline_days=days,
            **more,
        )

    days: int | None = None
    if plan.by_track:
        if canary_share is None or not 0.0 < canary_share < 1.0:
            reason = "no canary share to compare with yet (canary or stable has no pods)"
            return report("inconclusive", reason, None)
        p0 = canary_share
        reference = dict(sample.stable or {})
        against = "stable"
    else:
        days = len(sample.baseline)
        if days < MIN_BASELINE_DAYS:
            reason = (
                f"the audit log reaches back {days} day(s) before the canary window; "
                f"the seasonal baseline needs {MIN_BASELINE_DAYS}"
            )
            return report("inconclusive", reason, days)
        p0 = null_share_seasonal(days)
        reference = _sum(sample.baseline)
        against = f"the same hours of {days} previous days"
    anomalies = tuple(sorted(_findings(config, sample, reference, p0), key=_severity))
    tested = len(set(sample.canary) | set(reference))
    if not anomalies:
        return report(
            "pass", f"{tested} action(s) in line with {against}", days, actions_tested=tested
        )
    shown = "; ".join(f.describe() for f in anomalies[:3])
    reason = f"{len(anomalies)} anomalous action(s) against {against}: {shown}"
    return report("fail", reason, days, actions_tested=tested, anomalies=anomalies)


def _sum(days: tuple[Mapping[str, float], ...]) -> dict[str, float]:
    total: dict[str, float] = {}
    for day in days:
        for action, count in day.items():
            total[action] = total.get(action, 0.0) + count
    return total


def _findings(
    config: AuditLog, sample: AuditSample, reference: dict[str, float], p0: float
) -> list[ActionFinding]:
    patterns = config.sensitive.patterns
    actions = sorted(set(sample.canary) | set(reference))
    sensitive = {a: is_sensitive(a, patterns) for a in actions}
    counts = {a: events(sample.canary.get(a, 0.0)) for a in actions}
    refs = {a: events(reference.get(a, 0.0)) for a in actions}
    found: list[ActionFinding] = []
    tested: list[str] = []
    for action in actions:
        count, ref = counts[action], refs[action]
        if config.new_actions and ref == 0 and action not in sample.seen_before:
            floor = 1 if sensitive[action] else config.new_action_min_count
            if count >= floor:
                found.append(
                    ActionFinding(
                        action,
                        "new",
                        count,
                        0.0,
                        sensitive=sensitive[action],
                        actors=sample.actors.get(action),
                    )
                )
                continue
        tested.append(action)
    if not tested:
        return found
    pvalues = [anytime_pvalue(counts[a], refs[a], p0) for a in tested]
    weights = _weights([sensitive[a] for a in tested], config.sensitive.alpha_share)
    correct = holm if config.correction == "holm" else benjamini_hochberg
    rejected = correct(pvalues, config.alpha, weights)
    for action, p, significant in zip(tested, pvalues, rejected, strict=True):
        if not significant:
            continue
        count = counts[action]
        expected = expected_count(refs[action], p0)
        ratio = count / expected if expected > 0 else math.inf
        rules = config.sensitive if sensitive[action] else config
        if count < rules.min_count or ratio < rules.min_ratio:
            continue
        found.append(
            ActionFinding(
                action,
                "rise",
                count,
                expected,
                ratio=None if math.isinf(ratio) else ratio,
                p_value=p,
                sensitive=sensitive[action],
                actors=sample.actors.get(action),
            )
        )
    return found


def _weights(sensitive: list[bool], share: float) -> list[float] | None:
    """Sensitive actions share `share` of alpha among themselves; the others the rest."""
    n_sensitive = sum(sensitive)
    n_other = len(sensitive) - n_sensitive
    if n_sensitive == 0 or n_other == 0:
        return None
    return [share / n_sensitive if s else (1 - share) / n_other for s in sensitive]


def _severity(finding: ActionFinding) -> tuple[bool, int, float]:
    """Sensitive first, then new actions, then the strongest evidence."""
    return (not finding.sensitive, 0 if finding.kind == "new" else 1, finding.p_value or 0.0)
