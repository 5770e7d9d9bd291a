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


def test_a_release_held_at_its_last_step_says_what_holds_the_promotion() -> None:
    last = {**PAUSED, "currentStepIndex": 2, "reason": "AwaitingAnalysis"}
    step = status_view(_release(last), NOW)["step"]
    assert step["description"] == "setWeight 100"
    assert step["waitingFor"].startswith("every metric to pass before promotion")
    window = {
        **last,
        "reason": "OutsideDeployWindow",
        "gates": {"notBefore": _at(timedelta(hours=2))},
    }
    step = status_view(_release(window), NOW)["step"]
    assert step["waitingFor"].startswith(f"the promote window to open at {_at(timedelta(hours=2))}")


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
    assert "spec.steps.0.setWeight" in view["specProblem"]
    assert f"the spec is invalid: {view['specProblem']}" in _render(view)


def test_list_row() -> None:
    row = list_row(_release(PAUSED), NOW)
    assert row["step"] == "2/3" and row["secondsLeft"] == 2400 and row["canaryTag"] == "v2"


def test_sequential_evidence_says_how_close_each_test_is_to_deciding() -> None:
    evidence = {
        "windowStart": _at(-timedelta(minutes=20)),
        "countedAt": _at(-timedelta(seconds=20)),
        "countedCanary": {"events": 57, "total": 1200},
        "expectedCanaryEvents": 26.6,
        "looks": 40,
        "tests": [
            {"test": "worse", "eValue": 41.3, "needed": 600},
            {"test": "notWorse", "eValue": 0.034, "needed": 100},
        ],
    }
    metric = {**PAUSED["metrics"][0], "verdict": "inconclusive", "evidence": evidence}
    view = status_view(_release({**PAUSED, "metrics": [metric]}), NOW)
    shown = view["metrics"][0]["evidence"]
    assert shown["progress"] == "worse 41/600 · not worse 0.034/100"
    assert (shown["canaryEvents"], shown["expectedCanaryEvents"], shown["looks"]) == (57, 26.6, 40)
    text = _render(view)
    assert "evidence (e-value/needed)" in text and "worse 41/600" in text
    # a release judged by thresholds only has no evidence column
    assert "evidence" not in _render(status_view(_release(PAUSED), NOW))


AUDIT = {
    "verdict": "fail",
    "reason": "audit log: 1 anomalous action: permission.grant 14 vs 1.2 expected",
    "comparison": "seasonal",
    "measuredAt": _at(-timedelta(seconds=30)),
    "windowStart": _at(-timedelta(hours=2)),
    "baselineDays": 7,
    "actionsTested": 12,
    "anomalies": [
        {
            "action": "permission.grant",
            "kind": "rise",
            "count": 14,
            "expected": 1.2,
            "ratio": 11.7,
            "pValue": 2e-7,
            "sensitive": True,
            "actors": 3,
        },
        {"action": "export.all", "kind": "new", "count": 4, "expected": 0},
    ],
}


def test_audit_log_anomalies_name_the_action_with_seen_against_expected() -> None:
    assert status_view(_release(PAUSED), NOW)["auditLog"] is None
    view = status_view(_release({**PAUSED, "auditLog": AUDIT}), NOW)
    audit = view["auditLog"]
    assert (audit["verdict"], audit["comparison"]) == ("fail", "seasonal")
    assert audit["actionsTested"] == 12
    assert [a["action"] for a in audit["anomalies"]] == ["permission.grant", "export.all"]
    assert audit["anomalies"][0]["expected"] == 1.2 and audit["anomalies"][1]["kind"] == "new"
    text = _render(view)
    assert "audit-log anomalies" in text and "permission.grant (sensitive)" in text
    assert "export.all" in text and "seasonal, 12 actions tested, baseline 7 days" in text
    json.dumps(view)


def test_the_watch_after_promotion_shows_time_left_and_its_metrics() -> None:
    post = {
        "duration": "1h",
        "metrics": [
            {"name": "pool-usage", "query": 'u{track="{{track}}"}', "threshold": {"max": 0.8}}
        ],
    }
    status = {
        "phase": "Succeeded",
        "stableTag": "v2",
        "previousStableTag": "v1",
        "postPromotion": {
            "state": "Watching",
            "startedAt": _at(-timedelta(minutes=15)),
            "until": _at(timedelta(minutes=45)),
            "metrics": [
                {
                    "name": "pool-usage",
                    "canaryValue": 0.42,
                    "verdict": "pass",
                    "reason": "0.42 within max 0.8",
                    "measuredAt": _at(-timedelta(seconds=10)),
                }
            ],
        },
    }
    view = status_view(_release(status, postPromotion=post), NOW)
    watch = view["postPromotion"]
    assert (watch["state"], watch["secondsLeft"]) == ("Watching", 45 * 60)
    assert watch["metrics"][0]["bound"] == "<= 0.8" and watch["metrics"][0]["canary"] == 0.42
    text = _render(view)
    assert "after promotion Watching" in text and "45m left" in text
    assert "metrics after promotion" in text and "pool-usage" in text
    ended = {**status["postPromotion"], "state": "Passed"}  # type: ignore[dict-item]
    done = status_view(_release({**status, "postPromotion": ended}, postPromotion=post), NOW)
    assert done["postPromotion"]["secondsLeft"] is None


def _render(view: dict[str, Any]) -> str:
    out = io.StringIO()
    rendering.print_to(out, rendering.status_panel(view))
    return out.getvalue()


def test_a_frozen_release_is_not_said_to_be_paused_by_a_human_and_names_real_commands() -> None:
    since = _at(-timedelta(minutes=1))
    frozen = {
        **PAUSED,
        "reason": "Frozen",
        "pausedAt": since,  # the freeze holds the step through the same flag
        "gates": {"freeze": {"reason": "MetricBreach", "message": "canary 0.4", "since": since}},
    }
    view = status_view(_release(frozen, breachPolicy="freeze"), NOW)
    assert view["step"]["waitingFor"].startswith("a human: frozen")
    text = _render(view)
    assert "paused by a human" not in text
    assert "promote-full" not in text  # not a canaryctl command: `promote --full` is
    assert "promote --full" in text
