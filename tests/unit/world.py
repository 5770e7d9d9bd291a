"""The in-memory cluster of controller/replay, with metric values as functions of time.

`World` is `controller.replay.world.SimulatedWorld` whose Prometheus answers
each rendered query with `metric(promql, track, now)`: tests state a value per
track instead of recording counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from controller.adapters.ports import MetricsSource
from controller.api.spec import CanaryReleaseSpec
from controller.engine.actions import Action
from controller.engine.observations import Observed
from controller.replay.world import Pod, SimDeployment, SimulatedWorld

__all__ = [
    "Pod",
    "SimDeployment",
    "World",
    "breaking_at",
    "healthy",
    "make_spec",
    "metric_for",
    "run_ticks",
]

MetricFn = Callable[[str, str, datetime], float | None]


@dataclass
class _TrackSource:
    """A MetricsSource answering by the track the rendered query selects."""

    metric: MetricFn

    def query(self, promql: str, at: datetime) -> float | None:
        track = "canary" if 'track="canary"' in promql else "stable"
        return self.metric(promql, track, at)

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        value = self.query(promql, at)
        return [] if value is None else [({}, value)]


@dataclass(kw_only=True)
class World(SimulatedWorld):
    """`hpa`, when set, is a HorizontalPodAutoscaler on the target: the size it sets at
    each moment. It wins every sync, as a real one does: whatever the controller
    wrote to stable's `replicas` is overwritten before the next observation."""

    metric: MetricFn
    hpa: Callable[[datetime], int] | None = None
    broken_tag: str | None = None
    """A tag whose pods never become Ready on stable: a build that fails only at full size."""

    def metrics_source(self) -> MetricsSource:
        return _TrackSource(self.metric)

    def apply(self, actions: list[Action]) -> None:
        super().apply(actions)
        if self.broken_tag is not None:
            broken = self.stable.image.endswith(f":{self.broken_tag}")
            self.stable.ready_delay = timedelta(days=365) if broken else self.ready_delay

    def observe(self, now: datetime) -> Observed:
        if self.hpa is None:
            return super().observe(now)
        self.stable.replicas = self.hpa(now)
        observed = super().observe(now)
        assert observed.target is not None
        return replace(observed, target=replace(observed.target, autoscaler="app-hpa"))


class OldTimeoutWorld(World):
    """Stable's Deployment still reports a timeout from an earlier rollout, as Kubernetes
    keeps one until a rollout progresses again."""

    def observe(self, now: datetime) -> Observed:
        observed = super().observe(now)
        assert observed.target is not None
        stale = replace(observed.target, stalled="an earlier rollout timed out")
        return replace(observed, target=stale)


def make_spec(
    *,
    steps: list[dict[str, object]] | None = None,
    interval: str = "1m",
    threshold_max: float | None = 0.05,
    max_ratio: float | None = 2.0,
    no_data: str = "hold",
    tag: str | None = "v2",
    analysis: bool = True,
) -> CanaryReleaseSpec:
    metric: dict[str, object] = {
        "name": "error-rate",
        "query": 'sum(rate(errors{track="{{track}}"}[{{window}}]))',
    }
    if threshold_max is not None:
        metric["threshold"] = {"max": threshold_max}
    if max_ratio is not None:
        metric["compare"] = {"maxRatio": max_ratio}
    raw: dict[str, object] = {
        "targetRef": {"name": "app"},
        "release": {"tag": tag, "image": "registry.example.com/app:{tag}"},
    }
    if steps is not None:
        raw["steps"] = steps
    if analysis:
        raw["analysis"] = {
            "interval": interval,
            "prometheus": {"address": "http://prometheus:9090"},
            "metrics": [metric],
            "noData": no_data,
        }
    return CanaryReleaseSpec.model_validate(raw)


def healthy(_: str, track: str, __: datetime) -> float | None:
    return 0.01


def breaking_at(when: datetime, value: float = 0.2) -> MetricFn:
    def metric(_: str, track: str, now: datetime) -> float | None:
        return value if track == "canary" and now >= when else 0.01

    return metric


def metric_for(breach_minute: object, start: datetime) -> MetricFn:
    """A property-test plan's metric: healthy, or breaking `breach_minute` minutes in."""
    if breach_minute is None:
        return healthy
    assert isinstance(breach_minute, int)
    return breaking_at(start + timedelta(minutes=breach_minute))


def run_ticks(
    world: SimulatedWorld, span: timedelta, tick: object, lost_ticks: object = frozenset()
) -> None:
    """Tick `world` every `tick` for `span`, losing the actions of the ticks in `lost_ticks`."""
    assert isinstance(tick, timedelta) and isinstance(lost_ticks, set | frozenset)
    now, index = world.start, 0
    while now <= world.start + span:
        world.tick(now, lose_actions=index in lost_ticks)
        now += tick
        index += 1
