"""Correcting for testing many actions at once, with more weight on sensitive ones.

Every action in the window is a hypothesis, and the release is rolled back if
any is rejected, so what must stay below alpha is the chance that any true
null is rejected: the family-wise error rate. Holm's step-down procedure
controls it under any dependence between actions (and actions are dependent:
a busy hour raises them all), which is why it is the default.

Benjamini-Hochberg controls the false discovery rate instead. When nothing is
wrong (every null true) the FDR equals the FWER, so it protects a good release
just as well; when something is wrong a rollback is right anyway, and BH
reports more of the affected actions. Its guarantee assumes independent or
positively dependent p-values, which is the weaker footing.

Both take weights (Holm 1979; Genovese, Roeder and Wasserman 2006): an action
with weight w is tested at w times the ordinary level, the weights summing to
the number of actions, so sensitive actions get a larger share of alpha
without raising the total.
"""

from __future__ import annotations

from collections.abc import Sequence


def _weights(count: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count or any(w <= 0 for w in weights):
        raise ValueError("one positive weight per p-value")
    scale = count / sum(weights)
    return [w * scale for w in weights]


def holm(
    pvalues: Sequence[float], alpha: float, weights: Sequence[float] | None = None
) -> list[bool]:
    """Weighted Holm step-down: which hypotheses are rejected at family-wise level alpha."""
    w = _weights(len(pvalues), weights)
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i] / w[i])
    rejected = [False] * len(pvalues)
    remaining = sum(w)
    for i in order:
        if pvalues[i] > w[i] * alpha / remaining:
            break
        rejected[i] = True
        remaining -= w[i]
    return rejected


def benjamini_hochberg(
    pvalues: Sequence[float], alpha: float, weights: Sequence[float] | None = None
) -> list[bool]:
    """Weighted Benjamini-Hochberg step-up: rejected hypotheses at false discovery rate alpha."""
    m = len(pvalues)
    w = _weights(m, weights)
    scaled = [p / wi for p, wi in zip(pvalues, w, strict=True)]
    order = sorted(range(m), key=lambda i: scaled[i])
    cutoff = -1.0
    for rank, i in enumerate(order, start=1):
        if scaled[i] <= rank * alpha / m:
            cutoff = scaled[i]
    return [s <= cutoff for s in scaled]
