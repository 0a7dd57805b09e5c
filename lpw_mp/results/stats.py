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


def hist_percentile(counts, q: float, steps: int, first_bucket: int = 0):
    """The ``q``-th percentile (0..100) of a log histogram whose bucket ``b`` holds values in
    ``[2**(b/steps), 2**((b+1)/steps))``, ``counts[i]`` being bucket ``first_bucket + i``;
    None if it is empty. (Bucket 0 also holds what is below 1, the last what is above it.)

    The rank ``total * q / 100`` falls in some bucket ``b``, and the percentile is
    interpolated within it, log-linearly by rank: the value at fraction ``f`` of the
    bucket's count is ``2**((b + f)/steps)``, as if its values were spread evenly in log over
    it. So the median of one value is its bucket's geometric middle, but the median of many
    does not snap to a midpoint: a sample spread smoothly over many buckets comes back almost
    exactly. The bound is one bucket: the sample's value of rank ``ceil(total * q / 100)``
    is in the same bucket, so the two are less than a factor ``2**(1/steps)`` apart (9% at
    8 steps). Inside a bucket the histogram keeps no trace of where its values were: two
    percentiles closer than that factor cannot be told apart (``compare_to_ipi``'s
    ``resolved``)."""
    total = sum(counts)
    if not total or not 0 <= q <= 100:
        return None
    rank, seen = total * q / 100.0, 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            within = min(1.0, max(0.0, (rank - seen) / count))
            return 2 ** ((first_bucket + index + within) / steps)
        seen += count
    return None


def log_histogram(counts, steps: int, unit: str = "ns") -> dict:
    """``counts`` of a log histogram (bucket ``b`` as in ``hist_percentile``), described for
    a document: ``unit``, ``scale`` ``log2``, ``steps_per_doubling``, ``first_bucket``, the
    ``counts`` from the first non-empty bucket to the last (empty buckets between them
    kept), and their ``edges``: the lower edge of each bucket then the upper edge of the last,
    so that bucket ``first_bucket + i`` holds ``[edges[i], edges[i + 1])`` with ``counts[i]``
    values. No values: no counts, no edges."""
    filled = [index for index, count in enumerate(counts) if count]
    first = filled[0] if filled else 0
    kept = list(counts[first:filled[-1] + 1]) if filled else []
    return {"unit": unit, "scale": "log2", "steps_per_doubling": steps, "first_bucket": first,
            "edges": [2 ** ((first + i) / steps) for i in range(len(kept) + 1)] if kept else [],
            "counts": kept}


def histogram_percentile(histogram: dict, q: float):
    """``hist_percentile`` of a histogram as ``log_histogram`` describes it; None if it has
    no values (or is None)."""
    if not histogram:
        return None
    return hist_percentile(histogram["counts"], q, histogram["steps_per_doubling"],
                           histogram["first_bucket"])


#: The confidence the tables' intervals are computed for.
CONFIDENCE = 0.95


def _coverage(n: int, k: int) -> float:
    """How often ``[x_(k), x_(n+1-k)]`` of ``n`` sorted samples contains the population
    median: 1 - 2 P(Binomial(n, 1/2) <= k - 1), whatever the distribution."""
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0 ** n


def median_interval(values, confidence: float = CONFIDENCE):
    """The median of ``values`` and a distribution-free interval for it, from the order
    statistics (the binomial interval of a median: no assumption about the distribution,
    which for timings on a shared host is skewed and has outliers).

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
