"""Which Events become notifications, and what Slack and a JSON receiver get."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.api.notifications import Notifier
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import RecordEvent
from controller.runtime.notices import json_payload, kind_of, notice_for, slack_payload

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
RELEASE = {"metadata": {"namespace": "shop", "name": "payments"}}


@pytest.mark.parametrize(
    ("reason", "type_", "kind"),
    [
        ("ReleaseStarted", "Normal", "started"),
        ("StepAdvanced", "Normal", "step"),
        ("Promoting", "Normal", "promotion"),
        ("Promoted", "Normal", "promotion"),
        ("RolledBack", "Warning", "rollback"),
        ("Aborted", "Warning", "rollback"),
        ("RollingBack", "Warning", "rollback"),
        ("RollbackStalled", "Warning", "rollback"),
        ("Superseded", "Warning", "rollback"),
        ("ReleaseBlocked", "Warning", "gate"),
        ("Frozen", "Warning", "gate"),
        ("PrometheusUnreachable", "Warning", "warning"),
        ("Superseded", "Normal", None),
        ("Paused", "Normal", None),
        ("GatesPassed", "Normal", None),
    ],
)
def test_kind_of_event(reason: str, type_: str, kind: str | None) -> None:
    assert kind_of(RecordEvent(type_, reason, "m")) == kind  # type: ignore[arg-type]


def _notice():  # type: ignore[no-untyped-def]
    status = CanaryReleaseStatus(
        phase="RolledBack", stable_tag="v1", canary_tag="v2", canary_weight=0
    )
    event = RecordEvent(
        "Warning", "RolledBack", "MetricBreach: metric error-rate: canary 0.4 > max 0.05"
    )
    return notice_for(RELEASE, status, event, "rollback", NOW, steps=3)


def test_json_payload_has_the_release_the_tags_and_the_exact_reason() -> None:
    body = json_payload(_notice())
    assert body["kind"] == "rollback" and body["reason"] == "RolledBack"
    assert body["release"] == {"namespace": "shop", "name": "payments"}
    assert (body["stableTag"], body["canaryTag"], body["phase"]) == ("v1", "v2", "RolledBack")
    assert "canary 0.4 > max 0.05" in body["message"]
    assert body["time"] == "2026-11-24T09:30:00+00:00" and len(body["id"]) == 32


def test_slack_payload_is_incoming_webhook_json() -> None:
    body = slack_payload(_notice())
    assert body["text"] == ":rotating_light: shop/payments: v2 rolled back"
    attachment = body["attachments"][0]
    assert attachment["title"] == "RolledBack" and "0.4 > max 0.05" in attachment["text"]
    assert {"title": "stable", "value": "v1", "short": True} in attachment["fields"]
    assert attachment["ts"] == int(NOW.timestamp())


def test_a_notifier_sends_the_milestones_unless_it_lists_its_own() -> None:
    default = Notifier.model_validate({"name": "team", "urlSecretRef": {"name": "hook"}})
    assert default.wants("rollback") and default.wants("gate") and not default.wants("warning")
    only = Notifier.model_validate(
        {"name": "pager", "urlSecretRef": {"name": "hook"}, "events": ["rollback", "warning"]}
    )
    assert only.wants("warning") and not only.wants("started")
