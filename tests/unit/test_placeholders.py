"""`{{name}}` placeholders read one way by everything that reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.adapters.postgres_audit import _render_track
from controller.api.auditlog import PrometheusAuditLog
from controller.api.placeholders import fill, placeholders
from controller.auditlog.samples import AuditPlan

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_any_spacing_inside_the_braces_is_the_same_placeholder() -> None:
    text = "{{track}} {{ track }} {{  track}} {{window }} {{ other }}"
    assert placeholders(text) == {"track", "window", "other"}
    assert (
        fill(text, {"track": "canary", "window": "60s"}) == "canary canary canary 60s {{ other }}"
    )
    assert fill("{{track}}", {"track": r"\1 \g<0>"}) == r"\1 \g<0>"  # values are literal


def test_the_audit_models_and_the_sql_provider_agree_with_lint() -> None:
    assert PrometheusAuditLog(query="sum by (action) (x{track='{{ track}}'})").carries_track
    assert not PrometheusAuditLog(query="sum by (action) (x)").carries_track
    end = T0 + timedelta(hours=1)
    plan = AuditPlan(T0, end, by_track=True, baseline_days=0, canary_tag="v2", stable_tag="v1")
    assert _render_track("app-{{canaryTag }}/{{ stableTag}}", plan) == "app-v2/v1"
