"""Simulated releases at the level of the counters Prometheus stores.

One *setting* (traffic level, daily shape, injected effect, nuisance) is
simulated for many releases at once with numpy, one sample per 15-second
scrape and per track:

* requests: the traffic rate x 15 s, rounded (a 10% canary gets 10% of it);
* errors: Poisson with mean requests x error ratio. Under Poisson traffic
  the failed requests of an interval are exactly Poisson, so this is the
  same model as binomial errors among Poisson requests, drawn faster;
* a latency histogram (log-normal latencies, median 100 ms; buckets 150,
  200, 250, 300, 400 ms and +Inf). Only the counts the judges read are
  drawn, Poisson like errors: at the first look the stable's whole
  histogram (the sequential judge reads its bound there: the smallest
  bucket bound holding 99% of requests, `bound_index`); afterwards, per
  track, the requests slower than that bound, and for the canary also those
  slower than 200 ms (the baselines' p99 bound), nested so the two agree.

Then they are read the way the judges would read them through Prometheus:

* `increase()` over a window is the sum over consecutive sample pairs of
  the difference, or of the newer value where the counter went down
  (Prometheus takes a drop for a reset). A sample missing at the end of a
  window is made up for by extrapolating the window's average rate.
* A *spiking scrape* is one canary error-counter sample reading `SPIKE` too
  high and back to normal at the next scrape, so Prometheus also sees a
  'reset' there and adds the whole counter value: the worst single bad
  scrape for any judge built on `increase()` or `rate()`.
* A *missing scrape* is one canary sample absent from every counter.
* A *shared fault* multiplies both tracks' error ratios by 5 for 10 minutes.

Regressions are present from the canary's start (time to detect is the
time from the start of the release to the rollback decision), or start
`onset_s` into it (time to detect counts from the onset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import norm

Traffic = Literal["flat", "swing"]
Nuisance = Literal["none", "missing_scrape", "spiking_scrape", "shared_fault"]

SCRAPE_S = 15
"""Scrape interval, and the sequential judge's analysis interval (a look per scrape)."""
CHECK_S = 60
"""The threshold baselines' interval (Argo `interval: 1m`, Flagger `interval: 1m`)."""
DAY_S = 24 * 3600
CANARY_SHARE = 0.10
BASE_ERROR_RATIO = 0.01
MEDIAN_LATENCY_S = 0.1
SIGMA = 0.25
SWING = 0.8
SPIKE = 50.0
SHARED_FAULT_FACTOR = 5.0
SHARED_FAULT_S = 600
EARLIEST_NUISANCE_S = 300
"""Nuisances strike uniformly between 5 minutes into the release and its end."""

LATENCY_BOUNDS = (0.15, 0.2, 0.25, 0.3, 0.4)
"""Histogram bucket bounds in seconds; +Inf implied, everything faster than 150 ms merged."""

EFFECTS = {
    "none": (1.0, 1.0),
    "errors_x1.5": (1.5, 1.0),
    "errors_x2": (2.0, 1.0),
    "errors_x5": (5.0, 1.0),
    "errors_x10": (10.0, 1.0),
    "latency_+10%": (1.0, 1.10),
    "latency_+25%": (1.0, 1.25),
}
"""effect name -> (canary error-ratio multiplier, canary latency multiplier)."""


@dataclass(frozen=True)
class Setting:
    rps: float
    traffic: Traffic
    effect: str = "none"
    nuisance: Nuisance = "none"
    horizon_s: int = DAY_S
    onset_s: int = 0
    """When the injected effect starts (seconds into the release): 0, from the start."""

    @property
    def scrapes(self) -> int:
        return self.horizon_s // SCRAPE_S


def share_above(median: float) -> np.ndarray:
    """P(latency > each bound) for the log-normal with this median."""
    return np.asarray(1 - norm.cdf((np.log(LATENCY_BOUNDS) - math.log(median)) / SIGMA))


