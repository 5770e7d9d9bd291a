"""One audit-log judgement: the Secret, the provider, the counts, the statistics.

Runs on the analysis schedule. Whatever goes wrong on the way (a missing
Secret, a database that is down, a rejected query) becomes a report that
holds the release and says why; only anomalies found in real counts can roll
it back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache

import structlog

from controller.adapters.ports import (
    AuditLogRejected,
    AuditLogSource,
    AuditLogUnreachable,
    Cluster,
)
from controller.adapters.postgres_audit import PostgresAuditLog
from controller.adapters.prometheus import PrometheusSource
from controller.adapters.prometheus_audit import PrometheusAuditCounter
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.auditlog import AuditReport, plan_audit
from controller.auditlog.detection import detect
from controller.engine.observations import DeploymentView
from controller.runtime import settings

log = structlog.get_logger("controller.auditing")


@lru_cache(maxsize=64)
def _prometheus(address: str) -> PrometheusSource:
    return PrometheusSource(
        address, timeout_s=settings.PROMETHEUS_TIMEOUT_S, pool_size=settings.WORKERS + 2
    )


def canary_share(
    target: DeploymentView,
    canary: DeploymentView | None,
    spec: CanaryReleaseSpec | None = None,
    status: CanaryReleaseStatus | None = None,
) -> float | None:
    """The canary's share of requests: what it should get of every action under no change.

    Without a router that is its share of the Ready pods. With one it is not (the
    canary gets a rounded-up number of pods beside all of stable's): it is the weight
    the route applies now, and unknown while a header route sends requests by header.
    """
    if spec is not None and spec.traffic_routing is not None:
        traffic = status.traffic if status is not None else None
        if traffic is None or traffic.header_route or not 0 < traffic.weight < 100:
            return None
        return traffic.weight / 100
    if canary is None:
        return None
    ready_canary, ready_stable = canary.ready_replicas, target.ready_replicas
    if ready_canary <= 0 or ready_stable <= 0:
        return None
    return ready_canary / (ready_canary + ready_stable)


def audit_source(
    cluster: Cluster, spec: CanaryReleaseSpec, *, namespace: str, name: str
) -> AuditLogSource:
    analysis = spec.analysis
    assert analysis is not None and analysis.audit_log is not None
    config = analysis.audit_log
    if config.sql is not None:
        ref = config.sql.secret_ref
        try:
            dsn = cluster.read_secret_value(namespace, ref.name, ref.key)
        except PermissionError as exc:
            raise AuditLogRejected(str(exc)) from exc
        if not dsn:
            raise AuditLogRejected(f"Secret {ref.name!r} has no key {ref.key!r} in {namespace}")
        return PostgresAuditLog(dsn, config.sql)
    assert config.prometheus is not None
    address = config.prometheus.address or analysis.prometheus.address
    return PrometheusAuditCounter(
        _prometheus(address),
        config.prometheus,
        namespace=namespace,
        name=name,
        target=spec.target_ref.name,
    )


def measure_audit_log(
    cluster: Cluster,
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
    *,
    target: DeploymentView,
    canary: DeploymentView | None,
    namespace: str,
    name: str,
    now: datetime,
) -> AuditReport:
    def source() -> AuditLogSource:
        return audit_source(cluster, spec, namespace=namespace, name=name)

    return judge_audit_log(source, spec, status, target=target, canary=canary, now=now)


def judge_audit_log(
    source: Callable[[], AuditLogSource],
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
    *,
    target: DeploymentView,
    canary: DeploymentView | None,
    now: datetime,
) -> AuditReport:
    """One judgement from whatever `source()` reads: the cluster's Secret, or replay's DSN.

    `source` is called inside the guard, so a Secret that cannot be read is a
    report that holds the release like any other failure to read the log.
    """
    analysis = spec.analysis
    assert analysis is not None and analysis.audit_log is not None
    config = analysis.audit_log
    plan = plan_audit(config, status, now)
    try:
        sample = source().fetch(plan)
    except AuditLogUnreachable as exc:
        log.warning("audit log unreachable", error=str(exc))
        return AuditReport("inconclusive", str(exc), now, unreachable=True, window_start=plan.start)
    except AuditLogRejected as exc:
        log.warning("audit log query rejected", error=str(exc))
        return AuditReport("error", str(exc), now, window_start=plan.start)
    share = canary_share(target, canary, spec, status)
    return detect(config, plan, sample, canary_share=share, now=now)
