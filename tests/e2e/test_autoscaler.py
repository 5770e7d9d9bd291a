"""A target sized by a HorizontalPodAutoscaler: the real HPA controller and ours side by side.

kube-controller-manager runs the HPA controller. No metrics API is served
here, but an HPA still clamps its target into [minReplicas, maxReplicas] on
every sync (15 s), before it reads any metric. So with min = max the HPA
fights any other writer of `spec.replicas`, exactly as a busy production HPA
would: a controller that shrank stable for the canary would be seen losing
that fight, sample by sample.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import Releases, Sampler, adopted, healthy_traffic, release, wait_for


def _hpa(name: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"{name}-hpa"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": size,
            "maxReplicas": size,
        },
    }


def _replicas(releases: Releases, name: str) -> int | None:
    found = releases.deployment(name)
    return None if found is None or found.spec is None else int(found.spec.replicas or 0)


def test_a_canary_beside_an_hpa_never_resizes_stable_and_follows_its_count(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
    k8s: client.ApiClient,
) -> None:
    healthy_traffic(traffic, namespace)
    steps = [{"setWeight": 50}, {"pause": {"duration": "40s"}}, {"setWeight": 100}]
    body = release("payments", "v1", prometheus.url, steps=steps)
    autoscaling = client.AutoscalingV2Api(k8s)
    adopted(releases, body, 4, lambda: controller(namespace))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, _hpa("payments", 4))
    time.sleep(2)  # the HPA's watch event reaches the controller's index

    with Sampler(lambda: _replicas(releases, "payments"), interval=0.2) as stable:
        releases.set_tag("payments", "v2")
        releases.wait_phase("payments", "Paused", timeout=60)
        canary = releases.deployment("payments-canary")
        assert canary is not None and canary.spec is not None
        assert canary.spec.replicas == 2  # 50% of the HPA's 4, as extra pods
        # The HPA grows stable to 6 in the middle of the canary; the canary follows.
        autoscaling.patch_namespaced_horizontal_pod_autoscaler(
            "payments-hpa", namespace, {"spec": {"minReplicas": 6, "maxReplicas": 6}}
        )
        wait_for(
            lambda: _replicas(releases, "payments-canary") == 3,
            timeout=60,
            what="the canary to follow the HPA's count",
        )
        done = releases.wait_phase("payments", "Succeeded", timeout=120)

    assert done["stableTag"] == "v2"
    promoted = releases.deployment("payments")
    assert promoted is not None and promoted.spec is not None
    assert promoted.spec.template.spec.containers[0].image == "registry.example.com/payments:v2"
    assert promoted.spec.replicas == 6
    # Only the HPA ever changed stable's size: 4, then 6, never the canary's share.
    assert set(stable.samples) <= {4, 6} and stable.samples[0] == 4, sorted(set(stable.samples))
    releases.wait_events("payments", "Autoscaled")
    wait_for(lambda: releases.deployment("payments-canary") is None, timeout=60, what="cleanup")
