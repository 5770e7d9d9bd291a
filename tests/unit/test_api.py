"""The spec models: the rules users meet in `kubectl apply`, `canaryctl lint` and status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from controller.api.durations import format_duration, parse_duration
from controller.api.spec import CanaryReleaseSpec
from tests.unit.world import make_spec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("24h", 86400), ("1d", 86400), ("250ms", 0.25)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "-1h", "1w"])
def test_malformed_durations_are_refused_with_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    assert format_duration(timedelta(hours=23, minutes=5, seconds=7)) == "23h5m7s"
    assert parse_duration(format_duration(timedelta(seconds=5400))) == timedelta(seconds=5400)


def test_default_steps_follow_the_checklist() -> None:
    spec = make_spec(steps=None)
    assert [(s.set_weight, s.pause and s.pause.duration) for s in spec.steps] == [
        (10, None),
        (None, "24h"),
        (100, None),
    ]


def _base() -> dict[str, object]:
    return {"targetRef": {"name": "app"}, "release": {"tag": "v1", "image": "r/app:{tag}"}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"steps": [{"scale": 3}]}, "Extra inputs are not permitted"),
        ({"steps": [{"setWeight": 10, "pause": {}}]}, "exactly one of setWeight or pause"),
        ({"steps": [{"setWeight": 120}]}, "less than or equal to 100"),
        ({"steps": [{"pause": {"duration": "10 minutes"}}]}, "should match pattern"),
        ({"steps": [{"setWeight": 50}, {"setWeight": 10}]}, "must not decrease"),
        ({"release": {"tag": "v1", "image": "r/app:latest"}}, "should match pattern"),
    ],
)
def test_invalid_specs_name_the_problem(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CanaryReleaseSpec.model_validate({**_base(), **patch})


def test_metric_needs_a_rule_and_unique_names() -> None:
    analysis = {
        "prometheus": {"address": "http://p:9090"},
        "metrics": [{"name": "a", "query": "up"}],
    }
    with pytest.raises(ValidationError, match="needs a threshold or a compare rule"):
        CanaryReleaseSpec.model_validate({**_base(), "analysis": analysis})
    twice = {"name": "a", "query": "up", "threshold": {"max": 1}}
    analysis["metrics"] = [twice, twice]
    with pytest.raises(ValidationError, match="unique, repeated: a"):
        CanaryReleaseSpec.model_validate({**_base(), "analysis": analysis})
