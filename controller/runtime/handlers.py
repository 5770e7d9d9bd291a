"""Kopf wiring: every trigger (create, spec or annotation change, timer) runs one reconcile.

Kopf brings the watches, timers, retries and probes; the handlers stay thin.
A per-object lock keeps a timer tick and a watch event for the same release
from reconciling at once; a status conflict is retried from a fresh read.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import kopf
import structlog
from kubernetes import client, config

from controller.adapters.kubernetes import KubernetesCluster
from controller.adapters.ports import MetricsSource, StatusConflict
from controller.adapters.prometheus import PrometheusSource
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.runtime import settings
from controller.runtime.reconcile import reconcile

log = structlog.get_logger("controller.handlers")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
CONFLICT_ATTEMPTS = 3


@lru_cache(maxsize=1)
def _cluster() -> KubernetesCluster:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return KubernetesCluster(client.ApiClient())


@lru_cache(maxsize=256)
def _metrics_for(address: str) -> MetricsSource:
    return PrometheusSource(address, timeout_s=settings.PROMETHEUS_TIMEOUT_S)


def _lock_for(uid: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


def reconcile_now(namespace: str, name: str, uid: str) -> None:
    with _lock_for(uid):
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                reconcile(_cluster(), _metrics_for, namespace, name, datetime.now(UTC))
                return
            except StatusConflict:
                log.debug("status conflict, reconciling again", attempt=attempt)
            finally:
                structlog.contextvars.clear_contextvars()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # we post our own, meaningful Events
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
def on_delete(uid: str, **_: Any) -> None:
    with _locks_guard:
        _locks.pop(uid, None)
