"""The sequential judge in the running controller: real apiserver, Prometheus, traffic."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import Releases, release

IMAGE = "registry.example.com/orders:{}"
SEL = 'namespace="{{namespace}}",app="orders",track="{{track}}"'
ERRORS = {
    "name": "errors",
    "errors": f"sum(increase(http_request_errors_total{{{SEL}}}[{{{{window}}}}]))",
    "requests": f"sum(increase(http_requests_total{{{SEL}}}[{{{{window}}}}]))",
    "compare": {"maxRatio": 1.5},
}
LATENCY = {
    "name": "latency",
    "latency": {
        "buckets": "sum by (le) (increase("
        f"http_request_duration_seconds_bucket{{{SEL}}}[{{{{window}}}}]))",
        "quantile": 0.99,
    },
    "compare": {"maxRatio": 2},
    "threshold": {"max": 1.0},
}


def _release(prometheus: str, pause: str, **analysis: Any) -> dict[str, Any]:
    body = release(
        "orders",
        "v1",
        prometheus,
        steps=[{"setWeight": 10}, {"pause": {"duration": pause}}, {"setWeight": 100}],
    )
    body["spec"]["analysis"].update({"metrics": [ERRORS, LATENCY], **analysis})
    return body


def _start(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    body: dict[str, Any],
) -> None:
    for track in ("stable", "canary"):
        traffic.set_rate(namespace, "orders", track, rps=100, error_ratio=0.01, latency_s=0.1)
    releases.create_deployment("orders", 10, IMAGE.format("v1"))
    releases.create(body)
    controller(namespace)
    releases.wait_phase("orders", "Idle", timeout=30)
    releases.set_tag("orders", "v2")
    releases.wait_phase("orders", "Paused", timeout=60)


def test_a_canary_failing_twice_as_often_is_rolled_back_with_its_evidence(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    _start(releases, namespace, controller, traffic, _release(prometheus.url, "10m"))
    traffic.set_rate(namespace, "orders", "canary", rps=100, error_ratio=0.2, latency_s=0.1)
    status = releases.wait_phase("orders", "RolledBack", timeout=120)
    assert status["reason"] == "MetricBreach"
    assert "metric errors" in status["message"]
    assert "shown worse than 1.5x stable" in status["message"]
    errors = next(m for m in status["metrics"] if m["name"] == "errors")
    assert errors["verdict"] == "fail"
    evidence = errors["evidence"]
    worse = next(t for t in evidence["tests"] if t["test"] == "worse")
    assert worse["eValue"] >= worse["needed"] == pytest.approx(600)  # 2 / (0.01 / 3 tests)
    assert len(worse["logProducts"]) == 4
    assert evidence["countedCanary"]["events"] > evidence["expectedCanaryEvents"]
    latency = next(m for m in status["metrics"] if m["name"] == "latency")
    assert latency["evidence"]["bound"] in (0.15, 0.2)  # the stable's p99 bucket


def test_inconclusive_at_the_end_promotes_when_the_user_says_so(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    body = _release(prometheus.url, "15s", onInconclusive="promote")
    _start(releases, namespace, controller, traffic, body)
    status = releases.wait_phase("orders", "Succeeded", timeout=120)
    assert status["stableTag"] == "v2"
    messages = [e.message or "" for e in releases.events() if e.reason == "Promoting"]
    assert any("onInconclusive: promote" in m for m in messages), messages


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"query": "up"}, "exactly one of query, errors (with requests) or latency"),
        ({"requests": None}, "errors and requests go together"),
    ],
)
def test_the_apiserver_refuses_ambiguous_counter_metrics(
    releases: Releases, prometheus: PrometheusServer, patch: dict[str, Any], message: str
) -> None:
    body = _release(prometheus.url, "1m")
    metric = {k: v for k, v in {**ERRORS, **patch}.items() if v is not None}
    body["spec"]["analysis"]["metrics"] = [metric]
    with pytest.raises(ApiException) as caught:
        releases.create(body)
    assert caught.value.status == 422
    assert message in caught.value.body
