"""The sequential judge: anytime-valid tests on event counts, canary against stable.

Pure: numbers in, numbers out, no I/O and no clock. The engine folds each
analysis interval's counter increases into bounded evidence kept in status
(`controller.engine.sequential`); the benchmark (`bench/judge`) runs the very
same functions over thousands of simulated releases at once. The statistics
and the choices behind them are explained in docs/judge.md.
"""

from controller.judge.eprocesses import (
    Design,
    Increment,
    Running,
    above,
    advance,
    begin,
    below,
    decision_log_e,
    fold,
    has_data,
    interval_log_lr,
    log_e_value,
    not_worse_than,
    rejects,
    robust_products,
    worse_than,
)
from controller.judge.histograms import (
    Buckets,
    bound_at_or_above,
    bound_at_quantile,
    count_above,
    normalise,
    parse_le,
    quantile,
)
from controller.judge.likelihoods import canary_share, rate_log_lr, split_log_lr
from controller.judge.tallies import Tally, high_water, increment, increment_of

__all__ = [
    "Buckets",
    "Design",
    "Increment",
    "Running",
    "Tally",
    "above",
    "advance",
    "begin",
    "below",
    "bound_at_or_above",
    "bound_at_quantile",
    "canary_share",
    "count_above",
    "decision_log_e",
    "fold",
    "has_data",
    "high_water",
    "increment",
    "increment_of",
    "interval_log_lr",
    "log_e_value",
    "normalise",
    "not_worse_than",
    "parse_le",
    "quantile",
    "rate_log_lr",
    "rejects",
    "robust_products",
    "split_log_lr",
    "worse_than",
]
