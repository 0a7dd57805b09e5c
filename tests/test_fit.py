"""The power-law fit (lpw_mp.results.fit): least squares on log-log over every sample, and the
exponent's t interval, on synthetic data whose exponent is known."""

import json
import math
import random

import pytest

from lpw_mp.results.fit import format_exponent, power_law

#: Four points, doubling, as a sweep's ``--vary cpus=2..16`` would give.
XS = [2, 4, 8, 16]


def noisy(exponent, repeats, sigma, seed, coefficient=0.002):
    """``repeats`` samples at each of ``XS`` of ``coefficient * x**exponent`` times a
    log-normal noise of ``sigma`` (about ``sigma`` relative), seeded."""
    rng = random.Random(seed)
    xs = [x for x in XS for _ in range(repeats)]
    return xs, [coefficient * x ** exponent * rng.lognormvariate(0, sigma) for x in xs]


def test_exact_data_gives_the_exponent_and_coefficient():
    """On exact power-law data the fit returns the exponent and coefficient, r2 1 and an
    interval of no width around the exponent."""
    xs = [2, 4, 8, 16, 32, 64, 128]
    fit = power_law(xs, [3.0 * x ** 1.5 for x in xs])
    assert fit["exponent"] == pytest.approx(1.5, abs=1e-9)
    assert fit["coefficient"] == pytest.approx(3.0, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["low"] == pytest.approx(1.5, abs=1e-6)
    assert fit["points"] == fit["samples"] == 7 and fit["note"] is None
    assert fit["trend"] == "grows"


@pytest.mark.parametrize("seed", range(5))
def test_the_interval_holds_the_true_exponent_and_excludes_a_wrong_one(seed):
    """Five repeats at four points with 10% noise: the 95% interval holds the true exponent
    (1.0) and not a clearly different one (1.5, nor 0: the trend is detected), for each of
    five seeds (fixed, so the test is deterministic)."""
    xs, ys = noisy(1.0, repeats=5, sigma=0.1, seed=seed)
    fit = power_law(xs, ys)
    assert fit["low"] < 1.0 < fit["high"]
    assert not fit["low"] < 1.5 < fit["high"]
    assert fit["trend"] == "grows" and fit["samples"] == 20 and fit["points"] == 4
    assert fit["confidence"] == 0.95


def test_the_interval_is_the_t_interval_of_the_slope():
    """The interval is exponent +- t(0.975, n - 2) * stderr: with 20 samples, t is 2.101."""
    xs, ys = noisy(0.5, repeats=5, sigma=0.2, seed=7)
    fit = power_law(xs, ys)
    assert fit["high"] - fit["exponent"] == pytest.approx(2.1009 * fit["stderr"], rel=1e-4)
    assert fit["exponent"] - fit["low"] == pytest.approx(fit["high"] - fit["exponent"])


def test_every_sample_counts_not_only_the_medians():
    """Repeats narrow the interval: the same noise over five repeats per point gives a
    narrower interval than one sample per point."""
    one = power_law(*noisy(1.0, repeats=1, sigma=0.1, seed=3))
    five = power_law(*noisy(1.0, repeats=5, sigma=0.1, seed=3))
    assert one["samples"] == 4 and five["samples"] == 20
    assert five["high"] - five["low"] < one["high"] - one["low"]


def test_an_interval_that_holds_zero_is_no_detectable_trend():
    """Flat data with 30% noise: the interval holds 0, the trend is "none detected" and the
    printed fit says "no detectable trend"."""
    xs, ys = noisy(0.0, repeats=3, sigma=0.3, seed=1)
    fit = power_law(xs, ys)
    assert fit["low"] < 0 < fit["high"] and fit["trend"] == "none detected"
    assert format_exponent(fit).endswith(": no detectable trend")


def test_a_falling_cost_is_detected_as_falling():
    """A clearly negative exponent has an interval below 0: the trend is "falls"."""
    fit = power_law(*noisy(-1.0, repeats=3, sigma=0.05, seed=2))
    assert fit["high"] < 0 and fit["trend"] == "falls"


def test_the_printed_fit_names_exponent_interval_r2_samples_and_points():
    """format_exponent: ``x^k [low, high] (r2 ..., N samples at M points)``."""
    fit = power_law(*noisy(1.0, repeats=3, sigma=0.05, seed=4))
    assert format_exponent(fit) == (f"x^{fit['exponent']:.2f} [{fit['low']:.2f}, "
                                    f"{fit['high']:.2f}] (r2 {fit['r2']:.3f}, 12 samples at 4 "
                                    f"points)")


def test_two_points_give_an_exponent_but_say_the_interval_is_undefined():
    """Two distinct x, even with repeats, give the slope between them but no interval, r2 or
    trend, and say why; so do fewer than three samples."""
    two_x = power_law([1, 1, 2, 2], [1.0, 1.1, 2.0, 2.1])
    assert two_x["exponent"] == pytest.approx(math.log2(math.sqrt(4.2 / 1.1)))
    assert two_x["low"] is two_x["high"] is two_x["r2"] is two_x["trend"] is None
    assert two_x["note"] == "no interval: only 2 distinct x"
    assert format_exponent(two_x) == ("x^0.97 [no interval: only 2 distinct x] (4 samples at 2 "
                                      "points)")
    two = power_law([1, 2], [1.0, 2.0])
    assert two["exponent"] == pytest.approx(1.0) and two["low"] is None
    assert "no interval" in format_exponent(two)


def test_missing_and_non_positive_samples_are_left_out_and_counted():
    """Zero x (walk rate 0), a missing value (a leg that did not finish) or a zero one are
    left out and counted; one distinct x left gives no exponent at all."""
    fit = power_law([0, 1, 2, 4, 8, 8], [1.0, None, 2.0, 4.0, 8.0, 0.0])
    assert fit["samples"] == 3 and fit["excluded"] == 3 and fit["points"] == 3
    assert fit["exponent"] == pytest.approx(1.0)
    assert "3 left out" in format_exponent(fit)
    one = power_law([4, 4], [1.0, 2.0])
    assert one["exponent"] is None and one["note"] == "no fit: only 1 distinct positive x"
    assert format_exponent(one) == "no fit: only 1 distinct positive x"
    assert power_law([2, 4], [None, 0.0])["note"] == "no fit: no positive values"


def test_a_fit_is_plain_json_numbers():
    """Every number of a fit is finite, flat data included (no NaN that JSON cannot hold),
    and a plain float, not a numpy scalar."""
    for fit in (power_law([1, 2, 4], [5.0, 5.0, 5.0]), power_law(*noisy(1.0, 2, 0.1, 0))):
        numbers = [v for v in fit.values() if isinstance(v, float)]
        assert all(type(v) is float and math.isfinite(v) for v in numbers)
        json.dumps(fit, allow_nan=False)
    flat = power_law([1, 2, 4], [5.0, 5.0, 5.0])
    assert flat["exponent"] == 0.0 and flat["r2"] == 1.0 and flat["stderr"] == 0.0
    assert flat["trend"] == "none detected"
