"""Runtime knobs, from the environment so the Helm chart can set them."""

from __future__ import annotations

import os


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


RECONCILE_INTERVAL_S = _float("CANARY_RECONCILE_INTERVAL", 10.0)
PROMETHEUS_TIMEOUT_S = int(_float("CANARY_PROMETHEUS_TIMEOUT", 5.0))
# A release is reconciled when something it waits for is due, or a watch saw a
# change; `RECONCILE_INTERVAL` also polls the phases that wait on objects no
# watch covers, and `RESYNC_INTERVAL` is the safety net for everything else.
RESYNC_INTERVAL_S = _float("CANARY_RESYNC_INTERVAL", 300.0)
WORKERS = int(_float("CANARY_WORKERS", 16))
# Process-wide request budgets; 0 means unlimited.
PROMETHEUS_QPS = _float("CANARY_PROMETHEUS_QPS", 20.0)
PROMETHEUS_BURST = int(_float("CANARY_PROMETHEUS_BURST", 40))
KUBE_QPS = _float("CANARY_KUBE_QPS", 100.0)
KUBE_BURST = int(_float("CANARY_KUBE_BURST", 200))
