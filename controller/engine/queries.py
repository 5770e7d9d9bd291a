"""Filling a metric's PromQL placeholders for one track and window."""

from __future__ import annotations

from datetime import timedelta

TRACKS = ("canary", "stable")


def promql_range(delta: timedelta) -> str:
    """A PromQL range of whole seconds, at least one minute so increase() has two samples."""
    return f"{max(60, int(delta.total_seconds()))}s"


def render_query(
    query: str,
    *,
    track: str,
    namespace: str,
    name: str,
    target: str,
    window: timedelta,
    interval: timedelta,
) -> str:
    values = {
        "track": track,
        "namespace": namespace,
        "name": name,
        "target": target,
        "window": promql_range(window),
        "interval": promql_range(interval),
    }
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return query
