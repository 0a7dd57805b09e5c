"""Whether two sets of samples of one figure differ: the verdict ``compare`` prints beside a
ratio, as pyperf's ``compare_to`` prints ``1.20x slower`` or ``Not significant!``.

The test is **Welch's t-test on the logarithms of the samples**, two-sided, at ``ALPHA``
(0.05): ``scipy.stats.ttest_ind(log b, log a, equal_var=False)``.

- Logarithms, because timings on a shared host are skewed (a descheduled process makes a
  sample long, never short), and because the question is a ratio: on logarithms B/A becomes a
  difference, and 2x is the same effect whether the figure is 2 ns or 2 s. (A figure with a
  value of zero or below has no logarithm: its samples are tested as they are, and ``test``
  says so.)
- Welch's rather than Student's (which pyperf uses), because two runs need not share a spread:
  another ``--cpus`` changes the noise as well as the figure.

A difference is called only when the test finds it (p below ``ALPHA``) **and** the ratio of
the medians is at least ``MIN_EFFECT`` (1%) away from 1 **and** the medians point the same
way as the means of the logarithms. The floor is there because the t-test only sees the
spread within each run: two runs of one configuration minutes apart also differ by what the
host did between them, which no number of repeats inside a run measures, and a change of
less than 1% says nothing about the protocol in any case. The last condition keeps a verdict
from contradicting the ratio printed beside it.

The verdicts are ``faster``, ``slower``, ``not significant`` and ``one sample, cannot tell``
(either side has fewer than two samples: a spread, and so noise, cannot be estimated from
one). ``faster`` means B's figure is better in the figure's own direction: lower for a time
or a latency, higher for a throughput (walks/s) or a speedup; so walks/s halved reads
``2.00x slower``. One vocabulary for every figure, since every figure lpw_mp compares is a
speed or a cost."""

import math
import statistics
import warnings

#: The test's significance level: a difference is called when p is below it.
ALPHA = 0.05
#: Ratios of medians closer to 1 than this are "not significant" whatever the p-value.
MIN_EFFECT = 0.01

FASTER = "faster"
SLOWER = "slower"
NOT_SIGNIFICANT = "not significant"
ONE_SAMPLE = "one sample, cannot tell"
#: Every verdict ``verdict`` returns.
VERDICTS = (FASTER, SLOWER, NOT_SIGNIFICANT, ONE_SAMPLE)

#: The test, as ``verdict`` names it: on the logarithms, or (a value <= 0) on the values.
LOG_TEST = "Welch's t-test on log samples"
RAW_TEST = "Welch's t-test"


def verdict(a_values, b_values, higher_is_better: bool = False, alpha: float = ALPHA,
            min_effect: float = MIN_EFFECT) -> dict:
    """Whether B's samples of a figure differ from A's, and which way.

    Returns ``{"verdict", "ratio", "p_value", "test", "n_a", "n_b"}``: the verdict (one of
    ``VERDICTS``), the ratio of the medians B/A (None when A's median is 0), the test's
    two-sided p-value and the test's name (both None when a side has a single sample), and
    the number of samples on each side. ``None`` values are left out of either side.

    Samples identical within each side (no spread) need no test: equal medians have p 1,
    unequal ones p 0 (every B differs from every A the same way, the limit of the t-test as
    the spread goes to 0). ValueError when a side has no value at all."""
    a = [float(v) for v in a_values if v is not None]
    b = [float(v) for v in b_values if v is not None]
    if not a or not b:
        raise ValueError("a verdict needs at least one value on each side")
    median_a, median_b = statistics.median(a), statistics.median(b)
    ratio = median_b / median_a if median_a else None
    out = {"verdict": ONE_SAMPLE, "ratio": ratio, "p_value": None, "test": None,
           "n_a": len(a), "n_b": len(b)}
    if len(a) < 2 or len(b) < 2:
        return out
    logs = min(a + b) > 0
    if logs:
        a, b = [math.log(v) for v in a], [math.log(v) for v in b]
    out["test"] = LOG_TEST if logs else RAW_TEST
    out["p_value"], shift = _welch(a, b)
    significant = out["p_value"] < alpha and shift != 0
    if ratio is not None and ratio > 0:
        factor = max(ratio, 1 / ratio)
        significant = significant and factor - 1 >= min_effect and (ratio > 1) == (shift > 0)
    if not significant:
        out["verdict"] = NOT_SIGNIFICANT
    else:
        out["verdict"] = FASTER if (shift > 0) == higher_is_better else SLOWER
    return out


def _welch(a: list, b: list) -> tuple:
    """``(p, mean(b) - mean(a))`` of Welch's two-sided t-test of ``b`` against ``a``."""
    shift = statistics.fmean(b) - statistics.fmean(a)
    if min(a) == max(a) and min(b) == max(b):
        return (1.0 if shift == 0 else 0.0), shift
    from scipy import stats   # only here: compare's table and the rest of lpw_mp do without
    with warnings.catch_warnings():
        # Nearly identical samples: scipy warns of precision loss; the answer is still right.
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
    return (1.0 if math.isnan(p) else p), shift


def describe(result: dict) -> str:
    """A verdict as compare prints it, pyperf-style: ``1.20x slower``, ``2.00x faster`` (the
    factor by which B is worse or better, never below 1), ``not significant`` or ``one
    sample, cannot tell``."""
    ratio = result["ratio"]
    if result["verdict"] not in (FASTER, SLOWER) or not ratio or ratio < 0:
        return result["verdict"]
    factor = max(ratio, 1 / ratio)
    shown = f"{factor:,.0f}" if factor >= 100 else f"{factor:.1f}" if factor >= 10 \
        else f"{factor:.2f}"
    return f"{shown}x {result['verdict']}"
