"""The `web` CanaryRelease that the replay tests run over backfilled history.

Its queries select what `devenv.backfill.request_series("shop", "web", ...)`
writes: the errors and requests counters of one track.
"""

from __future__ import annotations

from typing import Any

SEL = 'namespace="{{namespace}}",app="web",track="{{track}}"'
ERRORS = f"sum(increase(http_request_errors_total{{{SEL}}}[{{{{window}}}}]))"
REQUESTS = f"sum(increase(http_requests_total{{{SEL}}}[{{{{window}}}}]))"


def errors_metric(**bounds: Any) -> dict[str, Any]:
    """Canary errors against stable's, judged by the sequential test."""
    return {
        "name": "errors",
        "errors": ERRORS,
        "requests": REQUESTS,
        "compare": {"maxRatio": 1.5},
        **bounds,
    }


def web_release(metrics: list[dict[str, Any]], *, pause: str, **analysis: Any) -> dict[str, Any]:
    """10%, a pause of `pause`, then 100%; judged every minute by `metrics` (and `analysis`)."""
    return {
        "apiVersion": "canary.dev/v1alpha1",
        "kind": "CanaryRelease",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "targetRef": {"name": "web"},
            "release": {"tag": "v2", "image": "registry.example.com/web:{tag}"},
            "steps": [{"setWeight": 10}, {"pause": {"duration": pause}}, {"setWeight": 100}],
            "analysis": {
                "interval": "1m",
                "prometheus": {"address": "http://prometheus.invalid:9090"},
                "metrics": metrics,
                **analysis,
            },
        },
    }