def bound_index(above: np.ndarray, total: np.ndarray, q: float = 0.99) -> np.ndarray:
    """`controller.judge.bound_at_quantile` per run: the first bound with a q share under it."""
    enough = (total[:, None] - above) >= q * total[:, None]
    return np.asarray(np.where(enough.any(axis=1), enough.argmax(axis=1), above.shape[1] - 1))


@dataclass
class Counters:
    """Per-scrape counter increments of many runs, and how Prometheus would read them.

    Arrays are (runs, scrapes). `*_slow` are the requests slower than each
    run's `bound` (an index into LATENCY_BOUNDS), `canary_over_max` those
    slower than 200 ms; `first_stable_above` is the stable's first-scrape
    count above every bound. `missing[r]` is the scrape index whose canary
    sample is absent (-1: none).
    """

    canary_requests: np.ndarray
    canary_errors: np.ndarray  # contributions to increase(): a glitch shows up here
    stable_requests: np.ndarray
    stable_errors: np.ndarray
    first_stable_above: np.ndarray
    bound: np.ndarray
    canary_slow: np.ndarray
    stable_slow: np.ndarray
    canary_over_max: np.ndarray
    missing: np.ndarray
    nuisance_at_s: np.ndarray

    @property
    def runs(self) -> int:
        return int(self.canary_requests.shape[0])

    @property
    def look_times(self) -> np.ndarray:
        return SCRAPE_S * (np.arange(self.canary_requests.shape[1]) + 1.0)

    @property
    def check_times(self) -> np.ndarray:
        per = CHECK_S // SCRAPE_S
        return CHECK_S * (np.arange(self.canary_requests.shape[1] // per) + 1.0)

    def reads(self, increments: np.ndarray, canary: bool = True) -> np.ndarray:
        """increase() from the release start at every look; a missing last sample extrapolated.

        Sample k is at (k + 1) x SCRAPE_S; the counter's first sample, 0, is at the start.
        """
        reads = np.cumsum(increments, axis=1, dtype=np.float64)
        if canary:
            r = np.nonzero(self.missing >= 1)[0]
            k = self.missing[r]
            reads[r, k] = reads[r, k - 1] * (k + 1) / k
        return reads

    def window(self, increments: np.ndarray) -> np.ndarray:
        """increase() over each threshold check's last minute, canary (missing samples handled)."""
        per = CHECK_S // SCRAPE_S
        cum = np.concatenate([np.zeros((self.runs, 1)), np.cumsum(increments, axis=1)], axis=1)
        ends = per * (np.arange(cum.shape[1] // per) + 1)
        starts = ends - per
        last = np.where(self.missing[:, None] + 1 == ends[None, :], ends - 1, ends)
        first = np.where(self.missing[:, None] + 1 == starts[None, :], starts + 1, starts)
        rows = np.arange(self.runs)[:, None]
        return np.asarray(cum[rows, last] - cum[rows, first])


def _contributions(increments: np.ndarray, glitch_at: np.ndarray) -> np.ndarray:
    """Per-pair contributions to increase() when sample `glitch_at[r]` reads SPIKE too high."""
    runs, _n = increments.shape
    values = np.concatenate([np.zeros((runs, 1)), np.cumsum(increments, axis=1)], axis=1)
    r = np.nonzero(glitch_at >= 0)[0]
    values[r, glitch_at[r] + 1] += SPIKE
    diffs = np.diff(values, axis=1)
    return np.asarray(np.where(diffs >= 0, diffs, values[:, 1:]))


def simulate(setting: Setting, runs: int, seed: int) -> Counters:
    """Draw `runs` releases of one setting."""
    # Nuisances draw from their own stream, so a run with a nuisance is the
    # same run as without it, apart from the nuisance: its effect is causal.
    rng, nuisance_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    error_factor, latency_factor = EFFECTS[setting.effect]
    n = setting.scrapes
    t = (np.arange(n) + 0.5) * SCRAPE_S
    if setting.traffic == "flat":
        total = np.full((runs, n), float(setting.rps))
    else:
        phase = rng.uniform(0, 2 * math.pi, size=(runs, 1))
        total = setting.rps * (1 + SWING * np.sin(2 * math.pi * t[None, :] / DAY_S + phase))
    canary_req = np.round(total * CANARY_SHARE * SCRAPE_S)
    stable_req = np.round(total * (1 - CANARY_SHARE) * SCRAPE_S)
    after = (t >= setting.onset_s)[None, :]
    canary_ratio = np.where(after, min(1.0, BASE_ERROR_RATIO * error_factor), BASE_ERROR_RATIO)
    canary_err = np.minimum(rng.poisson(canary_req * canary_ratio), canary_req)
    stable_err = np.minimum(rng.poisson(stable_req * BASE_ERROR_RATIO), stable_req)
    stable_above = share_above(MEDIAN_LATENCY_S)
    canary_above = np.where(  # (1, scrapes, bounds)
        after[..., None], share_above(MEDIAN_LATENCY_S * latency_factor), stable_above
    )
    # the stable's first histogram, drawn whole, bucket by bucket from the top
    first = np.zeros((runs, len(LATENCY_BOUNDS)))
    slower, upper = np.zeros(runs), 0.0
    for i in reversed(range(len(LATENCY_BOUNDS))):
        slower = slower + rng.poisson(stable_req[:, 0] * (stable_above[i] - upper))
        first[:, i], upper = slower, stable_above[i]
    bound = bound_index(first, stable_req[:, 0])
    stable_slow = rng.poisson(stable_req * stable_above[bound][:, None]).astype(np.float64)
    stable_slow[:, 0] = first[np.arange(runs), bound]
    p_bound = canary_above[0][:, bound].T  # (runs, scrapes)
    canary_slow = rng.poisson(canary_req * p_bound)
    # slower than 200 ms, nested with the slow counts at the bound
    at_max = LATENCY_BOUNDS.index(0.2)
    p_max = canary_above[..., at_max]
    thinned = rng.binomial(canary_slow, np.minimum(1.0, p_max / p_bound))
    extra = rng.poisson(canary_req * np.maximum(p_max - p_bound, 0.0))
    over_max = np.where((bound < at_max)[:, None], thinned, canary_slow)
    over_max = np.where((bound > at_max)[:, None], canary_slow + extra, over_max)

    nuisance_at = np.full(runs, np.nan)
    missing = np.full(runs, -1)
    glitch = np.full(runs, -1)
    if setting.nuisance == "shared_fault":
        start = nuisance_rng.integers(
            EARLIEST_NUISANCE_S // SCRAPE_S, (setting.horizon_s - SHARED_FAULT_S) // SCRAPE_S, runs
        )
        nuisance_at = start * SCRAPE_S * 1.0
        idx = np.arange(n)[None, :]
        during = (idx >= start[:, None]) & (idx < start[:, None] + SHARED_FAULT_S // SCRAPE_S)
        for err, req, ratio in (
            (canary_err, canary_req, canary_ratio),
            (stable_err, stable_req, BASE_ERROR_RATIO),
        ):
            extra = nuisance_rng.poisson(req * ratio * (SHARED_FAULT_FACTOR - 1))
            err += np.where(during, extra, 0)
            np.minimum(err, req, out=err)
    elif setting.nuisance in ("missing_scrape", "spiking_scrape"):
        k = nuisance_rng.integers(
            EARLIEST_NUISANCE_S // SCRAPE_S, n - 1, runs
        )  # never the last sample
        nuisance_at = (k + 1) * SCRAPE_S * 1.0
        if setting.nuisance == "spiking_scrape":
            glitch = k
        else:
            missing = k
    return Counters(
        canary_requests=canary_req,
        canary_errors=_contributions(canary_err, glitch),
        stable_requests=stable_req,
        stable_errors=stable_err.astype(np.float64),
        first_stable_above=first,
        bound=bound,
        canary_slow=canary_slow.astype(np.float64),
        stable_slow=stable_slow,
        canary_over_max=over_max.astype(np.float64),
        missing=missing,
        nuisance_at_s=nuisance_at,
    )
