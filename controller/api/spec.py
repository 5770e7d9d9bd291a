"""The CanaryRelease spec: the public API users write.

These models are the single source of truth: the CRD's OpenAPI schema is
generated from them (see crd.py), so validation in the apiserver, in
`canaryctl lint` and in the controller is one set of rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from controller.api.auditlog import AuditLog
from controller.api.base import SpecModel
from controller.api.durations import DURATION_PATTERN, parse_duration
from controller.api.gates import BreachPolicy, Gates, Hooks
from controller.api.notifications import Notifications
from controller.api.traffic import TrafficRouting

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
Name = Annotated[str, Field(min_length=1, max_length=253)]

GROUP = "canary.dev"
VERSION = "v1alpha1"
KIND = "CanaryRelease"
PLURAL = "canaryreleases"


def _with_cel(rule: str, message: str, *more: tuple[str, str]) -> ConfigDict:
    """Model config carrying CEL rules that span fields, enforced by the apiserver."""
    rules = [{"rule": r, "message": m} for r, m in ((rule, message), *more)]
    extra: dict[str, Any] = {"x-kubernetes-validations": rules}
    return ConfigDict(**SpecModel.model_config, json_schema_extra=extra)


class TargetRef(SpecModel):
    """The workload whose rollout the controller steers; only Deployments for now."""

    kind: Literal["Deployment"] = "Deployment"
    name: Name


# What a tag may be (an image tag; the CRD enforces it too).
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$"


class Release(SpecModel):
    """What to roll out. Changing `tag` starts a new canary."""

    tag: str | None = Field(default=None, max_length=128, pattern=TAG_PATTERN)
    image: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"\{tag\}",
        description="Image reference with a {tag} placeholder, e.g. registry.example.com/app:{tag}",
    )
    container: str | None = Field(default=None, max_length=63)

    def image_for(self, tag: str) -> str:
        return self.image.replace("{tag}", tag)


class PauseStep(SpecModel):
    """A pause without a duration waits for a human `promote`."""

    duration: Duration | None = None

    def length(self) -> timedelta | None:
        return parse_duration(self.duration) if self.duration else None


class Step(SpecModel):
    """One step of the canary; exactly one of the fields is set."""

    model_config = _with_cel(
        "has(self.setWeight) != has(self.pause)",
        "each step must set exactly one of setWeight or pause",
    )

    set_weight: int | None = Field(default=None, ge=0, le=100)
    pause: PauseStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("each step must set exactly one of setWeight or pause")
        return self


def default_steps() -> list[Step]:
    """The checklist's plan: 10% of the servers, watched for 24 hours, then everyone."""
    return [
        Step(set_weight=10),
        Step(pause=PauseStep(duration="24h")),
        Step(set_weight=100),
    ]


class Threshold(SpecModel):
    """Absolute bounds for the canary's value: both tracks can degrade together."""

    model_config = _with_cel("has(self.min) || has(self.max)", "threshold needs min or max")

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("threshold needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"threshold min {self.min} is above max {self.max}")
        return self


class Compare(SpecModel):
    """Canary against stable, measured over the same window."""

    max_ratio: float = Field(
        gt=0,
        description=(
            "query: fail when canary > stable * maxRatio. errors/latency: the effect that "
            "matters; fail once the canary is shown to be maxRatio x worse (must be > 1)"
        ),
    )


class Latency(SpecModel):
    """A Prometheus histogram per track, judged on its q-quantile (see docs/judge.md)."""

    buckets: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL returning one counter increase per `le` bucket for one track, e.g. "
            "sum by (le) (increase(http_request_duration_seconds_bucket"
            '{track="{{track}}"}[{{window}}]))'
        ),
    )
    quantile: float = Field(
        default=0.99,
        gt=0,
        lt=1,
        description=(
            "compare: fail when the canary's share of requests slower than the stable's "
            "quantile is maxRatio x the stable's; threshold.max bounds the canary's quantile"
        ),
    )


