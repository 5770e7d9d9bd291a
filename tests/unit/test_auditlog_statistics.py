"""The audit-log statistics against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from controller.auditlog.corrections import benjamini_hochberg, holm
from controller.auditlog.rates import (
    anytime_pvalue,
    events,
    expected_count,
    fixed_pvalue,
    mixture_log_likelihood_ratio,
    null_share_seasonal,
)


@pytest.mark.parametrize(
    ("count", "reference", "p0"),
    [(0, 10, 0.1), (3, 10, 0.1), (30, 30, 0.25), (12, 300, 0.125), (500, 4000, 0.1)],
)
def test_fixed_pvalue_is_the_exact_binomial_test(count: int, reference: int, p0: float) -> None:
    expected = stats.binomtest(count, count + reference, p0, alternative="greater").pvalue
    assert fixed_pvalue(count, reference, p0) == pytest.approx(expected, rel=1e-9)


def test_fixed_pvalue_closed_form_when_every_event_is_on_the_canary() -> None:
    assert fixed_pvalue(5, 0, 0.2) == pytest.approx(0.2**5, rel=1e-12)


@pytest.mark.parametrize(
    ("count", "reference", "p0"), [(3, 10, 0.1), (30, 30, 0.25), (12, 100, 0.125), (0, 7, 0.5)]
)
def test_mixture_likelihood_ratio_matches_numerical_integration(
    count: int, reference: int, p0: float
) -> None:
    def likelihood(p: float) -> float:
        return float(p**count * (1 - p) ** reference)

    mixture, _ = integrate.quad(likelihood, p0, 1, epsabs=0, epsrel=1e-12)
    ratio = mixture / (1 - p0) / likelihood(p0)
    assert mixture_log_likelihood_ratio(count, reference, p0) == pytest.approx(
        math.log(ratio), rel=1e-7, abs=1e-9
    )


def test_mixture_likelihood_ratio_closed_forms() -> None:
    # all n events on the canary: (1 - p0^(n+1)) / ((n+1) (1-p0) p0^n)
    n, p0 = 6, 0.2
    closed = (1 - p0 ** (n + 1)) / ((n + 1) * (1 - p0) * p0**n)
    assert math.exp(mixture_log_likelihood_ratio(n, 0, p0)) == pytest.approx(closed, rel=1e-10)
    # none on the canary: 1 / (n+1), which is no evidence at all
    assert math.exp(mixture_log_likelihood_ratio(0, n, p0)) == pytest.approx(1 / (n + 1))
    assert anytime_pvalue(0, n, p0) == 1.0


def test_likelihood_ratio_stays_finite_for_millions_of_events() -> None:
    log_lr = mixture_log_likelihood_ratio(200_000, 1_000_000, 0.1)
    assert math.isfinite(log_lr) and log_lr > 1000
    assert anytime_pvalue(200_000, 1_000_000, 0.1) == 0.0
    assert anytime_pvalue(100_000, 900_000, 0.1) == 1.0  # exactly the null share


def test_seasonal_share_and_expected_count() -> None:
    assert null_share_seasonal(3) == 0.25
    assert null_share_seasonal(7) == 0.125
    assert expected_count(70, null_share_seasonal(7)) == pytest.approx(10)  # 70 over 7 days
    assert expected_count(90, 0.1) == pytest.approx(10)  # 90 on stable's 9 pods, canary has 1
    assert events(29.7) == 30 and events(-0.2) == 0
    with pytest.raises(ValueError):
        null_share_seasonal(0)


def test_anytime_pvalue_keeps_its_level_over_a_thousand_looks_where_a_fixed_test_does_not() -> None:
    """Under no change, look after every event: the anytime p-value stays below alpha."""
    rng = np.random.default_rng(20261124)
    alpha, p0, runs, looks = 0.05, 0.1, 400, 600
    anytime_alarms = fixed_alarms = 0
    for _ in range(runs):
        canary = np.cumsum(rng.random(looks) < p0)
        totals = np.arange(1, looks + 1)
        anytime = fixed = False
        for c, n in zip(canary[::5], totals[::5], strict=True):
            anytime = anytime or anytime_pvalue(int(c), int(n - c), p0) <= alpha
            fixed = fixed or fixed_pvalue(int(c), int(n - c), p0) <= alpha
        anytime_alarms += anytime
        fixed_alarms += fixed
    assert anytime_alarms / runs <= alpha
    assert fixed_alarms / runs > 3 * alpha  # why the controller does not use it to decide


def test_anytime_pvalue_detects_a_doubling_within_reasonable_counts() -> None:
    # canary at 10% of pods doing twice its share (2 events for stable's 9): 20 of 110 events
    # is not yet enough for alpha 0.01 over 20 actions, 80 of 440 is
    assert anytime_pvalue(20, 90, 0.1) > 0.01 / 20
    assert anytime_pvalue(80, 360, 0.1) < 0.01 / 20


def test_holm_on_a_textbook_example() -> None:
    pvalues = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 <= .05/4, 0.01 <= .05/3, then 0.03 > .05/2 stops
    assert holm(pvalues, 0.05) == [True, False, False, True]


def test_benjamini_hochberg_on_a_textbook_example() -> None:
    pvalues = [0.01, 0.04, 0.03, 0.005]
    # sorted thresholds k * .05 / 4: .0125 .025 .0375 .05, every p below its own
    assert benjamini_hochberg(pvalues, 0.05) == [True, True, True, True]
    assert benjamini_hochberg([0.02, 0.5, 0.9], 0.05) == [False, False, False]


def test_benjamini_hochberg_agrees_with_scipy() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        pvalues = np.concatenate([rng.random(15), rng.random(5) * 0.01])
        adjusted = stats.false_discovery_control(pvalues, method="bh")
        assert benjamini_hochberg(list(pvalues), 0.05) == list(adjusted <= 0.05)


def test_holm_agrees_with_its_adjusted_pvalues() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        pvalues = list(np.concatenate([rng.random(12), rng.random(4) * 0.005]))
        m = len(pvalues)
        order = sorted(range(m), key=lambda i: pvalues[i])
        adjusted, running = [0.0] * m, 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * pvalues[i]))
            adjusted[i] = running
        assert holm(pvalues, 0.05) == [a <= 0.05 for a in adjusted]


def test_weights_give_sensitive_actions_a_larger_share_of_alpha() -> None:
    pvalues = [0.004, 0.001, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    # unweighted: 0.001 <= .02/10 is rejected, then 0.004 > .02/9 stops
    assert holm(pvalues, 0.02) == [False, True] + [False] * 8
    # half of alpha on the first action alone: tested at 0.01
    weights = [0.5] + [0.5 / 9] * 9
    assert holm(pvalues, 0.02, weights)[0] is True
    assert benjamini_hochberg(pvalues, 0.02, weights)[0] is True
    with pytest.raises(ValueError):
        holm(pvalues, 0.05, [1.0])
