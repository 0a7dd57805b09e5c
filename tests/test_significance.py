"""compare's verdict on two sets of samples (lpw_mp.results.significance): Welch's t-test on
the logarithms, the 1% floor, and what it says without a spread. Fixed samples, no timing."""

import statistics
import subprocess
import sys

import pytest

from lpw_mp.results.significance import (FASTER, LOG_TEST, MIN_EFFECT, NOT_SIGNIFICANT,
                                         ONE_SAMPLE, RAW_TEST, SLOWER, VERDICTS, describe,
                                         verdict)

#: Five timings with a few percent of spread, in an order that is not sorted.
SAMPLES = [1.03, 0.97, 1.00, 1.05, 0.96]


def test_the_same_samples_are_not_significant():
    """Two sets drawn from the very same samples, in any order, are "not significant", with
    p 1 and a ratio of 1: the test sees no difference where there is none."""
    result = verdict(SAMPLES, list(reversed(SAMPLES)))
    assert result == {"verdict": NOT_SIGNIFICANT, "ratio": 1.0, "p_value": pytest.approx(1.0),
                      "test": LOG_TEST, "n_a": 5, "n_b": 5}


def test_clearly_separated_samples_are_slower_or_faster_the_right_way():
    """B's samples twice A's (small spread) are "slower" for a time and A's against B's are
    "faster", with the ratio of the medians, a tiny p-value, and pyperf's wording."""
    doubled = [2 * v for v in SAMPLES[::-1]]
    slower = verdict(SAMPLES, doubled)
    assert slower["verdict"] == SLOWER and slower["ratio"] == pytest.approx(2.0)
    assert slower["p_value"] < 1e-4 and describe(slower) == "2.00x slower"
    faster = verdict(doubled, SAMPLES)
    assert faster["verdict"] == FASTER and faster["ratio"] == pytest.approx(0.5)
    assert describe(faster) == "2.00x faster"
    # The test is the same in both directions: on logarithms, x2 and /2 are one distance.
    assert faster["p_value"] == pytest.approx(slower["p_value"])


def test_higher_is_better_turns_the_direction():
    """For a figure where more is better (walks/s, a speedup), a doubled B is "faster" and a
    halved one "slower": the verdict is about B being better, in the figure's own sense."""
    doubled = [2 * v for v in SAMPLES]
    assert verdict(SAMPLES, doubled, higher_is_better=True)["verdict"] == FASTER
    halved = verdict(doubled, SAMPLES, higher_is_better=True)
    assert halved["verdict"] == SLOWER and describe(halved) == "2.00x slower"


def test_overlapping_samples_are_not_significant():
    """A 2% shift inside a 10% spread is noise to the test: "not significant", p well above
    0.05, though the ratio of the medians is reported all the same."""
    shifted = [1.02 * v for v in (0.92, 1.08, 1.0, 0.95, 1.06)]
    result = verdict(SAMPLES, shifted)
    assert result["verdict"] == NOT_SIGNIFICANT and result["p_value"] > 0.3
    assert result["ratio"] == pytest.approx(1.02)


@pytest.mark.parametrize("a,b", [([1.0], SAMPLES), (SAMPLES, [2.0]), ([1.0], [2.0])],
                         ids=["A one", "B one", "both one"])
def test_one_sample_on_either_side_cannot_tell(a, b):
    """With a single sample on either side there is no spread to weigh a difference against:
    "one sample, cannot tell", no test and no p-value, but the ratio of the medians."""
    result = verdict(a, b)
    assert result["verdict"] == ONE_SAMPLE and describe(result) == ONE_SAMPLE
    assert result["p_value"] is None and result["test"] is None
    assert result["ratio"] == pytest.approx(statistics.median(b) / statistics.median(a))
    assert (result["n_a"], result["n_b"]) == (len(a), len(b))


