"""Audit-log anomalies and the watch after promotion, with the controller as a process.

Real apiserver, real PostgreSQL holding the application's audit_logs table,
real Prometheus scraping the traffic simulator. The connection string reaches
the controller only through a Secret.
"""

from __future__ import annotations

import base64
import pathlib
import time
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client

from controller.api.spec import GROUP, KIND, PLURAL, VERSION
from devenv.postgres import free_port
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import CapacityWatch, Releases, healthy_traffic, release, wait_for

IMAGE = "registry.example.com/payments:{}"
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
AUDIT_LOG = {
    "sql": {
        "secretRef": {"name": "audit-db", "key": "dsn"},
        "table": "audit_logs",
        "actorColumn": "actor",
        "trackColumn": "track",
        "connectTimeout": "2s",
    }
}


def _audit_table(dsn: str) -> None:
    """Two days of ordinary stable activity, so no action in it is 'new'."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE audit_logs (
                id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,
                action text NOT NULL, actor text, track text
            );
            INSERT INTO audit_logs (created_at, action, actor, track)
            SELECT t, a, 'user-1', 'stable'
            FROM generate_series(now() - interval '2 days', now() - interval '1 minute',
                                 interval '5 minutes') AS t,
                 unnest(ARRAY['user.login', 'user.delete']) AS a;
            """
        )


def _secret(releases: Releases, dsn: str) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name="audit-db"),
        data={"dsn": base64.b64encode(dsn.encode()).decode()},
    )
    releases.core.create_namespaced_secret(releases.namespace, body)


def _with_audit_log(prometheus_url: str, **kwargs: Any) -> dict[str, Any]:
    body = release("payments", "v1", prometheus_url, **kwargs)
    body["spec"]["analysis"]["auditLog"] = AUDIT_LOG
    return body


def _image_of(releases: Releases, name: str) -> str:
    dep = releases.deployment(name)
    assert dep is not None
    return next(c.image for c in dep.spec.template.spec.containers if c.name == "app")


def test_audit_log_anomaly_in_the_canary_window_rolls_back_naming_the_action(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
    database: str,
) -> None:
    healthy_traffic(traffic, namespace)
    _audit_table(database)
    _secret(releases, database)
    releases.create_deployment("payments", 10, IMAGE.format("v1"))
    steps = [{"setWeight": 10}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    releases.create(_with_audit_log(prometheus.url, steps=steps))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)
    with CapacityWatch(releases, "payments") as capacity:
        releases.set_tag("payments", "v2")
        releases.wait_phase("payments", "Paused", timeout=60)

        def audit_passing() -> bool:
            audit = releases.status("payments").get("auditLog") or {}
            return audit.get("verdict") == "pass"

        wait_for(audit_passing, 60, "a clean audit-log judgement of the canary")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO audit_logs (created_at, action, actor, track) "
                "SELECT now(), 'user.delete', 'mallory', 'canary' FROM generate_series(1, 40)"
            )
        status = releases.wait_phase("payments", "RolledBack", timeout=60)
        wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")

    assert status["reason"] == "AuditLogAnomaly"
    assert "user.delete" in status["message"] and "40 events" in status["message"]
    audit = status["auditLog"]
    assert audit["verdict"] == "fail" and audit["comparison"] == "track"
    [anomaly] = audit["anomalies"]
    assert anomaly["action"] == "user.delete" and anomaly["count"] == 40
    assert anomaly["sensitive"] is True and anomaly["actors"] == 1
    assert _image_of(releases, "payments") == IMAGE.format("v1")
    assert min(capacity.samples) >= 10, f"capacity dipped: {min(capacity.samples)}"
    assert status["history"][-1]["outcome"] == "RolledBack"
    assert "AuditLogAnomaly" in status["history"][-1]["reason"]


