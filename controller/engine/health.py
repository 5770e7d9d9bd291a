"""The built-in health check: pods that crash-loop or keep restarting are a breach.

It needs no metric and no Prometheus, so it catches a build that cannot even
start, whatever the analysis says. The canary is held to it throughout its
steps; stable, once it runs the promoted image, for the watch after
promotion (a build can be fine at 10% and fail under all the traffic).
"""

from __future__ import annotations

from controller.api.spec import HealthCheck
from controller.engine.observations import PodHealth


def pod_trouble(pods: PodHealth, check: HealthCheck, track: str) -> tuple[str, str] | None:
    """(reason suffix, message) when `track`'s pods fail the check, else None."""
    if pods.crash_looping:
        return "CrashLooping", f"{track} pod {pods.crash_looping[0]} is in CrashLoopBackOff"
    if pods.max_restarts >= check.max_restarts:
        return "Restarting", (
            f"a {track} container restarted {pods.max_restarts} times (limit {check.max_restarts})"
        )
    return None
