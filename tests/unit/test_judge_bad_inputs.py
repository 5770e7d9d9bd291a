"""The judge against inputs that must not decide a verdict: no stable data, a non-finite
counter, histograms that cannot answer, a non-finite audit count, a routed canary's share
of the audit log, and evidence gathered under another maxRatio."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np

from controller.adapters.prometheus_audit import PrometheusAuditCounter
from controller.api.auditlog import AuditLog
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus, Evidence
from controller.api.traffic import TrafficStatus
from controller.auditlog import AuditSample, plan_audit
from controller.auditlog.detection import detect
from controller.engine.observations import DeploymentView, Measurement, TrackCounts
from controller.engine.routing import routed_canary_replicas
from controller.engine.sequential import Judgement, judge_counts
from controller.runtime.auditing import canary_share, judge_audit_log
from tests.unit.counters import SimulatedCounters, TrackRates
from tests.unit.routedworld import make_routed_spec
from tests.unit.test_sequential_engine import (
    ERRORS,
    LATENCY,
    T0,
    CounterWorld,
    measurement,
    spec,
)


def test_no_stable_data_is_not_inconclusive_so_onInconclusive_rollback_must_hold() -> None:
    """docs/judge.md: 'A metric that is inconclusive because ... the stable track has no
    data is not "inconclusive" in this sense: the release holds.'"""
    release = spec(ERRORS, pause="10m", onInconclusive="rollback")
    source = SimulatedCounters(T0, 3600, {"canary": TrackRates(10)})  # no stable series at all
    world = CounterWorld(spec=release, start=T0, counters=source)
    world.run(until=timedelta(hours=0.5), every=timedelta(seconds=10))
    assert "waiting for stable traffic" in world.status.metrics[0].reason
    assert world.status.phase != "RolledBack", world.status.message
    assert world.status.reason == "AwaitingAnalysis"


def test_one_infinite_error_read_does_not_blind_the_judge() -> None:
    """A single +Inf answer for the canary's errors (a broken exporter sample in the window)
    moves the error high-water mark to inf: every later canary error is clipped away, so a
    canary 5x worse than stable collects 'not worse' evidence and passes."""
    release = spec(ERRORS)
    analysis, metric = release.analysis, release.analysis.metrics[0]
    rng = np.random.default_rng(3)
    cum = np.zeros(4)
    evidence, verdicts = None, []
    for look in range(240):
        cum += [rng.poisson(100 * 30 * 0.05), 3000, rng.poisson(900 * 30 * 0.01), 27000]
        errors = float("inf") if look == 1 else cum[0]
        now = T0 + timedelta(seconds=30 * (look + 1))
        j = judge_counts(
            metric, analysis, measurement((errors, cum[1]), (cum[2], cum[3])), evidence, now
        )
        evidence = j.evidence
        verdicts.append(j.verdict)
    assert "fail" in verdicts, (verdicts[-1], evidence.canary, evidence.counted_canary)


STABLE_LE = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf)
CANARY_LE = (0.05, 0.1, 0.2, 0.4, 0.8, 2.0, math.inf)  # the new build re-bucketed its histogram


def _buckets(bounds, requests, shares):
    """Cumulative buckets from the share of requests at or under each bound."""
    return tuple((le, requests * share) for le, share in zip(bounds, shares, strict=True))


STABLE_SHARES = (0.90, 0.98, 0.995, 0.999, 1.0, 1.0, 1.0)  # p99 bucket bound: 0.25 s
CANARY_SHARES = (0.60, 0.70, 0.75, 0.78, 0.80, 0.80, 1.0)  # 20% of requests above 2 s


def _judged_latency(
    metric: dict[str, Any], canary_le: tuple[float, ...], canary_shares: tuple[float, ...]
) -> Judgement:
    """An hour of looks every 30 s: stable as STABLE_SHARES, the canary as given."""
    release = spec(metric)
    assert release.analysis is not None
    analysis, judged = release.analysis, release.analysis.metrics[0]
    evidence, j = None, None
    for look in range(1, 121):
        stable = _buckets(STABLE_LE, 27000.0 * look, STABLE_SHARES)
        canary = _buckets(canary_le, 3000.0 * look, canary_shares)
        measured = Measurement(
            "latency",
            None,
            None,
            "q",
            window_start=T0,
            canary_counts=TrackCounts(canary[-1][1], buckets=canary),
            stable_counts=TrackCounts(stable[-1][1], buckets=stable),
        )
        j = judge_counts(judged, analysis, measured, evidence, T0 + timedelta(seconds=30 * look))
        evidence = j.evidence
    assert j is not None
    return j


def test_a_canary_whose_histogram_lacks_the_stable_bound_does_not_pass() -> None:
    """The tail test counts canary requests above the stable's p99 bucket bound. When the
    canary's histogram has no bucket at that bound (a new build with other buckets),
    count_above() is None and _above() turns it into 0 slow requests, look after look:
    a canary with 20% of its requests at 2 s is 'shown not 2x worse' and promoted."""
    j = _judged_latency(LATENCY, CANARY_LE, CANARY_SHARES)
    assert j.verdict != "pass", j.reason  # the stable's p99 bucket bound is 0.25 s


def test_a_latency_bound_above_every_finite_bucket_is_not_shown_met() -> None:
    """threshold.max 5 s with buckets up to 2.5 s: bound_at_or_above() is None, so
    canary_over_max is None and counted as 0 slow requests. A canary whose every request
    takes longer than 2.5 s (all in +Inf, p99 unknown, possibly far above 5 s) is 'shown
    below max 5s' and passes."""
    metric = {"name": "latency", "latency": LATENCY["latency"], "threshold": {"max": 5}}
    j = _judged_latency(metric, STABLE_LE, (0, 0, 0, 0, 0, 0, 1.0))  # all slower than 2.5 s
    assert j.verdict != "pass", j.reason


