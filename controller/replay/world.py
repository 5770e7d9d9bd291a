"""An in-memory cluster for driving the real engine over simulated time.

Replay runs a CanaryRelease against recorded metrics, and the unit tests run
the engine over simulated timelines; both need the same stand-in for
Kubernetes. It models what matters for the engine's promises: pods that
become Ready after a delay, Deployments that roll honouring
maxUnavailable/maxSurge, and serving capacity as the count of Ready pods.
Metrics come from any `MetricsSource`: a real Prometheus for replay, a
function of time in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.adapters.ports import MetricsSource
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import (
    Action,
    CheckGates,
    DeleteCanary,
    RecordEvent,
    ScaleCanary,
    ScaleStable,
    UpdateStable,
)
from controller.engine.analysis import analysis_due
from controller.engine.decide import decide_checking_gates
from controller.engine.gate_observations import GateObservations
from controller.engine.observations import (
    KUBERNETES_PROGRESS_DEADLINE_S,
    DeploymentView,
    Observed,
    PodHealth,
)
from controller.engine.watching import watching
from controller.gates.checks import GateCheck
from controller.runtime.measuring import measure


def _count(value: str, replicas: int, round_up: bool) -> int:
    if value.endswith("%"):
        raw = replicas * float(value[:-1]) / 100
        return math.ceil(raw) if round_up else math.floor(raw)
    return int(value)


@dataclass
class Pod:
    image: str
    ready_at: datetime

    def ready(self, now: datetime) -> bool:
        return now >= self.ready_at


@dataclass
class SimDeployment:
    name: str
    replicas: int
    image: str
    ready_delay: timedelta
    max_unavailable: str | None = "25%"
    max_surge: str | None = "25%"
    pods: list[Pod] = field(default_factory=list)
    progress_deadline: timedelta | None = None
    """`progressDeadlineSeconds`: a rollout without progress this long reports a stall."""
    replicas_set_by: str | None = None
    """Who else last set `replicas` (`kubectl scale`); the controller's writes clear it."""
    _progress: tuple[str, int, datetime] | None = field(default=None, init=False, repr=False)
    """(image, its Ready pods, when that last changed): what the deadline is measured on."""

    def done(self, now: datetime) -> bool:
        new = [p for p in self.pods if p.image == self.image]
        return len(new) == len(self.pods) and sum(p.ready(now) for p in new) >= self.replicas

    def step(self, now: datetime) -> None:
        """One pass of a simplified Deployment controller."""
        self._step(now)
        ready_new = sum(p.ready(now) and p.image == self.image for p in self.pods)
        previous = self._progress
        if previous is None or previous[:2] != (self.image, ready_new) or self.done(now):
            self._progress = (self.image, ready_new, now)

    def _step(self, now: datetime) -> None:
        unavailable = _count(self.max_unavailable or "100%", self.replicas, round_up=False)
        surge = _count(self.max_surge or "0", self.replicas, round_up=True)
        if unavailable == 0 and surge == 0:
            surge = 1
        old = [p for p in self.pods if p.image != self.image]
        new = [p for p in self.pods if p.image == self.image]
        while len(self.pods) < self.replicas + (surge if old else 0) and len(new) < self.replicas:
            pod = Pod(self.image, now + self.ready_delay)
            self.pods.append(pod)
            new.append(pod)
        floor = self.replicas - unavailable
        for pod in sorted(old, key=lambda p: p.ready(now)):
            ready_total = sum(p.ready(now) for p in self.pods)
            if pod.ready(now) and ready_total - 1 < floor:
                break
            self.pods.remove(pod)
        if not [p for p in self.pods if p.image != self.image]:
            extra = len(self.pods) - self.replicas
            for pod in sorted(self.pods, key=lambda p: p.ready(now))[: max(0, extra)]:
                self.pods.remove(pod)

    def view(self, now: datetime) -> DeploymentView:
        ready = sum(p.ready(now) for p in self.pods)
        updated = sum(p.image == self.image for p in self.pods)
        return DeploymentView(
            name=self.name,
            replicas=self.replicas,
            image=self.image,
            ready_replicas=ready,
            available_replicas=ready,
            updated_replicas=updated,
            max_unavailable=self.max_unavailable,
            max_surge=self.max_surge,
            replicas_set_by=self.replicas_set_by,
            stalled=self._stalled(now),
            # every pod, old and new, as the Deployment's status.replicas counts them:
            # a rollout with old pods left is not done, however many are Ready
            status_replicas=len(self.pods),
            progress_deadline_s=int(self.progress_deadline.total_seconds())
            if self.progress_deadline is not None
            else KUBERNETES_PROGRESS_DEADLINE_S,
        )

    def _stalled(self, now: datetime) -> str | None:
        if self.progress_deadline is None or self._progress is None or self.done(now):
            return None
        image, _, since = self._progress
        if image != self.image or now - since < self.progress_deadline:
            return None
        return f'ReplicaSet "{self.name}" has timed out progressing.'


