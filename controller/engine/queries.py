"""Filling a metric's PromQL placeholders for one track and window."""

from __future__ import annotations

from datetime import timedelta

from controller.api.placeholders import fill

TRACKS = ("canary", "stable")


def range_seconds(delta: timedelta, shortest: int = 60) -> int:
    """Whole seconds, by default at least one minute so increase() has two samples.

    Counter metrics pass shortest=1: their window must start exactly at the
    release start, read after read, so that successive reads difference cleanly.
    """
    return max(shortest, int(delta.total_seconds()))


def promql_range(delta: timedelta, shortest: int = 60) -> str:
    """A PromQL range: see `range_seconds`."""
    return f"{range_seconds(delta, shortest)}s"


def render_query(
    query: str,
    *,
    track: str,
    namespace: str,
    name: str,
    target: str,
    window: timedelta,
    interval: timedelta,
    shortest_window: int = 60,
) -> str:
    values = {
        "track": track,
        "namespace": namespace,
        "name": name,
        "target": target,
        "window": promql_range(window, shortest_window),
        "interval": promql_range(interval),
    }
    return fill(query, values)
