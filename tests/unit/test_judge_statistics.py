"""The sequential judge's statistics against known values, and its promises as properties.

Known values come from scipy and closed forms; the promises (false alarms
at most `level` however often the test looks, a single interval can never
decide) are checked over simulated looks, many at a time with numpy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, entropy

from controller.judge import (
    Increment,
    above,
    begin,
    below,
    bound_at_or_above,
    bound_at_quantile,
    canary_share,
    count_above,
    decision_log_e,
    fold,
    increment,
    log_e_value,
    normalise,
    not_worse_than,
    parse_le,
    quantile,
    rate_log_lr,
    rejects,
    split_log_lr,
    worse_than,
)
from controller.judge import Tally as Counts
from controller.judge.eprocesses import log_floor


def test_canary_share_closed_form() -> None:
    assert canary_share(0.1, 1.0) == pytest.approx(0.1)
    assert canary_share(0.1, 2.0) == pytest.approx(0.2 / 1.1)
    assert canary_share(0.5, 3.0) == pytest.approx(0.75)


@given(
    x=st.integers(0, 200),
    y=st.integers(0, 2000),
    w=st.floats(0.01, 0.99),
    r1=st.floats(0.1, 50),
    r0=st.floats(0.1, 50),
)
def test_split_ratio_is_the_binomial_likelihood_ratio(
    x: int, y: int, w: float, r1: float, r0: float
) -> None:
    """Given n = x + y errors, the canary's x are Binomial(n, w r / (w r + 1 - w))."""
    p1, p0 = canary_share(w, r1), canary_share(w, r0)
    expected = binom.logpmf(x, x + y, p1) - binom.logpmf(x, x + y, p0)
    assert float(split_log_lr(x, y, w, r1, r0)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(x=st.integers(0, 100), extra=st.integers(0, 5000), q1=st.floats(1e-4, 0.9))
def test_rate_ratio_is_the_binomial_likelihood_ratio(x: int, extra: int, q1: float) -> None:
    n, q0 = x + extra, 0.02
    expected = binom.logpmf(x, n, q1) - binom.logpmf(x, n, q0)
    assert float(rate_log_lr(x, n, q1, q0)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_an_interval_where_one_track_served_nothing_carries_no_evidence() -> None:
    assert float(split_log_lr(5, 0, 1.0, 3.0, 1.0)) == 0.0
    assert float(split_log_lr(0, 5, 0.0, 3.0, 1.0)) == 0.0


def test_expected_evidence_per_error_is_the_kullback_leibler_divergence() -> None:
    """Under the alternative, the mean log-ratio of n errors is n KL(p1 || p0)."""
    n, w, r = 40, 0.1, 2.0
    p1, p0 = float(canary_share(w, r)), float(canary_share(w, 1.0))
    x = np.arange(n + 1)
    mean = float(np.sum(binom.pmf(x, n, p1) * split_log_lr(x, n - x, w, r, 1.0)))
    assert mean == pytest.approx(n * entropy([p1, 1 - p1], [p0, 1 - p0]), rel=1e-9)


def test_designs_thresholds_caps_and_floors() -> None:
    design = worse_than(1.5, 0.005)
    assert design.alternatives == (1.5, 3.0, 6.0, 12.0)
    assert sum(design.weights) == pytest.approx(1.0)
    # 2 / level: the floors, which sum to 1, double the threshold
    assert design.log_threshold == pytest.approx(math.log(400))
    # one interval can bring one alternative 1.5x what it needs alone (bursts are set aside)
    assert design.log_cap == pytest.approx(1.5 * (design.log_threshold - np.log(design.weights)))
    first_minute = math.log(2) * (1 / math.log(2) - 1 / math.log(3))
    assert float(log_floor(0, 60)) == pytest.approx(math.log(first_minute))
    assert not_worse_than(1.5, 0.01).alternatives == (1.0,)
    assert above(0.02, 0.01).alternatives[0] == pytest.approx(0.025, rel=0.01)
    assert all(a < 0.02 for a in below(0.02, 0.01).alternatives)
    assert all(a < 1 for a in above(0.9, 0.01).alternatives)


@given(st.lists(st.floats(0.001, 3600.0), min_size=1, max_size=300))
def test_floors_add_up_to_at_most_one_however_often_it_looks(gaps: list[float]) -> None:
    """The floors telescope, so looking more often cannot spend more than the budget."""
    ends = np.cumsum(gaps)
    starts = np.concatenate([[0.0], ends[:-1]])
    assert float(np.exp(log_floor(starts, ends)).sum()) <= 1.0 + 1e-9


def test_mixture_is_the_weighted_average_of_the_products() -> None:
    design = worse_than(1.5, 0.01)
    products = np.array([1.0, -2.0, 0.5, 3.0])
    expected = math.log(sum(w * math.exp(p) for w, p in zip(design.weights, products, strict=True)))
    assert float(log_e_value(products, design)) == pytest.approx(expected)


def _simulate_null(design_name: str, share: float, per_interval: float, effect: float) -> float:
    """Share of 4000 releases whose test ever rejects under its null, over 300 looks."""
    rng = np.random.default_rng(round(share * 1e6 + per_interval * 1e3 + effect))
    runs, looks, level = 4000, 300, 0.05
    if design_name == "worse":
        design, ratio = worse_than(effect, level), 1.0
    else:
        design, ratio = not_worse_than(effect, level), effect
    state = begin(design, (runs,))
    ever = np.zeros(runs, dtype=bool)
    p = float(canary_share(share, ratio))
    for look in range(1, looks + 1):
        n = rng.poisson(per_interval, runs)
        canary = rng.binomial(n, p)
        # requests in proportion to the share: only the share enters the split test
        inc = Increment(canary, share * 1000.0, n - canary, (1 - share) * 1000.0)
        state = fold(state, design, inc, 15 * (look - 1), 15 * look)
        ever |= rejects(state, design)
    return float(ever.mean())


@settings(max_examples=8, deadline=None)
@given(
    test=st.sampled_from(["worse", "notWorse"]),
    share=st.floats(0.02, 0.5),
    per_interval=st.floats(0.3, 60.0),
    effect=st.floats(1.2, 3.0),
)
def test_false_alarms_stay_below_the_level_however_often_it_looks(
    test: str, share: float, per_interval: float, effect: float
) -> None:
    """Ville: at the null's boundary, P(ever rejecting over 300 looks) <= level (MC error)."""
    level, runs = 0.05, 4000
    rate = _simulate_null(test, share, per_interval, effect)
    assert rate <= level + 3 * math.sqrt(level * (1 - level) / runs)


@settings(max_examples=30, deadline=None)
@given(
    before=st.lists(st.floats(-20, 0), min_size=4, max_size=4),
    canary=st.floats(0, 1e6),
    stable=st.floats(0, 1e6),
    requests=st.floats(1, 1e6),
)
def test_one_or_two_intervals_alone_never_decide(
    before: list[float], canary: float, stable: float, requests: float
) -> None:
    """Whatever one bad sample does to two consecutive reads, the verdict does not move past
    where the evidence stood without them (the largest two-interval burst is set aside)."""
    design = worse_than(1.5, 0.005)
    state = begin(design)
    state = type(state)(np.asarray(before), state.recent, state.largest)
    prior = float(decision_log_e(state, design))
    for look in (1, 2):
        glitch = Increment(min(canary, requests), requests, stable, requests * 9)
        state = fold(state, design, glitch, 15 * (look - 1), 15 * look)
    assert float(decision_log_e(state, design)) <= max(prior, 0.0) + 1e-9
    assert not bool(rejects(state, design))


def test_a_regression_is_detected_and_a_good_canary_passes() -> None:
    rng = np.random.default_rng(3)
    worse, fine = worse_than(1.5, 0.005), not_worse_than(1.5, 0.01)
    bad_state, good_state = begin(worse), begin(fine)
    for look in range(1, 200):
        stable = rng.poisson(90 * 0.01 * 15)
        bad = Increment(rng.poisson(10 * 0.03 * 15), 150, stable, 1350)  # x3
        good = Increment(rng.poisson(10 * 0.01 * 15), 150, stable, 1350)
        bad_state = fold(bad_state, worse, bad, 15 * (look - 1), 15 * look)
        good_state = fold(good_state, fine, good, 15 * (look - 1), 15 * look)
    assert bool(rejects(bad_state, worse)) and bool(rejects(good_state, fine))


def test_tallies_never_count_backwards_nor_more_errors_than_requests() -> None:
    assert increment(Counts(10, 100), Counts(14, 150)) == Counts(4, 50)
    assert increment(Counts(10, 100), Counts(9, 90)) == Counts(0, 0)  # a counter went back
    assert increment(Counts(10, 100), Counts(500, 120)) == Counts(20, 20)  # a glitching counter


BUCKETS = normalise(
    [(0.1, 50), (0.2, 90), (0.4, 99), (math.inf, 100), (0.3, 95)]  # unsorted on purpose
)


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    assert [le for le, _ in BUCKETS] == [0.1, 0.2, 0.3, 0.4, math.inf]
    assert quantile(BUCKETS, 0.5) == pytest.approx(0.1)
    assert quantile(BUCKETS, 0.7) == pytest.approx(0.1 + 0.1 * 20 / 40)
    assert quantile(BUCKETS, 0.995) == pytest.approx(0.4)  # in +Inf: the last finite bound
    assert quantile((), 0.5) is None


def test_histogram_bounds_and_counts_above() -> None:
    assert bound_at_quantile(BUCKETS, 0.9) == 0.2
    assert bound_at_quantile(BUCKETS, 0.99) == 0.4
    assert bound_at_quantile(BUCKETS, 0.999) == 0.4  # only +Inf holds it: the largest finite
    assert bound_at_or_above([0.1, 0.25, 0.5, math.inf], 0.2) == 0.25
    assert bound_at_or_above([0.1, 0.25, math.inf], 1.0) is None
    assert count_above(BUCKETS, 0.2) == 10
    assert count_above(BUCKETS, 0.25) is None
    assert parse_le("+Inf") == math.inf and parse_le("0.25") == 0.25
    assert normalise([(0.1, 5)]) == ()  # no +Inf: the total is unknown
    assert normalise([(0.1, 5), (0.2, 4), (math.inf, 6)])[1] == (0.2, 5)  # made monotone
