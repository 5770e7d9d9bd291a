"""Per-interval log-likelihood ratios for event counts.

Two shapes of evidence, both about Bernoulli trials:

* **split** (canary against stable). Given `n` errors in an interval in which
  the canary served a share `w` of the requests, and the canary fails `r`
  times as often as stable, each error is the canary's with probability
  ``p = w r / (w r + 1 - w)``. The shared error rate cancels, so a daily swing
  or an outage that hits both tracks moves nothing; only how errors *split*
  between the tracks is evidence.
* **rate** (the canary against an absolute bound). Each canary request is an
  event (an error, or a request slower than a bound) with probability `q`.

Every function is vectorised: arguments broadcast with numpy, so the
benchmark runs thousands of releases at once through the same code the
controller runs on one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

_EPSILON = 1e-12


def canary_share(share: npt.ArrayLike, ratio: npt.ArrayLike) -> Array:
    """P(an event is the canary's) when it serves `share` of requests at `ratio` x stable's rate."""
    w = np.asarray(share, dtype=np.float64)
    r = np.asarray(ratio, dtype=np.float64)
    return np.asarray(w * r / (w * r + 1.0 - w), dtype=np.float64)


def split_log_lr(
    canary_events: npt.ArrayLike,
    stable_events: npt.ArrayLike,
    share: npt.ArrayLike,
    ratio: npt.ArrayLike,
    null_ratio: npt.ArrayLike,
) -> Array:
    """log of P(split | canary at `ratio`) / P(split | canary at `null_ratio`).

    With p = w r / (w r + 1 - w) this is, in closed form,
    ``x log(r1 / r0) + (x + y) log((w r0 + 1 - w) / (w r1 + 1 - w))``.
    Intervals in which one track served nothing carry no information (the
    split is forced), so their ratio is 0 whatever the counts say.
    """
    w = np.asarray(share, dtype=np.float64)
    informative = (w > 0.0) & (w < 1.0)
    w = np.where(informative, w, 0.5)
    r1 = np.asarray(ratio, dtype=np.float64)
    r0 = np.asarray(null_ratio, dtype=np.float64)
    x = np.asarray(canary_events, dtype=np.float64)
    y = np.asarray(stable_events, dtype=np.float64)
    llr = x * np.log(r1 / r0) + (x + y) * np.log((w * (r0 - 1.0) + 1.0) / (w * (r1 - 1.0) + 1.0))
    return np.asarray(np.where(informative, llr, 0.0), dtype=np.float64)


def rate_log_lr(
    events: npt.ArrayLike, trials: npt.ArrayLike, rate: npt.ArrayLike, null_rate: npt.ArrayLike
) -> Array:
    """log of P(events of trials | rate) / P(events of trials | null_rate), binomial."""
    q1 = np.clip(np.asarray(rate, dtype=np.float64), _EPSILON, 1.0 - _EPSILON)
    q0 = np.clip(np.asarray(null_rate, dtype=np.float64), _EPSILON, 1.0 - _EPSILON)
    x = np.asarray(events, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    return np.asarray(
        x * np.log(q1 / q0) + (n - x) * np.log((1.0 - q1) / (1.0 - q0)), dtype=np.float64
    )
