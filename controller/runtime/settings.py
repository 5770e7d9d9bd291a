"""Runtime knobs, from the environment so the Helm chart can set them."""

from __future__ import annotations

import os


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


RECONCILE_INTERVAL_S = _float("CANARY_RECONCILE_INTERVAL", 10.0)
PROMETHEUS_TIMEOUT_S = int(_float("CANARY_PROMETHEUS_TIMEOUT", 5.0))
