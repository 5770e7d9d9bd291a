"""The CanaryRelease spec: the public API users write.

These models are the single source of truth: the CRD's OpenAPI schema is
generated from them (see crd.py), so validation in the apiserver, in
`canaryctl lint` and in the controller is one set of rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from controller.api.base import SpecModel
from controller.api.durations import DURATION_PATTERN, parse_duration

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
Name = Annotated[str, Field(min_length=1, max_length=253)]

GROUP = "canary.dev"
VERSION = "v1alpha1"
KIND = "CanaryRelease"
PLURAL = "canaryreleases"


def _with_cel(rule: str, message: str) -> ConfigDict:
    """Model config carrying a CEL rule that spans fields, enforced by the apiserver."""
    extra: dict[str, Any] = {"x-kubernetes-validations": [{"rule": rule, "message": message}]}
    return ConfigDict(**SpecModel.model_config, json_schema_extra=extra)


class TargetRef(SpecModel):
    """The workload whose rollout the controller steers; only Deployments for now."""

    kind: Literal["Deployment"] = "Deployment"
    name: Name


class Release(SpecModel):
    """What to roll out. Changing `tag` starts a new canary."""

    tag: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
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

    max_ratio: float = Field(gt=0, description="fail when canary > stable * maxRatio")


class Metric(SpecModel):
    """A PromQL query with placeholders, evaluated once per track.

    Placeholders: {{track}} (canary or stable), {{namespace}}, {{name}} (the
    CanaryRelease), {{target}} (the Deployment), {{window}} (time since the
    current step started, as a PromQL range such as 300s), {{interval}}.
    """

    model_config = _with_cel(
        "has(self.threshold) || has(self.compare)", "a metric needs a threshold or a compare rule"
    )

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    query: str = Field(min_length=1, max_length=4096)
    threshold: Threshold | None = None
    compare: Compare | None = None

    @model_validator(mode="after")
    def _has_rule(self) -> Metric:
        if self.threshold is None and self.compare is None:
            raise ValueError(f"metric {self.name!r} needs a threshold or a compare rule")
        return self


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


class HealthCheck(SpecModel):
    """The built-in breach: a canary that crash-loops or never becomes Ready."""

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

    @model_validator(mode="after")
    def _weights_rise(self) -> CanaryReleaseSpec:
        weights = [s.set_weight for s in self.steps if s.set_weight is not None]
        if weights != sorted(weights):
            raise ValueError(f"setWeight steps must not decrease, got {weights}")
        return self
