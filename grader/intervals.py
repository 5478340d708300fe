"""A distribution-free interval for the median of a few timing samples.

Run times are skewed and few (3 to 10 runs), so no normal approximation: the interval comes from
order statistics. For n samples sorted x(1) <= ... <= x(n), the pair (x(k), x(n+1-k)) covers the
true median with probability

    coverage(n, k) = 1 - 2 * P(Binomial(n, 1/2) <= k - 1)

whatever the distribution (continuous samples). median_interval picks the innermost pair whose
coverage is at least MEDIAN_INTERVAL_COVERAGE. When no pair reaches it (n <= 4) the widest pair,
min..max, is used: its coverage is 1 - 2^(1-n), i.e. 0 for n = 1, 50% for 2, 75% for 3, 87.5%
for 4. For n = 5 min..max is the innermost pair reaching 90% (93.75%); n = 10 gives x(2)..x(9)
(97.9%); n = 20 gives x(6)..x(15) (95.9%).
"""

import math

MEDIAN_INTERVAL_COVERAGE = 0.90  # wanted probability that the interval holds the true median (fraction)


def coverage(n: int, k: int) -> float:
    """Probability that (x(k), x(n+1-k)) of n samples holds the true median (k is 1-based)."""
    below = sum(math.comb(n, i) for i in range(k)) / 2 ** n  # P(Binomial(n, 1/2) <= k - 1)
    return max(0.0, 1.0 - 2.0 * below)


def median_interval(samples, wanted: float = MEDIAN_INTERVAL_COVERAGE) -> tuple[float, float]:
    """(low, high): the innermost order-statistic pair covering the median with probability
    >= wanted; min..max when there are too few samples for that. ValueError when empty."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        raise ValueError("median_interval of no samples")
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= wanted:
        k += 1
    return ordered[k - 1], ordered[n - k]


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (low, high) intervals share a point: the two medians are then "tied"."""
    return a[0] <= b[1] and b[0] <= a[1]
