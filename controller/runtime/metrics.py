"""The controller's own Prometheus metrics, and the few functions that update them.

Everything here is derived from what a reconcile already knows (the status
before and after, the measurements taken), so counting never adds an API
call. Transitions are counted only after their status write succeeded: a
rollback or a promotion is counted once, by the replica that recorded it,
even across a leader failover. Label values are bounded by the releases and
metrics that exist; a deleted release's series are removed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import TypeVar, get_args

from prometheus_client import Counter, Gauge, Histogram

from controller.api.status import CanaryReleaseStatus, Phase
from controller.engine.observations import Measurement

PHASES: tuple[str, ...] = get_args(Phase)
RELEASE = ("namespace", "release")

RELEASES = Gauge("canary_releases", "CanaryReleases this replica reconciles, by phase", ["phase"])
WEIGHT = Gauge("canary_release_weight_percent", "Traffic share of the canary track", RELEASE)
STEP = Gauge("canary_release_step", "Index of the current step (-1 when no canary runs)", RELEASE)
MEASUREMENTS = Counter(
    "canary_analysis_measurements_total",
    "Metric measurements taken, by result (value, no_data, unreachable, rejected)",
    [*RELEASE, "metric", "result"],
)
VERDICTS = Counter(
    "canary_analysis_verdicts_total",
    "Verdicts on metrics (pass, fail, inconclusive, error)",
    [*RELEASE, "metric", "verdict"],
)
VALUE = Gauge(
    "canary_analysis_value", "Latest measured value of a metric", [*RELEASE, "metric", "track"]
)
ROLLBACKS = Counter(
    "canary_rollbacks_total", "Releases rolled back, by reason", [*RELEASE, "reason"]
)
PROMOTIONS = Counter("canary_promotions_total", "Releases promoted to all replicas", RELEASE)
RECONCILE_SECONDS = Histogram(
    "canary_reconcile_duration_seconds",
    "Time for one reconcile (observe, decide, write, act), by result "
    "(ok, conflict, interrupted, error)",
    ["result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_DEPTH = Gauge(
    "canary_workqueue_releases", "Releases waiting in the work queue for their next reconcile"
)
QUEUE_LATENESS = Histogram(
    "canary_workqueue_lateness_seconds",
    "How long after its due time a release was picked up (saturated workers show here first)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
API_REQUESTS = Counter(
    "canary_kubernetes_api_requests_total",
    "Kubernetes API requests made by reconciles (kopf's own watches not included)",
    ["method", "resource"],
)
API_ERRORS = Counter(
    "canary_kubernetes_api_errors_total",
    "Failed Kubernetes API requests (each attempt; 404 is an answer, not an error)",
    ["method", "resource", "code"],
)
MISSED_DELETIONS = Counter(
    "canary_watch_missed_deletions_total",
    "Objects deleted while a watch was down, found still indexed and set aside "
    "(runtime/phantoms.py)",
    ["kind"],
)
PROVIDER_ERRORS = Counter(
    "canary_provider_errors_total",
    "Metric provider failures: unreachable (no answer) or rejected (a bad query)",
    ["provider", "kind"],
)
CONDITION = Gauge(
    "canary_release_condition",
    "1 for each condition a release's status holds now, with its status and reason "
    "(what the chart's alerts select on)",
    [*RELEASE, "type", "status", "reason"],
)
LAST_ROLLBACK = Gauge(
    "canary_release_last_rollback_timestamp_seconds",
    "When the release was last rolled back (from its status history), with the reason",
    [*RELEASE, "reason"],
)
LEADER = Gauge("canary_controller_leader", "1 while this replica holds the lease and reconciles")

_Family = TypeVar("_Family", Counter, Gauge)
_phases: dict[tuple[str, str], str] = {}
_current: dict[tuple[str, str], dict[tuple[Gauge, str], tuple[str, ...]]] = {}
"""Per release and (family, key): the labels of the one series it has now (_publish_current)."""
_series: dict[tuple[str, str], set[tuple[Counter | Gauge, tuple[str, ...]]]] = {}
#: uids of deleted releases (the latest few thousand): a reconcile that was in
#: flight when its release was deleted must not publish its series again.
_deleted: dict[str, None] = {}
_DELETED_KEPT = 10_000
_guard = threading.RLock()  # held across a whole record_status: see _deleted


def _child(family: _Family, namespace: str, name: str, *rest: str) -> _Family:
    """`family.labels(...)` for one release, remembered so `forget_release` can drop it."""
    labels = (namespace, name, *rest)
    with _guard:
        _series.setdefault((namespace, name), set()).add((family, labels))
    return family.labels(*labels)


def _publish_phase_counts() -> None:
    counts = dict.fromkeys(PHASES, 0)
    for phase in _phases.values():
        counts[phase] = counts.get(phase, 0) + 1
    for phase, count in counts.items():
        RELEASES.labels(phase=phase).set(count)


def record_status(
    namespace: str,
    name: str,
    old: CanaryReleaseStatus,
    new: CanaryReleaseStatus,
    uid: str | None = None,
) -> None:
    """Publish a reconcile's outcome; call only once `new` is written (or unchanged)."""
    with _guard:
        if not _deleted_uid(uid):
            _publish(namespace, name, old, new)


