"""What `canaryctl status` and `list` compute from a CanaryRelease, and how it reads."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.cli import rendering
from controller.cli.views import list_row, sparkline, status_view

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def _release(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = {
        "targetRef": {"name": "payments"},
        "release": {"tag": "v2", "image": "registry.example.com/payments:{tag}"},
        "steps": [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}],
        "analysis": {
            "prometheus": {"address": "http://prometheus:9090"},
            "metrics": [
                {
                    "name": "error-rate",
                    "query": 'sum(rate(e{track="{{track}}"}[5m]))',
                    "threshold": {"max": 0.05},
                    "compare": {"maxRatio": 3},
                },
                {
                    "name": "p99",
                    "query": 'q{track="{{track}}"}',
                    "threshold": {"min": 0, "max": 0.5},
                },
            ],
        },
        **spec,
    }
    return {"metadata": {"namespace": "shop", "name": "payments"}, "spec": body, "status": status}


def _at(delta: timedelta) -> str:
    return (NOW + delta).isoformat()


PAUSED = {
    "phase": "Paused",
    "stableTag": "v1",
    "canaryTag": "v2",
    "canaryWeight": 10,
    "currentStepIndex": 1,
    "stepStartedAt": _at(-timedelta(minutes=20)),
    "nextAnalysisAt": _at(timedelta(seconds=40)),
    "metrics": [
        {
            "name": "error-rate",
            "canaryValue": 0.012,
            "stableValue": 0.01,
            "verdict": "pass",
            "reason": "canary 0.012 within max 0.05",
            "measuredAt": _at(-timedelta(seconds=20)),
            "trend": [0.01, 0.011, 0.012, 0.02],
        }
    ],
}


def test_sparkline_spans_min_to_max() -> None:
    assert sparkline([1, 2, 3, 8]) == "▁▂▃█"
    assert sparkline([5, 5]) == "▄▄" and sparkline([]) == ""


def test_status_shows_step_time_left_and_next_analysis() -> None:
    view = status_view(_release(PAUSED), NOW)
    assert view["phase"] == "Paused" and view["weight"] == 10
    step = view["step"]
    assert (step["number"], step["of"], step["description"]) == (2, 3, "pause 1h")
    assert step["secondsLeft"] == 40 * 60
    assert view["nextAnalysisInSeconds"] == 40


def test_time_left_stops_while_paused_by_a_human() -> None:
    status = {**PAUSED, "pausedAt": _at(-timedelta(minutes=15))}
    step = status_view(_release(status), NOW)["step"]
    assert step["secondsLeft"] == 55 * 60 and "canaryctl resume" in step["waitingFor"]


def test_every_metric_with_its_bound_latest_values_and_trend() -> None:
    metrics = status_view(_release(PAUSED), NOW)["metrics"]
    first, second = metrics
    assert first["bound"] == "<= 0.05; <= 3x stable"
    assert (first["canary"], first["stable"], first["verdict"]) == (0.012, 0.01, "pass")
    assert first["sparkline"] == "▁▂▂█"
    assert second["bound"] == "0..0.5" and second["reason"] == "not measured yet"


def test_a_rollback_says_exactly_why() -> None:
    status = {
        "phase": "RolledBack",
        "stableTag": "v1",
        "canaryTag": "v2",
        "reason": "MetricBreach",
        "message": "metric error-rate: canary 0.4 > max 0.05 (query: ...)",
        "history": [
            {
                "tag": "v2",
                "outcome": "RolledBack",
                "reason": "MetricBreach: ...",
                "finishedAt": _at(timedelta(0)),
            }
        ],
    }
    view = status_view(_release(status), NOW)
    assert view["rollback"]["reason"] == "MetricBreach"
    assert "canary 0.4 > max 0.05" in view["rollback"]["message"]
    text = _render(view)
    assert "why it rolled back" in text and "MetricBreach" in text
    assert "canary 0.4 > max 0.05" in text


def test_gates_absent_and_present() -> None:
    assert status_view(_release(PAUSED), NOW)["gates"] is None
    status = {
        **PAUSED,
        "phase": "Blocked",
        "gates": {
            "tag": "v2",
            "results": [
                {
                    "gate": "schema",
                    "verdict": "fail",
                    "reason": "MissingColumn",
                    "message": "security_keys.key_hash is missing",
                    "evidence": ["ALTER TABLE security_keys ADD COLUMN key_hash"],
                    "since": _at(timedelta(0)),
                }
            ],
            "futureField": {"ignored": True},
        },
    }
    view = status_view(_release(status), NOW)
    assert view["gates"]["results"][0]["gate"] == "schema"
    text = _render(view)
    assert "security_keys.key_hash is missing" in text and "fail" in text


def test_status_renders_the_at_a_glance_facts() -> None:
    text = _render(status_view(_release(PAUSED), NOW))
    for fact in ("Paused", "2/3: pause 1h", "time left", "40m", "error-rate", "<= 0.05", "▁▂▂█"):
        assert fact in text, fact
    assert all(line == line.rstrip() for line in text.splitlines())


def test_status_view_is_json_serialisable() -> None:
    json.dumps(status_view(_release(PAUSED), NOW))


def test_an_invalid_spec_still_shows_the_status() -> None:
    release = _release(PAUSED, steps=[{"setWeight": 120}])
    view = status_view(release, NOW)
    assert view["specValid"] is False and view["step"] is None and view["phase"] == "Paused"


def test_list_row() -> None:
    row = list_row(_release(PAUSED), NOW)
    assert row["step"] == "2/3" and row["secondsLeft"] == 2400 and row["canaryTag"] == "v2"


def _render(view: dict[str, Any]) -> str:
    out = io.StringIO()
    rendering.print_to(out, rendering.status_panel(view))
    return out.getvalue()