def test_samples_without_spread_need_no_division_by_zero():
    """Samples identical within each side: equal on both sides is "not significant" (p 1);
    different is a difference (p 0, the limit of the test as the spread vanishes), still
    subject to the 1% floor. No warning, no NaN."""
    same = verdict([1.0, 1.0, 1.0], [1.0, 1.0])
    assert same["verdict"] == NOT_SIGNIFICANT and same["p_value"] == 1.0
    apart = verdict([1.0, 1.0, 1.0], [1.5, 1.5, 1.5])
    assert apart["verdict"] == SLOWER and apart["p_value"] == 0.0
    assert verdict([1.0, 1.0], [1.001, 1.001])["verdict"] == NOT_SIGNIFICANT
    # One side without spread, the other with: the ordinary test.
    mixed = verdict([1.0, 1.0, 1.0], [2.0, 2.1, 1.9])
    assert mixed["verdict"] == SLOWER and 0 < mixed["p_value"] < 0.05


def test_a_difference_under_the_floor_is_not_significant():
    """0.5% apart with almost no spread, the t-test finds a difference (p tiny), but one
    under MIN_EFFECT (1%) is "not significant"; with no floor it is "slower"."""
    a = [1.0, 1.0001, 0.9999, 1.0, 1.0002]
    b = [1.005 * v for v in a]
    result = verdict(a, b)
    assert MIN_EFFECT == 0.01 and result["p_value"] < 1e-6
    assert result["verdict"] == NOT_SIGNIFICANT
    assert verdict(a, b, min_effect=0)["verdict"] == SLOWER


def test_medians_and_means_that_disagree_are_not_significant():
    """When the logarithms' means say B is slower but the medians say faster (a B mostly
    10% below A with a long tail far above), no verdict contradicts the ratio printed
    beside it: "not significant"."""
    a = [1.0 + 0.001 * i for i in range(20)]
    b = [0.9] * 11 + [3.0] * 9
    result = verdict(a, b)
    assert result["ratio"] < 1 and result["p_value"] < 0.05
    assert result["verdict"] == NOT_SIGNIFICANT


def test_values_of_zero_are_tested_without_logarithms():
    """A figure with a value of 0 has no logarithm: the samples are tested as they are, and
    the test's name says so; a zero median on A side has no ratio."""
    result = verdict([0.0, 0.1, 0.05], [5.0, 5.1, 4.9])
    assert result["test"] == RAW_TEST and result["verdict"] == SLOWER
    assert verdict([0.0, 0.0, 0.1], [5.0, 5.1, 4.9])["ratio"] is None


def test_missing_values_are_left_out_and_an_empty_side_is_an_error():
    """None values (a figure a sample did not have) are left out of the counts; a side with
    no value at all is a ValueError, not a verdict."""
    result = verdict([1.0, None, 1.01], SAMPLES)
    assert result["n_a"] == 2 and result["verdict"] in VERDICTS
    with pytest.raises(ValueError, match="at least one value"):
        verdict([None], SAMPLES)


@pytest.mark.parametrize("ratio,text", [(1.2, "1.20x slower"), (1 / 1.2, "1.20x faster"),
                                        (25.0, "25.0x slower"), (1 / 2534, "2,534x faster")])
def test_describe_is_a_factor_above_one_with_its_direction(ratio, text):
    """describe prints the factor by which B is worse or better, never below 1, with the
    precision of the tables' ratios."""
    direction = SLOWER if ratio > 1 else FASTER
    assert describe({"verdict": direction, "ratio": ratio}) == text


def test_scipy_is_imported_only_for_a_test():
    """Importing lpw_mp (and the compare command) does not import scipy: only a verdict
    that runs the test does, so every other command starts as fast as before."""
    code = ("import sys, lpw_mp.commands.cli, lpw_mp.results.significance as s; "
            "assert 'scipy' not in sys.modules, 'imported early'; "
            "s.verdict([1, 2, 3], [2, 3, 4]); assert 'scipy' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