Tick = tuple[datetime, CanaryReleaseStatus, list[Action], int]
"""(when, status after deciding, actions, Ready pods serving)."""


@dataclass(kw_only=True)
class SimulatedWorld:
    """The target Deployment, its canary, and the release's status, advanced tick by tick.

    Subclasses say where metrics come from (`metrics_source`).
    """

    spec: CanaryReleaseSpec
    start: datetime
    replicas: int = 10
    ready_delay: timedelta = timedelta(seconds=20)
    stable_image: str = "registry.example.com/app:v1"
    crash_looping: bool = False
    crashes_as_stable: str | None = None
    """An image whose pods crash-loop once Ready as stable: fine at 10%, not under all traffic."""
    status: CanaryReleaseStatus = field(default_factory=CanaryReleaseStatus)
    stable: SimDeployment = field(init=False)
    canary: SimDeployment | None = None
    command: str | None = None
    namespace: str = "shop"
    name: str = "app"
    log: list[Tick] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stable = SimDeployment(
            self.spec.target_ref.name, self.replicas, self.stable_image, self.ready_delay
        )
        self.stable.pods = [Pod(self.stable_image, self.start) for _ in range(self.replicas)]

    def metrics_source(self) -> MetricsSource:
        raise NotImplementedError("a SimulatedWorld needs a metrics source")

    def capacity(self, now: datetime) -> int:
        pods = self.stable.pods + (self.canary.pods if self.canary else [])
        return sum(p.ready(now) for p in pods)

    def observe(self, now: datetime) -> Observed:
        measurements = None
        if analysis_due(self.spec, self.status, now):
            measurements = measure(
                self.metrics_source(),
                self.spec,
                self.status,
                namespace=self.namespace,
                name=self.name,
                at=now,
            )
        return Observed(
            target=self.stable.view(now),
            canary=self.canary.view(now) if self.canary else None,
            canary_pods=PodHealth(crash_looping=("app-canary-0",) if self.crash_looping else ()),
            measurements=measurements,
            command=self.command,
            # read only while watched, as the runtime does (reconcile.py)
            stable_pods=PodHealth(crash_looping=self._crashing_stable(now))
            if watching(self.status)
            else PodHealth(),
        )

    def _crashing_stable(self, now: datetime) -> tuple[str, ...]:
        pods = enumerate(self.stable.pods)
        return tuple(
            f"app-{i}" for i, pod in pods if pod.image == self.crashes_as_stable and pod.ready(now)
        )

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case ScaleCanary(image=image, replicas=replicas):
                    if self.canary is None:
                        name = f"{self.spec.target_ref.name}-canary"
                        self.canary = SimDeployment(
                            name, replicas, image, self.ready_delay, "0", "1"
                        )
                    self.canary.replicas, self.canary.image = replicas, image
                case ScaleStable(replicas=replicas):
                    self.stable.replicas, self.stable.replicas_set_by = replicas, None
                case UpdateStable():
                    if action.replicas is not None:
                        self.stable.replicas = action.replicas
                        self.stable.replicas_set_by = None
                    self.stable.image = action.image
                    if action.recreate:
                        self.stable.max_unavailable = self.stable.max_surge = None
                    elif action.max_unavailable is not None:
                        self.stable.max_unavailable = action.max_unavailable
                        self.stable.max_surge = action.max_surge
                case DeleteCanary():
                    self.canary = None
                case RecordEvent():
                    pass

    def gate_checks(self, tag: str, now: datetime) -> tuple[GateCheck, ...]:
        """The gates' verdicts for `tag`: none here, so only deploy windows (which the
        engine judges itself, from `now`) can hold a release."""
        return ()

    def tick(self, now: datetime, *, lose_actions: bool = False) -> list[Action]:
        """Observe, decide, (maybe crash before acting), then let the cluster move."""
        observed = self.observe(now)
        jobs = observed.gates.jobs if observed.gates is not None else None

        def check(request: CheckGates) -> GateObservations:
            checks = self.gate_checks(request.tag, now)
            return GateObservations(self.name, tag=request.tag, checks=checks, jobs=jobs)

        self.status, actions = decide_checking_gates(self.spec, self.status, observed, now, check)
        if not lose_actions:
            self.apply(actions)
        self.stable.step(now)
        if self.canary is not None:
            self.canary.step(now)
        self.log.append((now, self.status, actions, self.capacity(now)))
        return actions

    def run(self, until: timedelta, every: timedelta, **kwargs: bool) -> None:
        now = self.start
        while now <= self.start + until:
            self.tick(now, **kwargs)
            now += every
