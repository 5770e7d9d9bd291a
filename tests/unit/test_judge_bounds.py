"""The bounds the judge benchmark is compared with (bench/judge/bounds.py) behave as claimed.

docs/judge.md argues from them that issue #4's x2 and crash targets are out
of reach for any judge that a single bad scrape cannot roll back; these
tests pin the properties that argument uses.
"""

from __future__ import annotations

import numpy as np

from bench.judge.bounds import implausible_only, oracle
from bench.judge.judges import SequentialConfig, sequential
from bench.judge.scenarios import Setting, simulate


def test_setting_a_burst_aside_never_decides_sooner() -> None:
    counters = simulate(Setting(100, "flat", "errors_x2", horizon_s=3600), runs=50, seed=1)
    plain, robust = oracle(counters, 2.0, robust=False), oracle(counters, 2.0, robust=True)
    assert np.isfinite(robust).all()
    assert (plain <= robust).all() and (plain < robust).any()


def test_no_rollback_before_the_third_look_whatever_the_interval() -> None:
    """Two looks can always be one bad sample: a crash at 1,000 requests/s, overwhelming
    from the first look, is rolled back at the third look, not sooner."""
    counters = simulate(Setting(1000, "flat", "errors_x10", horizon_s=3600), runs=20, seed=2)
    for interval in (15, 60, 300):
        times = sequential(counters, SequentialConfig(interval_s=interval))
        assert (times == 3 * interval).all(), interval
    assert (sequential(counters) == sequential(counters, SequentialConfig(interval_s=15))).all()


def test_setting_aside_only_implausible_intervals_lets_a_spiking_scrape_roll_back() -> None:
    """The rejected cheaper rule: at 300 requests/s a +50 glitch looks like a genuine
    interval of a x12 regression, so nothing is set aside and it rolls good releases back."""
    clean = simulate(Setting(300, "flat", horizon_s=2 * 3600), runs=200, seed=77)
    spiked = simulate(Setting(300, "flat", nuisance="spiking_scrape", horizon_s=7200), 200, 77)
    assert (implausible_only(spiked) < implausible_only(clean)).sum() >= 2
    assert not (sequential(spiked) < sequential(clean)).any()
