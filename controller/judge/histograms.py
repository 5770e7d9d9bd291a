"""Prometheus histogram buckets as counts, for the latency tests.

A latency regression is turned into event counts the split and rate tests
already handle: the requests slower than a bucket bound. For canary against
stable the bound is the stable's q-quantile (rounded up to a bucket bound,
because the histogram knows nothing finer); for an absolute bound on the
q-quantile it is the smallest bucket bound at or above it. Reading only
whole buckets means no interpolation error enters the statistic.

Buckets are ``(upper bound, cumulative count)`` pairs with ``math.inf`` for
``+Inf``, as ``sum by (le) (increase(x_bucket[w]))`` returns them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Buckets = tuple[tuple[float, float], ...]


def parse_le(text: str) -> float:
    """A bucket's `le` label as a float (`+Inf` is infinity)."""
    return math.inf if text.strip() in ("+Inf", "Inf", "inf") else float(text)


def normalise(pairs: Iterable[tuple[float, float]]) -> Buckets:
    """Sorted by bound, counts made monotone (as histogram_quantile does), +Inf required.

    Returns () when there is no +Inf bucket: without it the total is unknown.
    """
    ordered = sorted((float(le), max(0.0, float(c))) for le, c in pairs if not math.isnan(c))
    if not ordered or not math.isinf(ordered[-1][0]):
        return ()
    out: list[tuple[float, float]] = []
    running = 0.0
    for le, count in ordered:
        running = max(running, count)
        out.append((le, running))
    return tuple(out)


def total(buckets: Buckets) -> float:
    return buckets[-1][1] if buckets else 0.0


def quantile(buckets: Buckets, q: float) -> float | None:
    """The q-quantile with histogram_quantile's linear interpolation (None without data)."""
    count = total(buckets)
    if count <= 0 or len(buckets) < 2:
        return None
    rank = q * count
    previous_le, previous_count = 0.0, 0.0
    for index, (le, cumulative) in enumerate(buckets):
        if cumulative >= rank:
            if math.isinf(le):
                return buckets[-2][0]
            if index == 0 and le <= 0:
                return le
            start = previous_le if index > 0 else 0.0
            inside = cumulative - previous_count
            if inside <= 0:
                return le
            return start + (le - start) * (rank - previous_count) / inside
        previous_le, previous_count = le, cumulative
    return buckets[-2][0]


def bound_at_quantile(buckets: Buckets, q: float) -> float | None:
    """The smallest finite bucket bound holding at least a q share of the requests.

    When only +Inf does, the largest finite bound: it is still a bound most
    requests stay under. None without data or without finite buckets.
    """
    count = total(buckets)
    finite = [(le, c) for le, c in buckets if not math.isinf(le)]
    if count <= 0 or not finite:
        return None
    for le, cumulative in finite:
        if cumulative >= q * count:
            return le
    return finite[-1][0]


def bound_at_or_above(bounds: Sequence[float], value: float) -> float | None:
    """The smallest finite bucket bound >= value (None if every bound is below it)."""
    candidates = [b for b in bounds if not math.isinf(b) and (b >= value or math.isclose(b, value))]
    return min(candidates) if candidates else None


def count_above(buckets: Buckets, bound: float) -> float | None:
    """Requests slower than `bound`, which must be one of the bucket bounds (else None)."""
    for le, cumulative in buckets:
        if math.isclose(le, bound, rel_tol=1e-9):
            return max(0.0, total(buckets) - cumulative)
    return None
