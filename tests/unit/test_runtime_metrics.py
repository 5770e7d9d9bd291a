"""The controller's own metrics: what a reconcile's before/after status publishes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from controller.api.status import CanaryReleaseStatus, Condition, HistoryEntry, MetricResult
from controller.engine.observations import Measurement
from controller.runtime import metrics
from controller.runtime.clients import resource_of

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _release() -> tuple[str, str]:
    """A fresh label set per test: the registry is process-global."""
    return f"ns-{uuid.uuid4().hex[:6]}", "payments"


def _result(verdict: str, at: datetime, canary: float = 0.01) -> MetricResult:
    return MetricResult(
        name="error-rate",
        canary_value=canary,
        stable_value=0.01,
        verdict=verdict,  # type: ignore[arg-type]
        reason="r",
        measured_at=at,
    )


def test_phase_weight_and_step_follow_the_status() -> None:
    ns, name = _release()
    before = _value("canary_releases", phase="Paused")
    idle = CanaryReleaseStatus()
    paused = CanaryReleaseStatus(phase="Paused", canary_weight=10, current_step_index=1)
    metrics.record_status(ns, name, idle, paused)
    assert _value("canary_releases", phase="Paused") == before + 1
    assert _value("canary_release_weight_percent", namespace=ns, release=name) == 10
    assert _value("canary_release_step", namespace=ns, release=name) == 1
    done = CanaryReleaseStatus(phase="Succeeded")
    metrics.record_status(ns, name, paused, done)
    assert _value("canary_releases", phase="Paused") == before
    assert _value("canary_release_step", namespace=ns, release=name) == -1
    assert _value("canary_promotions_total", namespace=ns, release=name) == 1


def test_a_rollback_is_counted_once_with_its_reason() -> None:
    ns, name = _release()
    active = CanaryReleaseStatus(phase="Progressing", canary_weight=10)
    rolled = CanaryReleaseStatus(phase="RolledBack", reason="MetricBreach")
    metrics.record_status(ns, name, active, rolled)
    metrics.record_status(ns, name, rolled, rolled)  # later reconciles change nothing
    labels = {"namespace": ns, "release": name, "reason": "MetricBreach"}
    assert _value("canary_rollbacks_total", **labels) == 1


def test_only_fresh_verdicts_are_counted() -> None:
    ns, name = _release()
    first = CanaryReleaseStatus(phase="Paused", metrics=[_result("pass", T0)])
    metrics.record_status(ns, name, CanaryReleaseStatus(phase="Paused"), first)
    metrics.record_status(ns, name, first, first)  # no new measurement: no new verdict
    later = T0 + timedelta(seconds=30)
    second = CanaryReleaseStatus(phase="Paused", metrics=[_result("fail", later, canary=0.4)])
    metrics.record_status(ns, name, first, second)
    verdict = {"namespace": ns, "release": name, "metric": "error-rate"}
    assert _value("canary_analysis_verdicts_total", **verdict, verdict="pass") == 1
    assert _value("canary_analysis_verdicts_total", **verdict, verdict="fail") == 1
    assert _value("canary_analysis_value", **verdict, track="canary") == 0.4
    assert _value("canary_analysis_value", **verdict, track="stable") == 0.01


def _conditions(*states: tuple[str, str, str]) -> list[Condition]:
    return [
        Condition(type=kind, status=state, reason=reason, last_transition_time=T0)
        for kind, state, reason in states
    ]


def _samples(ns: str, family_name: str | None = None) -> list[Any]:
    """Every exported sample of namespace `ns` (of one family, if named)."""
    return [
        sample
        for family in REGISTRY.collect()
        if family_name is None or family.name == family_name
        for sample in family.samples
        if sample.labels.get("namespace") == ns
    ]


def _condition_series(ns: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["type"], s.labels["status"], s.labels["reason"]): s.value
        for s in _samples(ns, "canary_release_condition")
    }


def test_each_condition_has_one_series_for_what_it_says_now() -> None:
    ns, name = _release()
    pending = CanaryReleaseStatus(
        phase="Paused",
        conditions=_conditions(
            ("TrafficRouted", "Unknown", "RoutePending"), ("AnalysisAvailable", "True", "Measured")
        ),
    )
    metrics.record_status(ns, name, CanaryReleaseStatus(), pending)
    assert _condition_series(ns) == {
        ("TrafficRouted", "Unknown", "RoutePending"): 1.0,
        ("AnalysisAvailable", "True", "Measured"): 1.0,
    }
    # the reason changes, a condition goes away: the old series go with them
    rejected = CanaryReleaseStatus(
        phase="Paused", conditions=_conditions(("TrafficRouted", "False", "RouteRejected"))
    )
    metrics.record_status(ns, name, pending, rejected)
    assert _condition_series(ns) == {("TrafficRouted", "False", "RouteRejected"): 1.0}
    metrics.record_status(ns, name, rejected, pending)
    assert _condition_series(ns) == {
        ("TrafficRouted", "Unknown", "RoutePending"): 1.0,
        ("AnalysisAvailable", "True", "Measured"): 1.0,
    }


def _rollback_series(ns: str) -> dict[str, float]:
    family = "canary_release_last_rollback_timestamp_seconds"
    return {s.labels["reason"]: s.value for s in _samples(ns, family)}


def test_the_last_rollback_is_read_from_the_history_on_every_reconcile() -> None:
    ns, name = _release()
    first = HistoryEntry(
        tag="v2", outcome="RolledBack", reason="MetricBreach: error-rate 0.2", finished_at=T0
    )
    promoted = HistoryEntry(tag="v3", outcome="Succeeded", reason="promoted", finished_at=T0)
    status = CanaryReleaseStatus(phase="Succeeded", history=[first, promoted])
    # a restarted controller: the first thing it publishes is what the status says
    metrics.record_status(ns, name, status, status)
    assert _rollback_series(ns) == {"MetricBreach": T0.timestamp()}
    later = T0 + timedelta(hours=3)
    crash = HistoryEntry(
        tag="v4", outcome="RolledBack", reason="CanaryCrashLooping: pod x", finished_at=later
    )
    rolled = CanaryReleaseStatus(phase="RolledBack", history=[first, promoted, crash])
    metrics.record_status(ns, name, status, rolled)
    assert _rollback_series(ns) == {"CanaryCrashLooping": later.timestamp()}
    metrics.forget_release(ns, name)
    assert _rollback_series(ns) == {}


def test_measurement_results_and_provider_errors() -> None:
    ns, name = _release()
    unreachable_before = _value(
        "canary_provider_errors_total", provider="prometheus", kind="unreachable"
    )
    batch = [
        Measurement("error-rate", 0.01, 0.01, "q"),
        Measurement("latency", None, 0.2, "q"),
        Measurement("saturation", None, None, "q", error="connection refused", unreachable=True),
        Measurement("typo", None, None, "q", error="parse error"),
    ]
    metrics.record_measurements(ns, name, batch)
    base = {"namespace": ns, "release": name}
    results = {
        "error-rate": "value",
        "latency": "no_data",
        "saturation": "unreachable",
        "typo": "rejected",
    }
    for metric, result in results.items():
        labels = {**base, "metric": metric, "result": result}
        assert _value("canary_analysis_measurements_total", **labels) == 1
    assert (
        _value("canary_provider_errors_total", provider="prometheus", kind="unreachable")
        == unreachable_before + 1
    )


def test_a_deleted_release_leaves_no_series_behind() -> None:
    ns, name = _release()
    paused = CanaryReleaseStatus(
        phase="Paused",
        canary_weight=10,
        current_step_index=1,
        metrics=[_result("pass", T0)],
        conditions=_conditions(("Frozen", "True", "MetricBreach")),
    )
    metrics.record_status(ns, name, CanaryReleaseStatus(), paused)
    assert _condition_series(ns) == {("Frozen", "True", "MetricBreach"): 1.0}
    metrics.record_measurements(ns, name, [Measurement("error-rate", 0.01, 0.01, "q")])
    metrics.forget_release(ns, name)
    assert _samples(ns) == []


def test_a_reconcile_that_ends_after_the_deletion_publishes_nothing() -> None:
    ns, name = _release()
    frozen = CanaryReleaseStatus(
        phase="Paused", conditions=_conditions(("Frozen", "True", "MetricBreach"))
    )
    metrics.record_status(ns, name, CanaryReleaseStatus(), frozen, uid="uid-1")
    metrics.forget_release(ns, name, uid="uid-1")
    # was in flight: its measurements and its status come after the deletion
    metrics.record_measurements(ns, name, [Measurement("error-rate", 0.01, 0.01, "q")], uid="uid-1")
    metrics.record_status(ns, name, frozen, frozen, uid="uid-1")
    assert _samples(ns) == []
    metrics.record_status(ns, name, CanaryReleaseStatus(), frozen, uid="uid-2")  # recreated
    assert _condition_series(ns) == {("Frozen", "True", "MetricBreach"): 1.0}


def test_api_error_resource_label_names_the_resource_not_the_object() -> None:
    base = "https://10.0.0.1:6443"
    assert resource_of(f"{base}/apis/apps/v1/namespaces/a/deployments/web") == "deployments"
    assert resource_of(f"{base}/api/v1/namespaces/a/pods?labelSelector=x") == "pods"
    status = f"{base}/apis/canary.dev/v1alpha1/namespaces/a/canaryreleases/web/status"
    assert resource_of(status) == "canaryreleases/status"
    assert resource_of(f"{base}/apis/canary.dev/v1alpha1/canaryreleases") == "canaryreleases"
    assert resource_of(f"{base}/api/v1/namespaces/team-a") == "namespaces"
    assert resource_of(f"{base}/apis") == "discovery"
    assert resource_of(f"{base}/version") == "other"
