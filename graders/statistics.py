"""Statistics of the sampler's checks: an exact binomial test of draws against probabilities, and a
two-proportion z statistic of rates.

The count of token ``i`` in ``n`` draws is ``Binomial(n, p_i)``; its two-sided p-value is twice the
smaller tail, summed exactly from ``math.lgamma``. A row of counts fails when its least likely token's
p-value, times the number of tokens tested (Bonferroni), is below ``ALPHA``: a correct sampler fails
the test of one row with probability at most ``ALPHA``, a bound, not an approximation.
"""

from __future__ import annotations

import math

ALPHA = 1e-6  # largest chance that a correct sampler fails the test of one row


def _log_pmf(i: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)


def binomial_p_value(k: int, n: int, p: float) -> float:
    """Two-sided p-value of seeing ``k`` successes in ``n`` draws of probability ``p`` (0 < p < 1).

    Twice the tail on ``k``'s side of the mean, ``P(X >= k)`` or ``P(X <= k)``, summed exactly from
    ``k`` outward: past the mean the terms only shrink, so the sum stops once they no longer count.
    """
    step = 1 if k >= n * p else -1
    total, i = 0.0, k
    while 0 <= i <= n:
        term = math.exp(_log_pmf(i, n, p))
        total += term
        if term <= total * 1e-17:
            break
        i += step
    return min(1.0, 2 * total)


def worst_token(counts: list[int], probs: list[float]) -> tuple[int, float] | None:
    """The token whose count is least likely under ``probs``, and its Bonferroni-corrected p-value,
    or None when no token can be tested (one token holds all the probability)."""
    tested = [i for i, p in enumerate(probs) if 0 < p < 1]
    if not tested:
        return None
    n = sum(counts)
    p_values = {i: binomial_p_value(counts[i], n, probs[i]) for i in tested}
    i = min(tested, key=p_values.get)
    return i, min(1.0, p_values[i] * len(tested))


def fits(counts: list[int], probs: list[float]) -> bool:
    """Do the counts pass the exact test for ``probs`` (and stay on its support)?"""
    if any(c and not p for c, p in zip(counts, probs)):
        return False
    worst = worst_token(counts, probs)
    return worst is None or worst[1] >= ALPHA


def z_score(a: dict, b: dict) -> float:
    """Two-proportion z statistic of rates ``a`` and ``b`` (``{"p", "n"}``), pooled; 0 when both are 0 or 1."""
    pooled = (a["p"] * a["n"] + b["p"] * b["n"]) / (a["n"] + b["n"])
    if pooled in (0.0, 1.0):
        return 0.0
    return (a["p"] - b["p"]) / math.sqrt(pooled * (1 - pooled) * (1 / a["n"] + 1 / b["n"]))