class Metric(SpecModel):
    """What to measure per track: a PromQL value, or counters for the sequential judge.

    `query` is evaluated once per track and compared as a value. `errors` with
    `requests`, or `latency`, are counter increases judged by the sequential
    test (docs/judge.md): valid however often it looks, immune to a daily
    traffic swing and to a single bad scrape.

    Placeholders: {{track}} (canary or stable), {{namespace}}, {{name}} (the
    CanaryRelease), {{target}} (the Deployment), {{window}} (time since the
    current step started, as a PromQL range such as 300s; for errors, requests
    and latency: since the release started, exactly), {{interval}}.
    """

    model_config = _with_cel(
        "has(self.threshold) || has(self.compare)",
        "a metric needs a threshold or a compare rule",
        (
            "[has(self.query), has(self.errors), has(self.latency)].filter(x, x).size() == 1",
            "a metric needs exactly one of query, errors (with requests) or latency",
        ),
        ("has(self.errors) == has(self.requests)", "errors and requests go together"),
    )

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    query: str | None = Field(default=None, min_length=1, max_length=4096)
    errors: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL: failed requests of one track over {{window}} (a counter increase)",
    )
    requests: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL: all requests of one track over {{window}} (a counter increase)",
    )
    latency: Latency | None = None
    threshold: Threshold | None = None
    compare: Compare | None = None

    @model_validator(mode="after")
    def _has_rule(self) -> Metric:
        if self.threshold is None and self.compare is None:
            raise ValueError(f"metric {self.name!r} needs a threshold or a compare rule")
        kinds = [k for k in ("query", "errors", "latency") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"metric {self.name!r} needs exactly one of query, errors (with requests) "
                f"or latency, got {', '.join(kinds) or 'none'}"
            )
        if (self.errors is None) != (self.requests is None):
            raise ValueError(f"metric {self.name!r}: errors and requests go together")
        if self.sequential and self.compare is not None and self.compare.max_ratio <= 1:
            raise ValueError(f"metric {self.name!r}: compare.maxRatio is an effect, must be > 1")
        if self.sequential and self.threshold is not None:
            if self.threshold.min is not None:
                raise ValueError(f"metric {self.name!r}: counters take threshold.max only")
            if self.errors is not None and not 0 < (self.threshold.max or 0) < 1:
                raise ValueError(f"metric {self.name!r}: threshold.max is an error ratio in (0, 1)")
            if self.latency is not None and (self.threshold.max or 0) <= 0:
                raise ValueError(f"metric {self.name!r}: threshold.max is a latency in seconds > 0")
        return self

    @property
    def sequential(self) -> bool:
        """Judged by the sequential test on counters rather than as a value."""
        return self.query is None

    def display_query(self) -> str:
        """The query that best names this metric in status and events."""
        if self.latency is not None:
            return self.latency.buckets
        return self.query or self.errors or ""

    def sequential_tests(self) -> int:
        """How many one-sided 'fail' tests share the release's false-alarm budget."""
        if not self.sequential:
            return 0
        return (self.compare is not None) + (self.threshold is not None)


class PrometheusRef(SpecModel):
    address: str = Field(pattern=r"^https?://", max_length=512)