def _deleted_uid(uid: str | None) -> bool:
    """The release was deleted while its reconcile ran: nothing of it is published again."""
    return uid is not None and uid in _deleted


def _publish(namespace: str, name: str, old: CanaryReleaseStatus, new: CanaryReleaseStatus) -> None:
    """Under `_guard`, so a deletion lands before or after all of it, never in between."""
    _phases[(namespace, name)] = new.phase
    _publish_phase_counts()
    _child(WEIGHT, namespace, name).set(new.canary_weight)
    _publish_from_status(namespace, name, new)
    step = new.current_step_index
    _child(STEP, namespace, name).set(-1 if step is None else step)
    if new.phase == "RolledBack" and old.phase != "RolledBack":
        _child(ROLLBACKS, namespace, name, new.reason or "Unknown").inc()
    if new.phase == "Succeeded" and old.phase != "Succeeded":
        _child(PROMOTIONS, namespace, name).inc()
    measured_before = {r.name: r.measured_at for r in old.metrics}
    for result in new.metrics:
        if measured_before.get(result.name) == result.measured_at:
            continue  # not judged in this reconcile
        _child(VERDICTS, namespace, name, result.name, result.verdict).inc()
        for track, value in (("canary", result.canary_value), ("stable", result.stable_value)):
            if value is not None:
                _child(VALUE, namespace, name, result.name, track).set(value)


def _publish_from_status(namespace: str, name: str, status: CanaryReleaseStatus) -> None:
    """The series that say what the status says now: its conditions, its last rollback."""
    current = {c.type: ((c.type, c.status, c.reason), 1.0) for c in status.conditions}
    _publish_current(CONDITION, namespace, name, current)
    rollbacks = [h for h in status.history if h.outcome == "RolledBack"]
    latest = max(rollbacks, key=lambda h: h.finished_at, default=None)
    last: dict[str, tuple[tuple[str, ...], float]] = {}
    if latest is not None:
        reason = latest.reason.partition(":")[0] or "Unknown"
        last[""] = ((reason,), latest.finished_at.timestamp())
    _publish_current(LAST_ROLLBACK, namespace, name, last)


def _publish_current(
    family: Gauge,
    namespace: str,
    name: str,
    current: Mapping[str, tuple[tuple[str, ...], float]],
) -> None:
    """One series per key, with the labels it has now: changed labels replace the old series.

    Read from the status on every reconcile, so a restarted controller
    publishes the same. Only the current state has a series, so an alert is a
    plain selector (`canary_release_condition{type="Frozen",status="True"}`)
    with no stale combinations to rule out.
    """
    held = _current.setdefault((namespace, name), {})
    for (kind, key), labels in list(held.items()):
        if kind is family and (key not in current or current[key][0] != labels):
            del held[(kind, key)]
            full = (namespace, name, *labels)
            _series.get((namespace, name), set()).discard((family, full))
            with contextlib.suppress(KeyError):
                family.remove(*full)
    for key, (labels, value) in current.items():
        held[(family, key)] = labels
        _child(family, namespace, name, *labels).set(value)


def record_measurements(
    namespace: str,
    name: str,
    measurements: Iterable[Measurement],
    provider: str = "prometheus",
    uid: str | None = None,
) -> None:
    with _guard:
        if not _deleted_uid(uid):
            _count_measurements(namespace, name, measurements, provider)


def _count_measurements(
    namespace: str, name: str, measurements: Iterable[Measurement], provider: str
) -> None:
    for m in measurements:
        if m.unreachable:
            result = "unreachable"
            PROVIDER_ERRORS.labels(provider, "unreachable").inc()
        elif m.error:
            result = "rejected"
            PROVIDER_ERRORS.labels(provider, "rejected").inc()
        else:
            result = "no_data" if m.canary is None or m.stable is None else "value"
        _child(MEASUREMENTS, namespace, name, m.metric, result).inc()


def forget_release(namespace: str, name: str, uid: str | None = None) -> None:
    """Drop a deleted release's series, so label sets stay bounded by what exists."""
    with _guard:
        if uid is not None:
            _deleted[uid] = None
            if len(_deleted) > _DELETED_KEPT:
                del _deleted[next(iter(_deleted))]
        _phases.pop((namespace, name), None)
        _current.pop((namespace, name), None)
        _publish_phase_counts()
        series = _series.pop((namespace, name), set())
        for family, labels in series:  # under the lock: a recreated release may publish next
            with contextlib.suppress(KeyError):
                family.remove(*labels)


_publish_phase_counts()
