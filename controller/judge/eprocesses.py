"""E-processes: evidence that may be looked at after every interval, forever.

A test here is a product of per-interval likelihood ratios, one product per
alternative on a small grid, averaged over the grid (a discrete mixture).
Under the null each product is a nonnegative supermartingale, so by Ville's
inequality the chance that their average *ever* reaches its threshold is at
most `level`, however often it is looked at and whenever the looking stops.
That is what makes a 24-hour canary with a look every 30 seconds safe, where
repeating a fixed-sample test every interval is not.

Three adjustments keep it robust, responsive and small; each keeps validity
(proofs in docs/judge.md):

* **The largest burst is set aside.** One bad sample of a counter moves at
  most two consecutive reads (the glitch, then Prometheus' reset
  compensation). A verdict is taken on the products divided by the largest
  factor any two consecutive intervals contributed: never more than the
  products, so still valid, and a single bad scrape can neither decide a
  verdict nor help one along (beyond displacing the largest ordinary
  burst). Each interval's factor is also capped, at 1.5 x the evidence one
  alternative needs, which keeps the products finite (a capped likelihood
  ratio still has expectation <= 1).
* **Each product is floored**, after an interval ending m minutes into the
  release, at about ``1 / (m ln^2 m)`` per minute of the interval (exactly:
  a telescoping sum, so all floors add up to at most 1 however often the
  judge looks). Without a floor, hours of a good canary push the 'worse'
  evidence so far below 1 that a regression starting late takes hours to
  show. Adding up to 1 costs a factor of 2 on the threshold (``2 / level``)
  and keeps the deficit to about ``log m + 2 log log m`` (13 nats after a day).
* **Each product is capped from above** at 100 x the threshold, so a 'not
  worse' verdict reached early can still be lost if the canary degrades.
  Lowering a supermartingale keeps it one.

The state is three numbers per alternative, a dozen floats, whatever the
length of the release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

from controller.judge.likelihoods import Array, rate_log_lr, split_log_lr

Kind = Literal["split", "rate"]

FLOOR_BUDGET = 1.0
"""The floors sum to at most this; the threshold grows by a factor 1 + FLOOR_BUDGET."""

CEILING_FACTOR = 100.0
"""Products stop rising at this multiple of the threshold."""

CAP_SHARE = 1.5
"""One interval may add at most this share of the evidence an alternative needs."""

BURST_SLACK = 0.0
"""How much of the largest two-interval burst still counts towards a verdict (log).
Zero: a burst never helps. log(8) would detect a x2 regression at 100 rps about a
minute sooner, at the price of letting a glitch bring a verdict 8x closer
(docs/judge.md has both measured)."""

GRID = (1.0, 2.0, 4.0, 8.0)
"""Alternatives of the 'worse' and 'above' tests, as multiples of the effect (or bound)."""

GRID_WEIGHTS = (0.5, 0.25, 0.125, 0.125)
"""Half the weight on the effect itself, the hardest to see; crashes show anyway."""

ABOVE_START = 1.25
"""The 'above the bound' grid starts at 1.25 x the bound."""

BELOW_GRID = (0.8, 0.5)
"""Alternatives of the 'below the bound' test, as multiples of the bound."""


@dataclass(frozen=True)
class Design:
    """One one-sided test: reject `null` in favour of the `alternatives`.

    `kind` says what a parameter means: a canary/stable ratio ("split") or
    the canary's own event rate ("rate").
    """

    kind: Kind
    null: float
    alternatives: tuple[float, ...]
    level: float
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.weights:
            uniform = tuple(1.0 / len(self.alternatives) for _ in self.alternatives)
            object.__setattr__(self, "weights", uniform)
        if len(self.weights) != len(self.alternatives) or not math.isclose(sum(self.weights), 1):
            raise ValueError("one weight per alternative, summing to 1")

    @property
    def log_threshold(self) -> float:
        """log(2/level): the mixture e-value at which the null is rejected (2: the floors)."""
        return math.log(1.0 + FLOOR_BUDGET) - math.log(self.level)

    @property
    def log_weights(self) -> Array:
        return np.log(np.asarray(self.weights, dtype=np.float64))

    @property
    def log_cap(self) -> Array:
        """Per alternative, the most one interval may add: CAP_SHARE of what it alone needs."""
        return np.asarray(CAP_SHARE * (self.log_threshold - self.log_weights), dtype=np.float64)

    @property
    def log_ceiling(self) -> float:
        """Products stop rising here: room for the set-aside burst above the threshold."""
        return self.log_threshold + math.log(CEILING_FACTOR) + 2 * float(np.max(self.log_cap))

    def start(self, shape: tuple[int, ...] = ()) -> Array:
        """The log-products before any evidence: all zero (every e-value starts at 1)."""
        return np.zeros((*shape, len(self.alternatives)), dtype=np.float64)


def worse_than(effect: float, level: float) -> Design:
    """Canary errors at least `effect` x stable's, against 'no worse than stable'."""
    return Design("split", 1.0, tuple(effect * g for g in GRID), level, GRID_WEIGHTS)


def not_worse_than(effect: float, level: float) -> Design:
    """Canary no worse than stable, against 'at least `effect` x worse'."""
    return Design("split", effect, (1.0,), level)


def above(bound: float, level: float) -> Design:
    """The canary's event rate is above `bound`, against 'at or below it'."""
    grid = tuple(_scale_odds(bound, ABOVE_START * g) for g in GRID)
    return Design("rate", bound, grid, level, GRID_WEIGHTS)


