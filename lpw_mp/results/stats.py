"""Small statistics helpers: percentiles and the summaries reports print."""

import math
import statistics

#: Fewer samples than this make a median unreliable.
MIN_SAMPLES = 20
#: A p99 from fewer samples than this is decided by one or two of them.
P99_SAMPLES = 100


def percentile(values, q: float):
    """The ``q``-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(values) -> dict:
    """n, mean, median, p99, min, max and the coefficient of variation of ``values``."""
    values = list(values)
    if not values:
        return {"n": 0, "mean": None, "median": None, "p99": None, "min": None, "max": None,
                "cv": None}
    mean = statistics.fmean(values)
    cv = statistics.pstdev(values) / mean if len(values) > 1 and mean else 0.0
    return {"n": len(values), "mean": mean, "median": statistics.median(values),
            "p99": percentile(values, 99), "min": min(values), "max": max(values), "cv": cv}


def hist_percentile(counts, q: float, steps: int):
    """The ``q``-th percentile of a log histogram whose bucket ``b`` holds values in
    ``[2**(b/steps), 2**((b+1)/steps))``, as that bucket's geometric middle; None if empty."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = total * q / 100.0, 0
    for bucket, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return 2 ** ((bucket + 0.5) / steps)
    return None


#: The confidence the tables' intervals are computed for.
CONFIDENCE = 0.95


def _coverage(n: int, k: int) -> float:
    """How often ``[x_(k), x_(n+1-k)]`` of ``n`` sorted samples contains the population
    median: 1 - 2 P(Binomial(n, 1/2) <= k - 1), whatever the distribution."""
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0 ** n


def median_interval(values, confidence: float = CONFIDENCE):
    """The median of ``values`` and a distribution-free interval for it, from order statistics
    (the interval hyperfine and pyperf users read as "the median is somewhere in here").

    Returns ``{"median", "low", "high", "n", "confidence"}``, where ``confidence`` is what the
    interval achieves: at least ``confidence`` from 6 samples on (for 95%); below that no pair
    of order statistics reaches 95%, so the interval is the range of the samples and says its
    own, lower, confidence (3 samples 75%, 4 87.5%, 5 93.8%). None for fewer than 2 values."""
    data = sorted(v for v in values if v is not None)
    n = len(data)
    if n < 2:
        return None
    k = 1
    while k + 1 <= n // 2 and _coverage(n, k + 1) >= confidence:
        k += 1
    return {"median": statistics.median(data), "low": data[k - 1], "high": data[n - k],
            "n": n, "confidence": _coverage(n, k)}
