"""The three judges, vectorised over runs: when, if ever, does each roll back?

* ``sequential``: the controller's judge (`controller.judge`), fed look by
  look the way `controller.engine.sequential` feeds it for one release:
  errors compared with maxRatio 1.5, latency (share of requests slower than
  the stable's p99 bucket) with maxRatio 2, falseAlarmRate 0.01 per release
  split over the two, a look every 15 s (each scrape), no absolute bound.
  `tests/unit/test_bench_agreement.py` checks that this fast path and the
  engine take the same decisions at the same looks.
* ``threshold-argo``: an AnalysisTemplate with two metrics, error ratio
  ``< 2%`` and p99 ``< 200ms``, each over the last minute, ``interval: 1m``,
  ``failureLimit: 3`` each (a metric fails at its 4th failed measurement; a
  NaN result fails its condition).
* ``threshold-flagger``: the same checks as ``thresholdRange`` (request
  success rate min 98%, duration max 200 ms), ``interval: 1m``,
  ``threshold: 5`` (roll back once five checks have failed; an interval in
  which both fail counts once).

Each returns the rollback time in seconds from the release start, or inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.judge.scenarios import SCRAPE_S, Counters, bound_index
from controller.judge import (
    Design,
    Increment,
    has_data,
    interval_log_lr,
    log_e_value,
    robust_products,
    worse_than,
)
from controller.judge.eprocesses import log_floor

ERROR_MAX = 0.02
LATENCY_MAX_S = 0.2
ARGO_FAILURE_LIMIT = 3
FLAGGER_THRESHOLD = 5


@dataclass(frozen=True)
class SequentialConfig:
    error_effect: float = 1.5
    latency_effect: float = 2.0
    quantile: float = 0.99
    false_alarm_rate: float = 0.01
    tests: int = 2  # errors compare + latency compare share the false-alarm rate
    interval_s: int = SCRAPE_S
    """`analysis.interval`: a look every this many seconds (a multiple of the scrape interval)."""

    def worse(self, effect: float) -> Design:
        return worse_than(effect, self.false_alarm_rate / self.tests)


BLOCK = 480
"""Looks processed at a time (2 hours); the loop stops once every release has rolled back."""


def _increments(reads: np.ndarray) -> Increment:
    """The engine's increments: against the high-water baseline, events clipped to requests.

    `reads` is (runs, looks, 4): canary events, canary requests, stable
    events, stable requests, cumulative as read at every look.
    """
    runs = reads.shape[0]
    baseline = np.maximum.accumulate(reads, axis=1)
    previous = np.concatenate([np.zeros((runs, 1, 4)), baseline[:, :-1]], axis=1)
    d = reads - previous
    d_canary_total = np.maximum(d[..., 1], 0)
    d_stable_total = np.maximum(d[..., 3], 0)
    return Increment(
        np.clip(d[..., 0], 0, d_canary_total),
        d_canary_total,
        np.clip(d[..., 2], 0, d_stable_total),
        d_stable_total,
    )


def first_fails(
    tests: list[tuple[Design, np.ndarray, np.ndarray]], times: np.ndarray
) -> list[np.ndarray]:
    """When each 'worse' test first rejects, per run: inf if never.

    Each test is (design, reads, counting): looks that do not count only move
    the baseline (the engine's 'anchor'). The tests run in one loop (their
    designs share level and weights, hence caps and threshold), applying
    `controller.judge.advance` inlined, with the floors computed once, and
    deciding on `robust_products`: the same arithmetic as the engine, fast
    enough for millions of looks.
    """
    designs = [d for d, _, _ in tests]
    first = designs[0]
    for d in designs[1:]:
        assert np.allclose(d.log_cap, first.log_cap) and d.log_threshold == first.log_threshold
    increments = [_increments(reads) for _, reads, _ in tests]
    sizes = [reads.shape[0] for _, reads, _ in tests]
    counting = np.concatenate([c for _, _, c in tests])
    rows, looks = counting.shape
    releases = sizes[0]
    until = np.broadcast_to(times, counting.shape)
    since = np.concatenate([np.zeros((rows, 1)), until[:, :-1]], axis=1)
    floors = log_floor(since, until)
    cap, ceiling = first.log_cap, first.log_ceiling
    zero = first.start((rows,))
    products, recent, largest = zero.copy(), zero.copy(), zero.copy()
    pair = np.empty_like(zero)
    failed = np.full(rows, np.inf)
    for block in range(0, looks, BLOCK):
        span = slice(block, min(looks, block + BLOCK))
        parts = [
            (interval_log_lr(d, _slice(inc, span)), has_data(d, _slice(inc, span)))
            for d, inc in zip(designs, increments, strict=True)
        ]
        llr = np.minimum(np.concatenate([p[0] for p in parts]), cap)
        fresh = np.concatenate([p[1] for p in parts])
        count = counting[:, span]
        simple = count.all(axis=0) & fresh.all(axis=0)  # looks needing no per-row masks
        history = np.empty(llr.shape)
        for j in range(llr.shape[1]):
            added = llr[:, j]
            floor = floors[:, block + j, None]
            if simple[j]:
                np.add(products, added, out=products)
                np.maximum(products, floor, out=products)
                np.minimum(products, ceiling, out=products)
                np.maximum(recent, 0.0, out=pair)
                pair += np.maximum(added, 0.0)
                np.maximum(largest, pair, out=largest)
                recent = added
            else:
                counted = count[:, j, None]
                products = np.where(counted, np.clip(products + added, floor, ceiling), products)
                update = counted & fresh[:, j, None]
                bursts = np.maximum(recent, 0.0) + np.maximum(added, 0.0)
                largest = np.where(update, np.maximum(largest, bursts), largest)
                recent = np.where(update, added, recent)
            history[:, j] = robust_products(products, largest)
        failed = np.minimum(failed, _first_crossing(history, designs, sizes, times[span]))
        # a release is over at its first rollback, whichever test decides it
        if np.isfinite(failed.reshape(len(tests), releases).min(axis=0)).all():
            break
    return list(failed.reshape(len(tests), releases))


def _slice(inc: Increment, span: slice) -> Increment:
    return Increment(
        *(np.asarray(v)[:, span] for v in (inc.canary_events, inc.canary_total)),
        *(np.asarray(v)[:, span] for v in (inc.stable_events, inc.stable_total)),
    )


def _first_crossing(
    history: np.ndarray, designs: list[Design], sizes: list[int], times: np.ndarray
) -> np.ndarray:
    """Per row, the first time its mixture e-value reached the threshold in this block."""
    threshold = designs[0].log_threshold
    # the mixture never exceeds its best alternative: only near misses need the full sum
    near = history.max(axis=2) >= threshold
    crossed = np.zeros(near.shape, dtype=bool)
    start = 0
    for design, n in zip(designs, sizes, strict=True):
        mine = np.zeros_like(near)
        mine[start : start + n] = near[start : start + n]
        crossed[mine] = log_e_value(history[mine], design) >= threshold
        start += n
    return np.where(crossed.any(axis=1), times[crossed.argmax(axis=1)], np.inf)


def sequential(c: Counters, cfg: SequentialConfig | None = None) -> np.ndarray:
    cfg = cfg or SequentialConfig()
    canary_requests = c.reads(c.canary_requests)
    stable_requests = c.reads(c.stable_requests, canary=False)
    error_reads = np.stack(
        [
            c.reads(c.canary_errors),
            canary_requests,
            c.reads(c.stable_errors, canary=False),
            stable_requests,
        ],
        axis=2,
    )
    # Latency: the bound is read off the stable's histogram at the first look
    # (every run has stable traffic by then); that look only anchors the counts.
    chosen = bound_index(c.first_stable_above, c.stable_requests[:, 0], cfg.quantile)
    assert (chosen == c.bound).all(), "the simulation drew slow counts at another bound"
    latency_reads = np.stack(
        [
            c.reads(c.canary_slow),
            canary_requests,
            c.reads(c.stable_slow, canary=False),
            stable_requests,
        ],
        axis=2,
    )
    # A longer analysis interval reads the same counters less often. (The
    # latency bound stays the one drawn from the first scrape's histogram.)
    if cfg.interval_s % SCRAPE_S:
        raise ValueError(f"the analysis interval must be a multiple of {SCRAPE_S}s")
    taken = slice(cfg.interval_s // SCRAPE_S - 1, None, cfg.interval_s // SCRAPE_S)
    error_reads, latency_reads = error_reads[:, taken], latency_reads[:, taken]
    every = np.ones(error_reads.shape[:2], dtype=bool)
    after_first = every.copy()
    after_first[:, 0] = False
    errors_failed, latency_failed = first_fails(
        [
            (cfg.worse(cfg.error_effect), error_reads, every),
            (cfg.worse(cfg.latency_effect), latency_reads, after_first),
        ],
        c.look_times[taken],
    )
    return np.minimum(errors_failed, latency_failed)


def _threshold_failures(c: Counters) -> tuple[np.ndarray, np.ndarray]:
    """Per check: did the error-ratio check fail, did the p99 check fail?

    histogram_quantile(0.99) is below 200 ms exactly when more than 99% of
    the window's requests are in buckets up to 200 ms (with linear
    interpolation inside a bucket, the estimate reaches the bucket's upper
    bound only at its last request), so that is what is checked.
    """
    requests = c.window(c.canary_requests)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = c.window(c.canary_errors) / requests
        slow = c.window(c.canary_over_max)
        p99_ok = (requests > 0) & (requests - slow > 0.99 * requests)
    # NaN (no requests) fails a condition like `result < 0.02`, as in Argo and Flagger
    return ~(ratio < ERROR_MAX), ~p99_ok


def _first(mask: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.where(mask.any(axis=1), times[mask.argmax(axis=1)], np.inf)


def threshold_argo(c: Counters) -> np.ndarray:
    error_failed, latency_failed = _threshold_failures(c)
    over = (np.cumsum(error_failed, axis=1) > ARGO_FAILURE_LIMIT) | (
        np.cumsum(latency_failed, axis=1) > ARGO_FAILURE_LIMIT
    )
    return _first(over, c.check_times)


def threshold_flagger(c: Counters) -> np.ndarray:
    error_failed, latency_failed = _threshold_failures(c)
    failed_checks = np.cumsum(error_failed | latency_failed, axis=1)
    return _first(failed_checks >= FLAGGER_THRESHOLD, c.check_times)


JUDGES = {
    "sequential": sequential,
    "threshold-argo": threshold_argo,
    "threshold-flagger": threshold_flagger,
}
