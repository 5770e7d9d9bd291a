"""Kopf wiring: watches fill the caches and wake releases; a fixed pool of workers reconciles.

kopf brings the watches (CanaryReleases; Deployments, canary pods and
HorizontalPodAutoscalers as indices), the probes and the startup and cleanup
hooks. It does not bring the schedule: a timer per object would reconcile
every release on every tick. A release is reconciled by the work queue
(`workqueue.py`) when a watch saw it or one of its Deployments, canary pods
or HPAs change, and when the engine says something is next due
(`engine/wakeup.py`). A status conflict is retried at once from a fresh read.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

import kopf
import structlog

from controller.adapters import ratelimit
from controller.adapters.kubernetes import (
    RELEASE_LABEL,
    TRACK_LABEL,
    PodRecord,
    autoscaled_deployment,
    pod_record,
)
from controller.adapters.kubernetes_gates import KubernetesGateObjects
from controller.adapters.kubernetes_listing import POD_SELECTOR, list_live
from controller.adapters.ports import MetricsSource, StatusConflict
from controller.adapters.prometheus import PrometheusSource
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.engine.wakeup import next_wakeup
from controller.runtime import metrics, settings
from controller.runtime.caches import (
    AutoscalerRecord,
    CachedCluster,
    ReleaseKey,
    ReleaseStore,
    deployment_record,
    releases_for_deployment,
)
from controller.runtime.clients import api_client
from controller.runtime.gate_checks import GateChecker
from controller.runtime.measuring import AnalysisInterrupted
from controller.runtime.phantoms import Sweeper
from controller.runtime.reconcile import Outcome, needs_answer, reconcile
from controller.runtime.workqueue import WakeQueue, Workers

log = structlog.get_logger("controller.handlers")
CONFLICT_ATTEMPTS = 3
#: Workers that take only releases with a command or spec change to answer
#: (which query no Prometheus), so a command never waits for a busy pool.
URGENT_WORKERS = 1
MIN_DELAY_S = 1.0  # a deadline already passed is served now, but never in a tight loop
EVENT_HEAD_START_S = 10.0  # a change is served before deadline work less than this late

releases = ReleaseStore()
queue: WakeQueue[ReleaseKey] = WakeQueue()
_workers: list[Workers[ReleaseKey]] = []
_sweepers: list[Sweeper] = []


@lru_cache(maxsize=1)
def _cluster() -> CachedCluster:
    return CachedCluster(api_client(pool_size=settings.WORKERS + 2), releases)


@lru_cache(maxsize=1)
def _gates() -> GateChecker:
    return GateChecker(KubernetesGateObjects(api_client()))


@lru_cache(maxsize=256)
def _metrics_for(address: str) -> MetricsSource:
    return PrometheusSource(
        address, timeout_s=settings.PROMETHEUS_TIMEOUT_S, pool_size=settings.WORKERS + 2
    )


def reconcile_key(key: ReleaseKey, *, analyse: bool = True) -> float | None:
    """Reconcile one release; return when (monotonic) it is next due, None when it is gone."""
    namespace, name = key
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        started, result = time.perf_counter(), "error"
        try:
            now = datetime.now(UTC)
            outcome = reconcile(
                _cluster(), _metrics_for, namespace, name, now, gates=_gates(), analyse=analyse
            )
            result = "ok"
            return _next_due(outcome, now)
        except StatusConflict:
            result = "conflict"
            log.debug("status conflict, reconciling again", attempt=attempt)
            _cluster().refresh_release(namespace, name)
        except AnalysisInterrupted:
            result = "interrupted"
            log.info("analysis interrupted by a command or spec change; answering it first")
        finally:
            metrics.RECONCILE_SECONDS.labels(result).observe(time.perf_counter() - started)
            structlog.contextvars.clear_contextvars()
    return time.monotonic() + MIN_DELAY_S


def _next_due(outcome: Outcome | None, now: datetime) -> float | None:
    if outcome is None:
        return None
    if outcome.moved:  # one decision is not always a fixed point: decide again from the new state
        return time.monotonic() + MIN_DELAY_S
    resync = timedelta(seconds=settings.RESYNC_INTERVAL_S)
    wake = now + resync
    if outcome.spec is not None and outcome.status is not None:
        poll = timedelta(seconds=settings.RECONCILE_INTERVAL_S)
        wake = next_wakeup(outcome.spec, outcome.status, now, poll=poll, resync=resync)
    return time.monotonic() + max(MIN_DELAY_S, (wake - now).total_seconds())


def _picked_up(lateness: float) -> None:
    metrics.QUEUE_LATENESS.observe(lateness)
    metrics.QUEUE_DEPTH.set(len(queue))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    from controller.runtime import settings as knobs

    # Only event handlers and indices: kopf keeps no progress or diff-base
    # annotations, so it never writes to a CanaryRelease.
    settings.posting.enabled = False  # we post our own, meaningful Events
    # No cluster-wide watch of CRDs and Namespaces: least privilege (the CRD is
    # installed before the controller; `--namespace` names are taken as given).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # Only pods of a release's tracks are watched (canary pods, and stable pods
    # a promotion labelled), filtered by the apiserver, not by us.
    settings.watching.label_selectors["pods"] = POD_SELECTOR
    ratelimit.PROMETHEUS.configure(knobs.PROMETHEUS_QPS, knobs.PROMETHEUS_BURST)
    ratelimit.KUBERNETES.configure(knobs.KUBE_QPS, knobs.KUBE_BURST)
    workers = Workers(
        queue,
        reconcile_key,
        knobs.WORKERS,
        on_lateness=_picked_up,
        reserved=URGENT_WORKERS,
        # The reserved worker never queries Prometheus, even if by its turn the
        # command was answered and an analysis is due: an ordinary one will.
        handle_urgent=lambda key: reconcile_key(key, analyse=False),
    )
    workers.start()
    _workers.append(workers)
    listing_client = api_client()
    sweeper = Sweeper(
        _cluster(),
        lambda kind, namespaces: list_live(listing_client, kind, namespaces),
        memo.get("namespaces") or (),
        interval_s=knobs.RESYNC_INTERVAL_S,
        wake=queue.wake,
        forget=_forget_unseen,
    )
    sweeper.start()
    _sweepers.append(sweeper)


@kopf.on.cleanup()
def stop_workers(**_: Any) -> None:
    while _sweepers:
        _sweepers.pop().stop()
    while _workers:
        _workers.pop().stop()


def _forget(key: ReleaseKey, uid: str | None) -> None:
    """A release is gone: its body is dropped, and so are its place in the queue and its series."""
    queue.forget(key)
    metrics.forget_release(*key, uid=uid)


def _forget_unseen(key: ReleaseKey, uid: str) -> None:
    """A release deleted while the watch was down (unless recreated since under its name)."""
    if releases.delete_if(key, uid):
        _forget(key, uid)


def _seen(event: kopf.RawEvent) -> None:
    """An event of no type is a watch listing, at start or after its watch broke:
    what it no longer lists may still be indexed, so the sweep comes soon."""
    if event.get("type") is None:
        for sweeper in _sweepers:
            sweeper.soon()


_TRACK_PODS = {TRACK_LABEL: kopf.PRESENT, RELEASE_LABEL: kopf.PRESENT}


@kopf.index("apps", "v1", "deployments")
def deployment_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[ReleaseKey, dict[str, Any]]:
    return {(namespace or "", name): deployment_record(body)}


@kopf.index("v1", "pods", labels=_TRACK_PODS)
def pod_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str, str], PodRecord]:
    """A pod that stops serving leaves the index ({} purges what it held)."""
    record = pod_record(body)
    key = (namespace or "", labels[RELEASE_LABEL], labels[TRACK_LABEL])
    return {key: record} if record is not None else {}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
def autoscaler_index(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[ReleaseKey, AutoscalerRecord]:
    target = autoscaled_deployment({"spec": dict(spec)})
    uid, version = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
    record = AutoscalerRecord(name, uid, version)
    return {(namespace or "", target): record} if target else {}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def release_changed(event: kopf.RawEvent, **kwargs: Any) -> None:
    cluster = _cluster()
    # kopf hands the indices to every handler, and only once their first listing is complete.
    cluster.deployments = kwargs["deployment_index"]
    cluster.pods = kwargs["pod_index"]
    cluster.autoscalers = kwargs["autoscaler_index"]
    _seen(event)
    body = dict(cast(dict[str, Any], event["object"]))
    meta = body.get("metadata") or {}
    key = (meta.get("namespace") or "", meta.get("name") or "")
    if event["type"] == "DELETED":
        releases.delete(key)
        _forget(key, meta.get("uid"))
    elif releases.put(body):  # not the echo of our own status write
        # A command or spec change may also go to the reserved worker.
        queue.wake(key, head_start=EVENT_HEAD_START_S, urgent=needs_answer(body))


@kopf.on.event("apps", "v1", "deployments")
async def deployment_changed(
    namespace: str | None, name: str, labels: kopf.Labels, event: kopf.RawEvent, **_: Any
) -> None:
    _seen(event)
    for key in releases_for_deployment(releases, namespace or "", name, labels):
        queue.wake(key, head_start=EVENT_HEAD_START_S)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
async def autoscaler_changed(
    namespace: str | None, spec: kopf.Spec, event: kopf.RawEvent, **_: Any
) -> None:
    """An HPA appearing or going changes who sizes stable: its releases decide again."""
    _seen(event)
    target = autoscaled_deployment({"spec": dict(spec)})
    for key in releases_for_deployment(releases, namespace or "", target, {}) if target else []:
        queue.wake(key, head_start=EVENT_HEAD_START_S)


def _watching(body: dict[str, Any] | None) -> bool:
    """`watching()` read from the raw status: this runs for every stable pod event, and
    most releases rest Succeeded, where parsing each status would cost more."""
    status = (body or {}).get("status") or {}
    watch = status.get("postPromotion") or {}
    return status.get("phase") == "Succeeded" and watch.get("state") == "Watching"


@kopf.on.event("v1", "pods", labels=_TRACK_PODS)
async def pod_changed(
    namespace: str | None, labels: kopf.Labels, event: kopf.RawEvent, **_: Any
) -> None:
    """A canary pod always matters; a stable pod only while its promotion is watched."""
    _seen(event)
    key = (namespace or "", labels[RELEASE_LABEL])
    if labels[TRACK_LABEL] == "canary" or _watching(releases.get(key)):
        queue.wake(key, head_start=EVENT_HEAD_START_S)
