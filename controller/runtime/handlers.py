"""Kopf wiring: every trigger (create, spec or annotation change, timer) runs one reconcile.

Kopf brings the watches, timers, retries and probes; the handlers stay thin.
A per-object lock keeps a timer tick and a watch event for the same release
from reconciling at once; a status conflict is retried from a fresh read.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import kopf
import structlog

from controller.adapters.kubernetes import KubernetesCluster
from controller.adapters.kubernetes_gates import KubernetesGateObjects
from controller.adapters.ports import MetricsSource, StatusConflict
from controller.adapters.prometheus import PrometheusSource
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.runtime import metrics, settings
from controller.runtime.clients import api_client
from controller.runtime.gate_checks import GateChecker
from controller.runtime.reconcile import reconcile

log = structlog.get_logger("controller.handlers")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
CONFLICT_ATTEMPTS = 3


@lru_cache(maxsize=1)
def _cluster() -> KubernetesCluster:
    return KubernetesCluster(api_client())


@lru_cache(maxsize=1)
def _gates() -> GateChecker:
    return GateChecker(KubernetesGateObjects(api_client()))


@lru_cache(maxsize=256)
def _metrics_for(address: str) -> MetricsSource:
    return PrometheusSource(address, timeout_s=settings.PROMETHEUS_TIMEOUT_S)


def _lock_for(uid: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


def reconcile_now(namespace: str, name: str, uid: str) -> None:
    with _lock_for(uid):
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            started, result = time.perf_counter(), "error"
            try:
                now = datetime.now(UTC)
                reconcile(_cluster(), _metrics_for, namespace, name, now, gates=_gates())
                result = "ok"
                return
            except StatusConflict:
                result = "conflict"
                log.debug("status conflict, reconciling again", attempt=attempt)
            finally:
                metrics.RECONCILE_SECONDS.labels(result).observe(time.perf_counter() - started)
                structlog.contextvars.clear_contextvars()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # we post our own, meaningful Events
    # No cluster-wide watch of CRDs and Namespaces: least privilege (the CRD is
    # installed before the controller; `--namespace` names are taken as given).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def on_change(namespace: str | None, name: str, uid: str, **_: Any) -> None:
    reconcile_now(namespace or "", name, uid)


@kopf.timer(GROUP, VERSION, PLURAL, interval=settings.RECONCILE_INTERVAL_S, sharp=False)
def on_tick(namespace: str | None, name: str, uid: str, **_: Any) -> None:
    reconcile_now(namespace or "", name, uid)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(namespace: str | None, name: str, uid: str, **_: Any) -> None:
    with _locks_guard:
        _locks.pop(uid, None)
    metrics.forget_release(namespace or "", name)
