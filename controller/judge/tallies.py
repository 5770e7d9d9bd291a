"""From cumulative counter reads to the counts of one interval.

The controller reads `increase()` since the window start for every track at
every look; the difference from the previous look is the interval's counts.
Reading cumulative counters is what makes a missing scrape harmless: the
next look simply sees the increase a little later. The guards here keep a
counter that seems to go backwards (a reset Prometheus did not compensate,
extrapolation jitter, a series briefly gone) from being counted twice or
negatively, and cap events at the requests they are part of, so a glitching
error counter cannot claim more failures than there were requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.judge.likelihoods import Array


@dataclass(frozen=True)
class Tally:
    """Cumulative events (errors, or slow requests) and requests of one track."""

    events: float
    total: float


def increment_of(
    previous_events: npt.ArrayLike,
    previous_total: npt.ArrayLike,
    events: npt.ArrayLike,
    total: npt.ArrayLike,
) -> tuple[Array, Array]:
    """(events, requests) since the previous read: never negative, events <= requests."""
    d_total = np.maximum(np.asarray(total, np.float64) - np.asarray(previous_total, np.float64), 0)
    d_events = np.asarray(events, np.float64) - np.asarray(previous_events, np.float64)
    return np.asarray(np.clip(d_events, 0.0, d_total), np.float64), np.asarray(d_total, np.float64)


def increment(previous: Tally, current: Tally) -> Tally:
    events, total = increment_of(previous.events, previous.total, current.events, current.total)
    return Tally(float(events), float(total))


def high_water(previous: Tally, current: Tally) -> Tally:
    """The baseline for the next increment: a counter read never moves it backwards."""
    return Tally(max(previous.events, current.events), max(previous.total, current.total))
