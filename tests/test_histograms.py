"""The walker phase's log histograms: percentiles interpolated within a bucket (not its
midpoint), within one bucket of the exact ones, and the JSON encoding whose edges and counts
line up."""

import math
import random

import pytest

from lpw_mp.kernel.cpu import hist_bucket
from lpw_mp.kernel.machine import HIST_BUCKETS, HIST_STEPS
from lpw_mp.results.stats import hist_percentile, histogram_percentile, log_histogram, percentile
from lpw_mp.results.verdicts import compare_to_ipi

#: One bucket's width as a factor: 2**(1/8), about 9%.
BUCKET = 2 ** (1 / HIST_STEPS)
QS = (0.5, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)


def _counts(values) -> list:
    counts = [0] * HIST_BUCKETS
    for value in values:
        counts[hist_bucket(value)] += 1
    return counts


def _walk_costs(n=20_000, seed=12) -> list:
    """Integer nanoseconds, log-normal around 800 ns with a long tail, as walk costs are."""
    rng = random.Random(seed)
    return [max(1, round(rng.lognormvariate(math.log(800), 0.8))) for _ in range(n)]


def _midpoint(value: float) -> float:
    """The geometric middle of the bucket holding ``value``: what the old median gave."""
    return 2 ** ((hist_bucket(value) + 0.5) / HIST_STEPS)


def test_percentiles_are_within_one_bucket_of_the_exact_ones():
    """For a sample of known values, every percentile of their histogram is less than one
    bucket (a factor 2**(1/8)) from the sample's value of that rank, and within one bucket
    of the exact (linearly interpolated) percentile of the values."""
    values = _walk_costs()
    data, counts = sorted(values), _counts(values)
    for q in QS:
        estimate = hist_percentile(counts, q, HIST_STEPS)
        of_rank = data[max(0, math.ceil(len(data) * q / 100) - 1)]
        assert 1 / BUCKET < estimate / of_rank < BUCKET, q
        assert 1 / BUCKET < estimate / percentile(values, q) < BUCKET, q


def test_percentiles_do_not_snap_to_bucket_midpoints():
    """Interpolated by rank within its bucket, no percentile of a real-looking sample is its
    bucket's midpoint, and percentiles rise with q even inside one bucket."""
    counts = _counts(_walk_costs())
    estimates = [hist_percentile(counts, q, HIST_STEPS) for q in QS]
    for q, estimate in zip(QS, estimates):
        assert estimate != pytest.approx(_midpoint(estimate), rel=1e-9), q
    assert estimates == sorted(estimates) and len(set(estimates)) == len(estimates)
    inside = [hist_percentile(counts, q, HIST_STEPS) for q in (50, 50.5, 51)]
    assert len({hist_bucket(v) for v in inside}) == 1 and inside[0] < inside[1] < inside[2]


def test_a_smooth_sample_comes_back_almost_exactly():
    """Values spread evenly in log over four doublings (32 buckets) are recovered to within
    0.5%, where a bucket's midpoint could be up to 4.4% off: the interpolation, not the
    bucket width, sets the error when the values fill their buckets evenly."""
    n = 10_000
    values = [2 ** (8 + 4 * (i + 0.5) / n) for i in range(n)]
    counts = _counts(values)
    worst_midpoint = 0.0
    for q in range(1, 100):
        exact = percentile(values, q)
        assert hist_percentile(counts, q, HIST_STEPS) == pytest.approx(exact, rel=0.005), q
        worst_midpoint = max(worst_midpoint, abs(_midpoint(exact) / exact - 1))
    assert worst_midpoint > 0.04


def test_one_value_gives_its_bucket_middle_and_edges():
    """A single value's median is its bucket's geometric middle (where nothing says more),
    its 0th and 100th percentiles the bucket's lower and upper edges; q outside 0..100 and
    an empty histogram have no percentile."""
    counts = _counts([500])
    b = hist_bucket(500)
    assert hist_percentile(counts, 50, HIST_STEPS) == pytest.approx(2 ** ((b + 0.5) / 8))
    assert hist_percentile(counts, 0, HIST_STEPS) == pytest.approx(2 ** (b / 8))
    assert hist_percentile(counts, 100, HIST_STEPS) == pytest.approx(2 ** ((b + 1) / 8))
    assert hist_percentile(counts, 101, HIST_STEPS) is None
    assert hist_percentile([0] * HIST_BUCKETS, 50, HIST_STEPS) is None
    assert hist_percentile([], 50, HIST_STEPS) is None


def test_encoded_histogram_edges_and_counts_line_up():
    """log_histogram trims the empty buckets at both ends (not those between), says where it
    starts, and gives one edge more than counts: every value lies between the edges of the
    bucket it was counted in, and the percentiles read from it are those of the full
    counts."""
    values = _walk_costs(5_000) + [100_000]  # a gap of empty buckets before the outlier
    counts = _counts(values)
    hist = log_histogram(counts, HIST_STEPS)
    assert hist["unit"] == "ns" and hist["scale"] == "log2"
    assert hist["steps_per_doubling"] == HIST_STEPS
    first, kept, edges = hist["first_bucket"], hist["counts"], hist["edges"]
    assert kept[0] and kept[-1] and 0 in kept and sum(kept) == len(values)
    assert len(edges) == len(kept) + 1 and edges == sorted(edges)
    assert counts[:first] == [0] * first and counts[first + len(kept):] == \
        [0] * (HIST_BUCKETS - first - len(kept))
    for value in values:
        i = hist_bucket(value) - first
        assert edges[i] <= value < edges[i + 1] and kept[i] > 0
    for q in QS:
        assert histogram_percentile(hist, q) == hist_percentile(counts, q, HIST_STEPS)


def test_empty_histogram_encodes_as_no_buckets():
    """No walks: the encoding has no counts and no edges, and no percentile."""
    hist = log_histogram([0] * HIST_BUCKETS, HIST_STEPS)
    assert hist["counts"] == [] and hist["edges"] == [] and hist["first_bucket"] == 0
    assert histogram_percentile(hist, 50) is None and histogram_percentile(None, 50) is None


def test_medians_within_a_bucket_are_unresolved():
    """Interpolated medians still cannot tell apart two samples whose values are less than a
    bucket apart: compare_to_ipi calls them unresolved, and two samples three buckets apart
    resolved."""
    base = _walk_costs()

    def phase(factor):
        counts = _counts([max(1, round(v * factor)) for v in base])
        return {"walks": len(base), "hist_steps": HIST_STEPS,
                "begin_end_median_ns": hist_percentile(counts, 50, HIST_STEPS),
                "begin_end_p99_ns": hist_percentile(counts, 99, HIST_STEPS),
                "irq_off_median_ns": 20_000.0}
    ipi = phase(1.0)
    assert compare_to_ipi(phase(1.04), ipi)["resolved"] is False
    assert compare_to_ipi(phase(BUCKET ** 3), ipi)["resolved"] is True