class _Vector:
    """A Prometheus answering the audit query with one +Inf series (a broken exporter sample)."""

    def query_vector(self, promql, at):
        return [({"action": "user.login"}, 120.0), ({"action": "order.create"}, float("inf"))]


def test_an_infinite_audit_count_holds_instead_of_crashing_the_reconcile() -> None:
    """runtime/auditing.py promises 'whatever goes wrong on the way becomes a report that
    holds the release'. events(inf) is round(inf): OverflowError escapes judge_audit_log,
    and with it the whole reconcile (the metrics' rollback decision included)."""
    release = spec(
        ERRORS,
        auditLog={
            "prometheus": {
                "query": (
                    'sum by (action) (increase(audit_events_total{track="{{track}}"}[{{window}}]))'
                )
            }
        },
    )
    config = release.analysis.audit_log
    counter = PrometheusAuditCounter(
        _Vector(), config.prometheus, namespace="ns", name="r", target="app"
    )
    status = CanaryReleaseStatus(
        phase="Progressing",
        canary_tag="v2",
        stable_tag="v1",
        release_started_at=T0,
        step_started_at=T0,
    )
    view = lambda n: DeploymentView("app", n, "img", ready_replicas=n)  # noqa: E731
    report = judge_audit_log(
        lambda: counter,
        release,
        status,
        target=view(9),
        canary=view(1),
        now=T0 + timedelta(minutes=10),
    )
    assert report.verdict in ("inconclusive", "error")


def test_a_routed_canary_is_expected_its_traffic_weight_of_the_audit_log_not_its_pod_share() -> (
    None
):
    """With trafficRouting the canary gets ceil(N% of replicas) pods beside all of stable's:
    3 replicas at weight 60 is 2 canary pods beside 3 (a pod share of 0.4) while the
    route sends it 60% of requests. A canary behaving exactly like stable then sees 60% of
    every action: judged by the pod share, a 2.25x rise and a false rollback."""
    config = AuditLog.model_validate(
        {"sql": {"secretRef": {"name": "db", "key": "dsn"}, "trackColumn": "track"}}
    )
    weight, total = 60, 3
    pods = routed_canary_replicas(weight, total)
    target = DeploymentView("app", total, "v1", ready_replicas=total)
    canary = DeploymentView("app-canary", pods, "v2", ready_replicas=pods)
    assert canary_share(target, canary) == 0.4  # without a router: the pod share
    routed = make_routed_spec()
    status = CanaryReleaseStatus(
        phase="Progressing",
        canary_tag="v2",
        release_started_at=T0,
        step_started_at=T0,
        traffic=TrafficStatus(router="gatewayAPI", weight=weight, desired_weight=weight),
    )
    share = canary_share(target, canary, routed, status)
    assert share == 0.6
    actions = {"user.login": 1000, "order.create": 500, "page.view": 5000}
    sample = AuditSample(
        canary={a: n * weight / 100 for a, n in actions.items()},
        stable={a: n * (100 - weight) / 100 for a, n in actions.items()},
        seen_before=frozenset(actions),
    )
    plan = plan_audit(config, status, T0 + timedelta(hours=1))
    assert detect(config, plan, sample, canary_share=share, now=plan.end).verdict == "pass"
    headers = status.model_copy(
        update={"traffic": status.traffic.model_copy(update={"header_route": True})}
    )
    assert canary_share(target, canary, routed, headers) is None  # requests go by header


def _feed(
    release: CanaryReleaseSpec,
    looks: int,
    start: Evidence | None = None,
    ratio: float = 2.0,
    seed: int = 1,
) -> tuple[Evidence | None, str | None]:
    analysis = release.analysis
    metric = analysis.metrics[0]
    rng = np.random.default_rng(seed)
    evidence, cum, verdict = start, np.zeros(4), None
    if start is not None:
        cum = np.array(
            [start.canary.events, start.canary.total, start.stable.events, start.stable.total]
        )
    for _ in range(looks):
        cum += [rng.poisson(100 * 30 * 0.01 * ratio), 3000, rng.poisson(900 * 30 * 0.01), 27000]
        now = (evidence.counted_at if evidence else T0) + timedelta(seconds=30)
        j = judge_counts(
            metric, analysis, measurement((cum[0], cum[1]), (cum[2], cum[3])), evidence, now
        )
        evidence, verdict = j.evidence, j.verdict
    return evidence, verdict


def test_changing_max_ratio_mid_release_restarts_the_tests() -> None:
    """docs/judge.md: 'changing maxRatio or falseAlarmRate in the middle of a release
    restarts the affected tests (their evidence no longer applies)'. A canary 2x worse,
    judged at maxRatio 4, piles up 'not 4x worse' evidence; lowering maxRatio to 1.5
    keeps that evidence, so the 2x-worse canary is declared 'not 1.5x worse' at once."""
    loose = spec({**ERRORS, "compare": {"maxRatio": 4}})
    evidence, verdict = _feed(loose, 60, ratio=1.6, seed=2)
    assert verdict == "pass"  # correct: 1.6x is not 4x worse
    strict = spec({**ERRORS, "compare": {"maxRatio": 1.5}})
    _, fresh = _feed(strict, 60, ratio=1.6, seed=2)
    assert fresh == "fail"  # the same canary judged at 1.5 from the start
    after, verdict = _feed(strict, 1, start=evidence, ratio=1.6, seed=102)
    # restarted tests cannot pass on one look (one interval adds at most 1.5x what is
    # needed and the largest burst is set aside); the stale evidence does
    assert verdict != "pass", [(t.test, t.e_value) for t in after.tests]