def below(bound: float, level: float) -> Design:
    """The canary's event rate is below `bound`, against 'at or above it'."""
    return Design("rate", bound, tuple(_scale_odds(bound, g) for g in BELOW_GRID), level)


def _scale_odds(rate: float, factor: float) -> float:
    """`rate` with its odds multiplied: about rate x factor when small, never reaching 1."""
    odds = rate / (1.0 - rate) * factor
    return odds / (1.0 + odds)


@dataclass(frozen=True)
class Increment:
    """Counts of one interval (or many intervals at once, as arrays)."""

    canary_events: npt.ArrayLike
    canary_total: npt.ArrayLike
    stable_events: npt.ArrayLike = 0.0
    stable_total: npt.ArrayLike = 0.0


def interval_log_lr(design: Design, inc: Increment) -> Array:
    """Each alternative's log-likelihood ratio for one interval: shape (..., G)."""
    alternatives = np.asarray(design.alternatives, dtype=np.float64)
    x = np.asarray(inc.canary_events, dtype=np.float64)[..., None]
    n = np.asarray(inc.canary_total, dtype=np.float64)[..., None]
    if design.kind == "rate":
        return rate_log_lr(x, n, alternatives, design.null)
    y = np.asarray(inc.stable_events, dtype=np.float64)[..., None]
    m = np.asarray(inc.stable_total, dtype=np.float64)[..., None]
    total = n + m
    share = np.divide(n, total, out=np.zeros_like(total), where=total > 0)
    return split_log_lr(x, y, share, alternatives, design.null)


def log_floor(since_s: npt.ArrayLike, until_s: npt.ArrayLike) -> Array:
    """log of the floor after an interval from `since_s` to `until_s` (seconds into the release).

    The floor is ``ln 2 (1 / ln(2 + m0) - 1 / ln(2 + m1))`` with m in minutes: it
    telescopes, so the floors of all intervals sum to at most FLOOR_BUDGET
    however often the judge looks, and after m minutes it is about
    ``1 / (m ln^2 m)`` per minute of interval.
    """
    m0 = np.maximum(np.asarray(since_s, dtype=np.float64), 0.0) / 60.0
    m1 = np.maximum(np.asarray(until_s, dtype=np.float64), 0.0) / 60.0
    floor = FLOOR_BUDGET * math.log(2.0) * (1.0 / np.log(2.0 + m0) - 1.0 / np.log(2.0 + m1))
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(np.maximum(floor, 0.0)), dtype=np.float64)


def has_data(design: Design, inc: Increment) -> Array:
    """True where the interval counted any request (intervals without new samples do not)."""
    total = np.asarray(inc.canary_total, dtype=np.float64)
    if design.kind == "split":
        total = total + np.asarray(inc.stable_total, dtype=np.float64)
    return np.asarray(total > 0)


@dataclass(frozen=True)
class Running:
    """A test's state, per alternative: the log-product, what the last interval
    with data added, and the largest two-interval burst so far."""

    products: Array
    recent: Array
    largest: Array


def begin(design: Design, shape: tuple[int, ...] = ()) -> Running:
    """Before any evidence: every product 1 (log 0), no burst."""
    zero = design.start(shape)
    return Running(zero, zero.copy(), zero.copy())


def advance(
    state: Running,
    log_lr: Array,
    fresh: npt.ArrayLike,
    design: Design,
    since_s: npt.ArrayLike,
    until_s: npt.ArrayLike,
) -> Running:
    """One interval (seconds into the release): capped log-ratios added, floor, ceiling."""
    added = np.minimum(log_lr, design.log_cap)
    floor = log_floor(since_s, until_s)[..., None]
    products = np.clip(state.products + added, floor, design.log_ceiling)
    fresh = np.asarray(fresh)[..., None]
    pair = np.maximum(added, 0.0) + np.maximum(state.recent, 0.0)
    largest = np.where(fresh, np.maximum(state.largest, pair), state.largest)
    recent = np.where(fresh, added, state.recent)
    return Running(
        np.asarray(products, np.float64), np.asarray(recent, np.float64), np.asarray(largest)
    )


def fold(
    state: Running, design: Design, inc: Increment, since_s: npt.ArrayLike, until_s: npt.ArrayLike
) -> Running:
    """The state after one interval, from `since_s` to `until_s` seconds into the release."""
    llr = interval_log_lr(design, inc)
    return advance(state, llr, has_data(design, inc), design, since_s, until_s)


def robust_products(products: Array, largest: Array) -> Array:
    """The log-products without the largest two-interval burst (beyond BURST_SLACK)."""
    return np.asarray(products - np.maximum(largest - BURST_SLACK, 0.0), dtype=np.float64)


def decision_log_e(state: Running, design: Design) -> Array:
    """The log e-value a verdict is taken on: the mixture of the robust products."""
    return log_e_value(robust_products(state.products, state.largest), design)


def log_e_value(log_products: npt.ArrayLike, design: Design | None = None) -> Array:
    """log of the mixture e-value: the design's weighted average of the products."""
    products = np.asarray(log_products, dtype=np.float64)
    if design is None:
        weights = np.full(products.shape[-1], -math.log(products.shape[-1]))
    else:
        weights = design.log_weights
    return np.asarray(logsumexp(products + weights, axis=-1), dtype=np.float64)


def rejects(state: Running, design: Design) -> Array:
    """True where the evidence, its largest burst set aside, rejects the design's null."""
    return np.asarray(decision_log_e(state, design) >= design.log_threshold)