def test_audit_database_down_holds_without_rolling_back_then_carries_on(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
    database: str,
) -> None:
    healthy_traffic(traffic, namespace)
    _audit_table(database)
    _secret(releases, f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    releases.create_deployment("payments", 4, IMAGE.format("v1"))
    steps = [{"setWeight": 25}, {"pause": {"duration": "5s"}}, {"setWeight": 100}]
    releases.create(_with_audit_log(prometheus.url, steps=steps, unreachable_deadline="3s"))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)
    releases.set_tag("payments", "v2")

    cond = wait_for(
        lambda: releases.condition("payments", "AuditLogAvailable", reason="AuditLogUnreachable"),
        90,
        "AuditLogUnreachable condition",
    )
    assert cond["status"] == "False" and "holding" in cond["message"]
    time.sleep(8)  # the pause is long over: still no promotion, and no rollback
    held = releases.status("payments")
    assert held["phase"] == "Paused" and held["reason"] == "AwaitingAnalysis"
    assert held["auditLog"]["verdict"] == "inconclusive"
    assert _image_of(releases, "payments") == IMAGE.format("v1")
    assert releases.deployment("payments-canary") is not None
    releases.wait_events("payments", "AuditLogUnreachable")

    fixed = {"dsn": base64.b64encode(database.encode()).decode()}
    releases.core.patch_namespaced_secret("audit-db", namespace, {"data": fixed})
    done = releases.wait_phase("payments", "Succeeded", timeout=120)
    assert done["stableTag"] == "v2" and done["auditLog"]["verdict"] == "pass"


def test_breach_after_promotion_rolls_back_to_the_previous_tag(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    healthy_traffic(traffic, namespace)
    releases.create_deployment("payments", 4, IMAGE.format("v1"))
    steps = [{"setWeight": 25}, {"pause": {"duration": "5s"}}, {"setWeight": 100}]
    body = release("payments", "v1", prometheus.url, steps=steps)
    selector = 'namespace="{{namespace}}",app="payments",track="{{track}}"'
    body["spec"]["postPromotion"] = {
        "duration": "10m",
        "interval": "2s",
        "metrics": [
            {
                "name": "error-rate",
                "query": f"sum(increase(http_request_errors_total{{{selector}}}[{{{{window}}}}]))"
                f" / sum(increase(http_requests_total{{{selector}}}[{{{{window}}}}]))",
                "threshold": {"max": 0.05},
            }
        ],
    }
    releases.create(body)
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)
    with CapacityWatch(releases, "payments") as capacity:
        releases.set_tag("payments", "v2")
        promoted = releases.wait_phase("payments", "Succeeded", timeout=120)
        assert promoted["previousStableImage"] == IMAGE.format("v1")
        assert promoted["postPromotion"]["state"] == "Watching"
        assert _image_of(releases, "payments") == IMAGE.format("v2")
        time.sleep(3)
        traffic.set_rate(namespace, "payments", "stable", rps=50, error_ratio=0.4)
        status = releases.wait_phase("payments", "RolledBack", timeout=60)

        def back_on_v1() -> bool:
            dep = releases.deployment("payments")
            return bool(
                dep
                and _image_of(releases, "payments") == IMAGE.format("v1")
                and (dep.status.updated_replicas or 0) == 4
                and (dep.status.available_replicas or 0) == 4
                and dep.spec.strategy.rolling_update.max_unavailable == "25%"
            )

        wait_for(back_on_v1, 90, "stable rolled back to v1 with its strategy restored")

    assert status["reason"] == "PostPromotionBreach"
    assert "after promotion, metric error-rate" in status["message"]
    assert "> max 0.05" in status["message"] and 'track="stable"' in status["message"]
    assert status["stableTag"] == "v1" and status["postPromotion"]["state"] == "RolledBack"
    assert [(h["tag"], h["outcome"]) for h in status["history"]] == [
        ("v2", "Succeeded"),
        ("v2", "RolledBack"),
    ]
    assert min(capacity.samples) >= 4, f"capacity dipped: {min(capacity.samples)}"
    time.sleep(3)  # the rolled-back tag is not adopted or retried by itself
    assert releases.status("payments")["phase"] == "RolledBack"
    assert _image_of(releases, "payments") == IMAGE.format("v1")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_accepted_by_the_apiserver(releases: Releases, path: pathlib.Path) -> None:
    """A server-side dry run: the generated CRD schema (and its CEL rules) accept them."""
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] == KIND:
            releases.custom.create_namespaced_custom_object(
                GROUP, VERSION, releases.namespace, PLURAL, doc, dry_run="All"
            )
        elif doc["kind"] == "Secret":
            releases.core.create_namespaced_secret(releases.namespace, doc, dry_run="All")
    assert (
        releases.custom.list_namespaced_custom_object(GROUP, VERSION, releases.namespace, PLURAL)[
            "items"
        ]
        == []
    )
