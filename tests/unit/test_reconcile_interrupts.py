"""runtime.reconcile with in-memory adapters: an analysis gives way to a command mid-flight.

The release "changes" between two queries as the watch-fed cache would:
the source edits the stored release while answering its first query.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.adapters.kubernetes import COMMAND_ANNOTATION
from controller.api.gates import GatesStatus, HookRun
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import Action, DeleteHookJob, RecordEvent
from controller.engine.gate_observations import JobView
from controller.engine.observations import DeploymentView, PodHealth
from controller.engine.wakeup import next_wakeup
from controller.runtime.gate_checks import GateChecker
from controller.runtime.measuring import AnalysisInterrupted
from controller.runtime.reconcile import reconcile

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
IMAGE = "registry.example.com/payments:{}"


def _release() -> dict[str, Any]:
    status = CanaryReleaseStatus(
        phase="Paused",
        stable_tag="v1",
        stable_image=IMAGE.format("v1"),
        canary_tag="v2",
        current_step_index=1,
        canary_weight=50,
        target_replicas=4,
        release_started_at=NOW - timedelta(minutes=5),
        step_started_at=NOW - timedelta(minutes=4),
        next_analysis_at=NOW - timedelta(seconds=1),
        observed_generation=1,
    )
    metric = {"name": "error-rate", "query": "errors{track='{{track}}'}", "threshold": {"max": 1}}
    spec = {
        "targetRef": {"name": "payments"},
        "release": {"tag": "v2", "image": IMAGE.format("{tag}")},
        "steps": [{"setWeight": 50}, {"pause": {"duration": "30m"}}],
        "analysis": {
            "interval": "30s",
            "prometheus": {"address": "http://prometheus:9090"},
            "metrics": [metric, {**metric, "name": "error-rate-again"}],
        },
    }
    return {
        "metadata": {
            "namespace": "shop",
            "name": "payments",
            "generation": 1,
            "resourceVersion": "7",
            "annotations": {},
        },
        "spec": CanaryReleaseSpec.model_validate(spec).model_dump(by_alias=True, mode="json"),
        "status": status.model_dump(by_alias=True, mode="json", exclude_none=True),
    }


class Cluster:
    def __init__(self) -> None:
        self.release: dict[str, Any] | None = _release()
        self.written: list[CanaryReleaseStatus] = []
        self.applied: list[Action] = []

    def read_release(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.release

    def read_deployment(self, namespace: str, name: str, container: str | None) -> DeploymentView:
        tag, replicas = ("v2", 2) if name.endswith("-canary") else ("v1", 4)
        return DeploymentView(name, replicas, IMAGE.format(tag), replicas, replicas, replicas)

    def read_pods(self, namespace: str, release: str, track: str, image: str) -> PodHealth:
        return PodHealth()

    def read_autoscaler(self, namespace: str, deployment: str) -> str | None:
        return None

    def write_status(self, namespace: str, name: str, version: str, status: Any) -> None:
        self.written.append(status)

    def apply(self, release: dict[str, Any], spec: Any, action: Action) -> None:
        self.applied.append(action)

    def set_route_finalizer(self, release: dict[str, Any], present: bool) -> dict[str, Any]:
        assert not present  # no release here routes traffic
        return release

    def record_event(
        self, release: dict[str, Any], event: RecordEvent, key: str | None = None
    ) -> None:
        pass


class Source:
    """Answers every query; `on_first` runs while the first one is in flight."""

    def __init__(self, on_first: Any = None) -> None:
        self.sent: list[str] = []
        self.on_first = on_first

    def query(self, promql: str, at: datetime) -> float | None:
        self.sent.append(promql)
        if len(self.sent) == 1 and self.on_first is not None:
            self.on_first()
        return 0.0

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        raise AssertionError("no latency metric here")


def _changed(cluster: Cluster, **meta: Any) -> None:
    assert cluster.release is not None
    updated = copy.deepcopy(cluster.release)
    for key, value in meta.items():
        updated["metadata"][key] = value
    cluster.release = updated  # a new object, as the watch stores it


def _run(cluster: Cluster, source: Source) -> Any:
    return reconcile(cluster, lambda _: source, "shop", "payments", NOW)  # type: ignore[arg-type]


def test_an_analysis_with_nothing_new_runs_every_query() -> None:
    cluster, source = Cluster(), Source()
    _run(cluster, source)
    assert len(source.sent) == 4  # two metrics, both tracks


@pytest.mark.parametrize(
    "change",
    [
        {"annotations": {COMMAND_ANNOTATION: "abort"}},
        {"generation": 2},  # a spec change
    ],
)
def test_a_command_or_spec_change_mid_analysis_stops_it_then_is_answered(
    change: dict[str, Any],
) -> None:
    cluster = Cluster()
    source = Source(on_first=lambda: _changed(cluster, **change))
    with pytest.raises(AnalysisInterrupted):
        _run(cluster, source)
    assert len(source.sent) == 1 and cluster.written == []  # nothing decided on half an analysis
    again = Source()
    outcome = _run(cluster, again)
    assert again.sent == []  # answering first: no query at all
    assert outcome is not None and outcome.wrote_status
    if "annotations" in change:
        assert outcome.status.last_command == "abort"
        assert outcome.status.reason == "Aborted"
    else:
        assert outcome.status.observed_generation == 2


def test_a_release_deleted_mid_analysis_stops_it() -> None:
    cluster = Cluster()

    def delete() -> None:
        cluster.release = None

    source = Source(on_first=delete)
    with pytest.raises(AnalysisInterrupted):
        _run(cluster, source)
    assert _run(cluster, Source()) is None


def test_the_reserved_workers_pass_answers_only_and_never_queries() -> None:
    cluster, source = Cluster(), Source()
    outcome = reconcile(cluster, lambda _: source, "shop", "payments", NOW, analyse=False)  # type: ignore[arg-type]
    assert source.sent == []  # the analysis is due, but left to an ordinary worker
    assert outcome is not None and outcome.status is not None
    assert outcome.status.next_analysis_at is not None
    assert outcome.status.next_analysis_at <= NOW  # still due: the next pass analyses


class _TargetGone(Cluster):
    def read_deployment(
        self, namespace: str, name: str, container: str | None
    ) -> DeploymentView | None:
        return None if name == "payments" else super().read_deployment(namespace, name, container)


def test_a_missing_target_is_not_measured_and_not_woken_every_second() -> None:
    """An analysis due while the Deployment is gone is not folded in: it would be due forever."""
    cluster, source = _TargetGone(), Source()
    outcome = _run(cluster, source)
    assert source.sent == []
    assert outcome is not None and outcome.status is not None and outcome.spec is not None
    assert outcome.status.phase == "Paused"  # held, not Failed (see test_engine)
    due = next_wakeup(
        outcome.spec, outcome.status, NOW, poll=timedelta(seconds=10), resync=timedelta(minutes=5)
    )
    assert due == NOW + timedelta(minutes=5)  # not the overdue analysis, i.e. at once


class _Jobs:
    """The hook Jobs of the release: one still running, one of a past tag long finished."""

    def hook_jobs(self, namespace: str, release: str) -> tuple[JobView, ...]:
        return (
            JobView("payments-post-promotion-run", "Running", NOW - timedelta(minutes=1), tag="v2"),
            JobView("payments-pre-rollout-old", "Succeeded", NOW - timedelta(days=3), tag="v1"),
        )


class _Settled(Cluster):
    """Stable already down to its share at 50%: the step asks for no scaling."""

    def read_deployment(self, namespace: str, name: str, container: str | None) -> DeploymentView:
        view = super().read_deployment(namespace, name, container)
        return view if name.endswith("-canary") else DeploymentView(name, 2, view.image, 2, 2, 2)


def test_deleting_an_old_hook_job_does_not_ask_for_another_pass_soon() -> None:
    """A refused deletion (a Role without `delete` on Jobs) would otherwise repeat every second."""
    cluster = _Settled()
    assert cluster.release is not None
    hook = {"job": {"template": {"spec": {"containers": [{"name": "h", "image": "tools:1"}]}}}}
    cluster.release["spec"]["hooks"] = {"postPromotion": hook}
    run = HookRun(
        hook="postPromotion",
        tag="v2",
        job="payments-post-promotion-run",
        state="Running",
        started_at=NOW - timedelta(minutes=1),
    )
    gates = GatesStatus(hooks=[run]).model_dump(by_alias=True, mode="json", exclude_none=True)
    cluster.release["status"]["gates"] = gates
    outcome = reconcile(
        cluster,  # type: ignore[arg-type]
        lambda _: Source(),  # type: ignore[arg-type,return-value]
        "shop",
        "payments",
        NOW,
        GateChecker(_Jobs()),  # type: ignore[arg-type]
        analyse=False,
    )
    assert outcome is not None and cluster.applied == [DeleteHookJob("payments-pre-rollout-old")]
    assert not outcome.moved
