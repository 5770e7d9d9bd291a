"""Is an action's count in the canary window higher than its reference predicts?

Both comparisons reduce to one question about a split. Events of one action
arrive as a Poisson process in the canary window and in the reference (the
stable track over the same window, or the same hours of previous days). Under
"no change", each event independently lands in the canary side with a known
probability p0: the canary's share of the pods, or 1/(1 + days) against a
seasonal baseline of `days` days. So, given the total n, the canary count is
Binomial(n, p0): the exact conditional test for comparing two Poisson rates.

The controller looks again every analysis interval, for up to 24 hours. A
fixed-sample p-value tested at every look would raise false alarms far above
its nominal level, so the decision uses an anytime-valid p-value instead: the
likelihood ratio of a mixture of alternatives (p uniform on (p0, 1)) against
p0 is a nonnegative martingale under the null, and by Ville's inequality it
exceeds 1/alpha with probability at most alpha however often it is looked at.
The mixture has a closed form in beta functions.
"""

from __future__ import annotations

import math

from scipy import special

# scipy.stats is imported only where it is needed (see _log_upper_tail): it
# costs the controller process about 45 MiB of resident memory on its own.


def events(value: float) -> int:
    """Counts from Prometheus' increase() are extrapolated; tests need whole events."""
    return max(0, round(value))


def null_share_seasonal(days: int) -> float:
    """The canary window against `days` windows of the same length: 1 / (1 + days)."""
    if days < 1:
        raise ValueError("a seasonal baseline needs at least one day")
    return 1.0 / (1.0 + days)


def expected_count(reference: float, p0: float) -> float:
    """What the reference predicts for the canary side: reference x p0 / (1 - p0)."""
    return reference * p0 / (1.0 - p0)


def fixed_pvalue(count: int, reference: int, p0: float) -> float:
    """One-sided exact p-value for a single look: P(X >= count), X ~ Binomial(n, p0)."""
    _check(count, reference, p0)
    if count == 0:
        return 1.0
    # P(Binomial(n, p) >= c) = I_p(c, n - c + 1), the regularized incomplete beta
    return float(special.betainc(count, reference + 1, p0))


def mixture_log_likelihood_ratio(count: int, reference: int, p0: float) -> float:
    """log of  integral_{p0}^{1} L(p) dp / (1 - p0)  over  L(p0),  L(p) = p^c (1-p)^(n-c).

    The numerator is B(c+1, n-c+1) times the upper tail of a Beta(c+1, n-c+1)
    at p0, computed in logs so that n in the millions does not underflow.
    """
    _check(count, reference, p0)
    a, b = count + 1.0, reference + 1.0
    mixture = special.betaln(a, b) + _log_upper_tail(p0, a, b) - math.log1p(-p0)
    null = count * math.log(p0) + reference * math.log1p(-p0)
    return float(mixture - null)


def _log_upper_tail(x: float, a: float, b: float) -> float:
    """log P(Beta(a, b) > x): the special function directly (fast), the log form on underflow."""
    tail = float(special.betaincc(a, b, x))
    if tail > 1e-300:
        return math.log(tail)
    from scipy import stats  # rare: only for tails beyond double precision

    return float(stats.beta.logsf(x, a, b))


def anytime_pvalue(count: int, reference: int, p0: float) -> float:
    """min(1, 1 / likelihood ratio): valid at every look, however many looks there are."""
    log_lr = mixture_log_likelihood_ratio(count, reference, p0)
    return 1.0 if log_lr <= 0 else math.exp(-log_lr)


def _check(count: int, reference: int, p0: float) -> None:
    if count < 0 or reference < 0:
        raise ValueError(f"counts must be >= 0, got {count} and {reference}")
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"the null share must be in (0, 1), got {p0}")