class Analysis(SpecModel):
    """How the canary is judged while it runs."""

    interval: Duration = "5m"
    prometheus: PrometheusRef
    metrics: list[Metric] = Field(
        min_length=1,
        max_length=20,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    no_data: Literal["hold", "fail"] = Field(
        default="hold", description="hold: wait for data (never promote); fail: treat as a breach"
    )
    unreachable_deadline: Duration = Field(
        default="10m",
        description="how long Prometheus may be unreachable before a condition and an Event",
    )
    false_alarm_rate: float = Field(
        default=0.01,
        gt=0,
        le=0.2,
        description=(
            "chance that a release no worse than stable is rolled back by the sequential "
            "metrics (errors/latency), across all of them together, over the whole release"
        ),
    )
    on_inconclusive: Literal["hold", "promote", "rollback"] = Field(
        default="hold",
        description=(
            "at the end of the last step, when a sequential metric has not yet shown the "
            "canary is no worse: hold (wait for evidence or a human), promote, or rollback"
        ),
    )
    audit_log: AuditLog | None = Field(
        default=None, description="roll back on anomalies in the application's audit events"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Analysis:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique, repeated: {', '.join(dupes)}")
        return self

    def interval_length(self) -> timedelta:
        return parse_duration(self.interval)

    def unreachable_length(self) -> timedelta:
        return parse_duration(self.unreachable_deadline)


class PostPromotion(SpecModel):
    """Keep judging after full rollout; a breach rolls stable back to the previous image.

    Only absolute bounds: after promotion there is no other track to compare
    with. In the queries {{track}} is "stable" and {{window}} the time since
    the promotion. Stable's pods, which now run the promoted image, are held
    to spec.healthCheck's crash-loop and restart limits for the same duration.
    """

    duration: Duration = "1h"
    interval: Duration = "1m"
    prometheus: PrometheusRef | None = Field(
        default=None, description="defaults to spec.analysis.prometheus"
    )
    metrics: list[Metric] = Field(
        default_factory=list,
        max_length=20,
        description=(
            "absolute bounds to hold; with none, only stable's pod health (spec.healthCheck) "
            "is watched"
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _absolute_bounds(self) -> PostPromotion:
        for metric in self.metrics:
            if metric.query is None or metric.threshold is None or metric.compare is not None:
                raise ValueError(
                    f"postPromotion metric {metric.name!r} needs a query and a threshold, and no "
                    "compare rule: after promotion there is no other track to compare with"
                )
        return self

    def duration_length(self) -> timedelta:
        return parse_duration(self.duration)

    def interval_length(self) -> timedelta:
        return parse_duration(self.interval)


class HealthCheck(SpecModel):
    """The built-in breach: a canary that crash-loops or never becomes Ready.

    The crash-loop and restart limits also hold for stable's pods while a
    promotion is watched (spec.postPromotion).
    """

    ready_deadline: Duration = "10m"
    max_restarts: int = Field(default=3, ge=1, le=1000)

    def ready_length(self) -> timedelta:
        return parse_duration(self.ready_deadline)


class CanaryReleaseSpec(SpecModel):
    target_ref: TargetRef
    release: Release
    steps: list[Step] = Field(default_factory=default_steps, min_length=1, max_length=50)
    analysis: Analysis | None = None
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    traffic_routing: TrafficRouting | None = None
    post_promotion: PostPromotion | None = None
    gates: Gates | None = Field(
        default=None, description="checks that must pass before a release starts (see docs/crd.md)"
    )
    hooks: Hooks | None = None
    breach_policy: BreachPolicy = Field(
        default="rollback",
        description="rollback; or freeze: hold the canary at its weight and wait for a human "
        "(for releases whose migration cannot be reversed)",
    )
    notifications: Notifications

    @model_validator(mode="after")
    def _weights_rise(self) -> CanaryReleaseSpec:
        weights = [s.set_weight for s in self.steps if s.set_weight is not None]
        if weights != sorted(weights):
            raise ValueError(f"setWeight steps must not decrease, got {weights}")
        return self

    @model_validator(mode="after")
    def _watch_has_prometheus(self) -> CanaryReleaseSpec:
        watch = self.post_promotion
        if watch is not None and watch.metrics and self.post_promotion_address() is None:
            raise ValueError("postPromotion needs prometheus.address, or spec.analysis.prometheus")
        return self

    def post_promotion_address(self) -> str | None:
        """Where the watch after promotion queries: its own Prometheus, else the analysis'."""
        own = self.post_promotion.prometheus if self.post_promotion else None
        if own is not None:
            return own.address
        return self.analysis.prometheus.address if self.analysis else None
