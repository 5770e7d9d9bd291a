"""One reconciliation: observe, decide, write status, act.

Level-triggered and idempotent: it reads everything it needs, so it may run
any number of times, from a timer or from a watch event, and after a crash.
Status is written before the actions so that a decision is never acted on
unless it was recorded; a 409 means a newer object exists and the caller
simply reconciles again. So does `AnalysisInterrupted`: a command or spec
change that arrives while Prometheus is being queried stops the analysis at
the next query, and the next pass answers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError

from controller.adapters.kubernetes import COMMAND_ANNOTATION, ROUTE_FINALIZER, canary_name
from controller.adapters.ports import Cluster, MetricsSource
from controller.adapters.routers.protocol import TrafficRouter
from controller.api.base import describe_validation_error
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import (
    Action,
    CheckGates,
    DeleteHookJob,
    RecordEvent,
    ResetTraffic,
    TrafficAction,
)
from controller.engine.analysis import analysis_due
from controller.engine.decide import command_pending, decide_checking_gates, reject_spec
from controller.engine.observations import Observed, PodHealth
from controller.engine.watching import watch_due, watching
from controller.runtime import outbox
from controller.runtime.auditing import measure_audit_log
from controller.runtime.gate_checks import GateChecker, check_gates, observe_hooks
from controller.runtime.measuring import Interruptible, measure
from controller.runtime.metrics import record_measurements, record_status
from controller.runtime.routing import apply_traffic, observe_route
from controller.runtime.watching import measure_after_promotion

log = structlog.get_logger("controller.reconcile")


@dataclass(frozen=True)
class Outcome:
    phase: str
    actions: tuple[Action, ...]
    wrote_status: bool
    spec: CanaryReleaseSpec | None = None  # with `status`: what the next wake-up is computed from
    status: CanaryReleaseStatus | None = None
    moved: bool = False  # phase or step changed, or the cluster was acted on: look again soon


def reconcile(
    cluster: Cluster,
    metrics_for: Callable[[str], MetricsSource],
    namespace: str,
    name: str,
    now: datetime,
    gates: GateChecker | None = None,
    *,
    analyse: bool = True,
) -> Outcome | None:
    """Observe, decide, write status, act; None when the release is gone.

    With `analyse=False` no metric is measured even if an analysis is due:
    the pass only answers (the worker reserved for commands).
    """
    release = cluster.read_release(namespace, name)
    if release is None:
        return None
    if release["metadata"].get("deletionTimestamp"):
        _let_go(cluster, release)
        return None
    generation = int(release["metadata"].get("generation") or 1)
    status = CanaryReleaseStatus.model_validate(release.get("status") or {})
    try:
        spec = CanaryReleaseSpec.model_validate(release.get("spec") or {})
    except ValidationError as exc:
        new_status, actions = reject_spec(status, describe_validation_error(exc), generation, now)
        return _commit(cluster, release, None, status, new_status, actions)
    # A routed release carries the route finalizer: deleting it resets the route first,
    # as the canary Service the route sends to is deleted with the release.
    held = cluster.set_route_finalizer(release, spec.traffic_routing is not None)
    if held is None:
        return None
    release = held
    meta = release["metadata"]

    structlog.contextvars.bind_contextvars(
        release=f"{namespace}/{name}", tag=spec.release.tag, step=status.current_step_index
    )
    container = spec.release.container
    try:
        target = cluster.read_deployment(namespace, spec.target_ref.name, container)
        if target is not None:
            target = replace(target, autoscaler=cluster.read_autoscaler(namespace, target.name))
        canary = cluster.read_deployment(namespace, canary_name(spec.target_ref.name), container)
    except LookupError as exc:
        new_status, actions = reject_spec(status, str(exc), generation, now)
        return _commit(cluster, release, None, status, new_status, actions)
    pods = PodHealth()
    if canary is not None:
        pods = cluster.read_pods(namespace, name, "canary", canary.image)
    stable_pods = PodHealth()
    if target is not None and watching(status):
        stable_pods = cluster.read_pods(namespace, name, "stable", target.image)
    command = (meta.get("annotations") or {}).get(COMMAND_ANNOTATION)
    # A human's command or a spec change is answered at once: an analysis that
    # happens to be due waits for the next pass (about a second later), so an
    # `abort` never queues behind Prometheus queries, and a slow Prometheus
    # cannot hold it for minutes. One that arrives while the queries run
    # stops them at the next query (the watch has updated the cached release).
    answering = needs_answer(release, status) or not analyse

    def interrupted() -> bool:
        latest = cluster.read_release(namespace, name)
        return latest is None or (latest is not release and needs_answer(latest, status))

    def source_for(address: str) -> MetricsSource:
        return Interruptible(metrics_for(address), interrupted)

    measurements = None
    # Without a target nothing is decided, so nothing measured would be folded in.
    if (
        target is not None
        and spec.analysis is not None
        and not answering
        and analysis_due(spec, status, now)
    ):
        source = source_for(spec.analysis.prometheus.address)
        measurements = measure(source, spec, status, namespace=namespace, name=name, at=now)
        record_measurements(namespace, name, measurements, uid=meta.get("uid"))
    audit = None
    audit_config = spec.analysis.audit_log if spec.analysis is not None else None
    if measurements is not None and target is not None and audit_config is not None:
        audit = measure_audit_log(  # on the same schedule as the metrics
            cluster,
            spec,
            status,
            target=target,
            canary=canary,
            namespace=namespace,
            name=name,
            now=now,
        )
    after = None
    watch_address = spec.post_promotion_address()
    if watch_address is not None and target and not answering and watch_due(spec, status, now):
        after = measure_after_promotion(
            source_for(watch_address), spec, status, namespace=namespace, name=name, at=now
        )
    router, route = observe_route(cluster, release, spec, status) if target else (None, None)
    observed = Observed(
        target,
        canary,
        pods,
        measurements,
        command,
        generation,
        stable_pods=stable_pods,
        audit_log=audit,
        post_promotion=after,
        route=route,
        gates=observe_hooks(gates, spec, status, namespace, name),
    )
    new_status, actions = decide_checking_gates(
        spec,
        status,
        observed,
        now,
        lambda request: check_gates(gates, spec, namespace, name, request.tag, now),
    )
    return _commit(cluster, release, spec, status, new_status, actions, router)


def _let_go(cluster: Cluster, release: dict[str, Any]) -> None:
    """Deleted: put the route back on stable, then let the release (and its canary) go.

    A route that cannot be reset (gone, or another field manager's) is logged,
    not waited for: a deletion must not hang on it.
    """
    if ROUTE_FINALIZER not in (release["metadata"].get("finalizers") or []):
        return
    try:
        spec: CanaryReleaseSpec | None = CanaryReleaseSpec.model_validate(release.get("spec") or {})
    except ValidationError:
        spec = None
    if spec is not None and spec.traffic_routing is not None:
        apply_traffic(cluster.traffic_router(release, spec), ResetTraffic())
    cluster.set_route_finalizer(release, False)
    log.info("release deleted; its route is back on stable")


def needs_answer(release: Mapping[str, Any], status: CanaryReleaseStatus | None = None) -> bool:
    """A spec change or a human's command not yet answered: these go before analysis.

    Without `status`, the release's own (a watch event's body); one that does
    not parse is left to reconcile to report.
    """
    if status is None:
        try:
            status = CanaryReleaseStatus.model_validate(release.get("status") or {})
        except ValidationError:
            return False
    meta = release.get("metadata") or {}
    generation = int(meta.get("generation") or 1)
    command = (meta.get("annotations") or {}).get(COMMAND_ANNOTATION)
    return generation != status.observed_generation or command_pending(command, status)


def _commit(
    cluster: Cluster,
    release: dict[str, Any],
    spec: CanaryReleaseSpec | None,
    old: CanaryReleaseStatus,
    new: CanaryReleaseStatus,
    actions: list[Action],
    router: TrafficRouter | None = None,
) -> Outcome:
    meta = release["metadata"]
    new = outbox.stage(release, new, (a for a in actions if isinstance(a, RecordEvent)))
    changed = new != old
    if changed:
        cluster.write_status(meta["namespace"], meta["name"], meta["resourceVersion"], new)
    record_status(meta["namespace"], meta["name"], old, new, meta.get("uid"))
    if new.phase != old.phase:
        log.info("phase changed", old=old.phase, new=new.phase, reason=new.reason)
    outbox.deliver(cluster, release, spec, new)  # Events first: a failed action keeps them
    for action in actions:
        log.info("action", action=type(action).__name__, detail=repr(action))
        if isinstance(action, RecordEvent):
            continue  # in the outbox, sent above
        elif isinstance(action, CheckGates):
            continue  # answered before deciding again; never reaches the cluster
        elif isinstance(action, TrafficAction):
            apply_traffic(router, action)
        elif spec is not None:
            cluster.apply(release, spec, action)
    moved = (
        (new.phase, new.current_step_index) != (old.phase, old.current_step_index)
        # housekeeping needs no pass to follow it; a refused one would repeat every second
        or any(not isinstance(a, RecordEvent | DeleteHookJob) for a in actions)
        or outbox.retrying(release, new)  # an Event to record again soon
    )
    return Outcome(new.phase, tuple(actions), changed, spec, new, moved)
