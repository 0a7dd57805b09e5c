"""The walker-side measurement: a phase where every CPU walks back to back, with no updater,
summarised by histogram medians and compared with ipi's walker."""

import pytest

from lpw_mp.kernel.cpu import hist_bucket
from lpw_mp.harness.emulator import Emulator
from lpw_mp.kernel.machine import HIST_BUCKETS, HIST_STEPS
from lpw_mp.results.stats import hist_percentile, histogram_percentile
from lpw_mp.harness.walkers import measure_walkers
from lpw_mp.results.verdicts import compare_to_ipi

pytestmark = pytest.mark.timeout(60)


def test_histogram_percentiles_come_from_the_right_bucket():
    """hist_bucket files a value into the bucket whose range holds it, and hist_percentile
    gives back a value in that bucket: within one bucket (9%) of the value (see
    test_histograms for the interpolation within it)."""
    counts, bucket = [0] * HIST_BUCKETS, 2 ** (1 / HIST_STEPS) - 1
    for ns, n in ((500, 90), (40_000, 9), (10_000_000, 1)):
        counts[hist_bucket(ns)] += n
    assert hist_percentile(counts, 50, HIST_STEPS) == pytest.approx(500, rel=bucket)
    assert hist_percentile(counts, 95, HIST_STEPS) == pytest.approx(40_000, rel=bucket)
    assert hist_percentile(counts, 100, HIST_STEPS) == pytest.approx(1e7, rel=bucket)
    assert hist_percentile([0] * HIST_BUCKETS, 50, HIST_STEPS) is None
    assert hist_bucket(0) == 0 and hist_bucket(10 ** 15) == HIST_BUCKETS - 1


def test_walker_phase_makes_idle_cpus_walk_back_to_back(cfg):
    """CPUs configured never to walk (--walk-rate 0) still walk, back to back, for the
    length of the walker phase, and stop again when it ends."""
    c = cfg(cpus=3, memory=16 << 20, walk_window=0.0)
    with Emulator(c, "count") as emu:
        phase = measure_walkers(emu, 0.3)
        after_phase = emu.walker_stats()["walks"]
        assert phase["walks"] > 300 and phase["walks_per_s"] > 1000
        assert phase["begin_end_median_ns"] > 0 and phase["irq_off_median_ns"] > 0
        assert phase["begin_end_p99_ns"] >= phase["begin_end_median_ns"]
        assert sum(phase["begin_end_hist"]) == phase["walks"]
        for name, median in (("begin_end_histogram", "begin_end_median_ns"),
                             ("irq_off_histogram", "irq_off_median_ns")):
            hist = phase[name]
            assert hist["unit"] == "ns" and hist["steps_per_doubling"] == HIST_STEPS
            assert sum(hist["counts"]) == phase["walks"]
            assert len(hist["edges"]) == len(hist["counts"]) + 1
            assert histogram_percentile(hist, 50) == pytest.approx(phase[median])
        emu.start_coordinator()
        out = emu.wait_coordinator()
        assert emu.walker_stats()["walks"] - after_phase <= 3 * c.cpus  # back to rate 0
    assert out["stats"]["skipped"] == c.npmds  # no walk was running during munmap


def test_compare_to_ipi_reports_ratio_added_time_and_share():
    """The comparison divides medians, subtracts them, relates the addition to ipi's median
    IRQ-off window, and says when two medians are within one bucket of each other."""
    ipi = {"walks": 100, "begin_end_median_ns": 500.0, "begin_end_p99_ns": 2000.0,
           "irq_off_median_ns": 25_000.0, "hist_steps": HIST_STEPS}
    count = dict(ipi, begin_end_median_ns=1250.0, begin_end_p99_ns=80_000.0)
    rel = compare_to_ipi(count, ipi)
    assert rel["begin_end_ratio"] == pytest.approx(2.5)
    assert rel["added_ns"] == pytest.approx(750)
    assert rel["added_share"] == pytest.approx(0.03)
    assert rel["p99_ratio"] == pytest.approx(40)
    assert rel["resolved"] is True
    assert compare_to_ipi(dict(ipi, begin_end_median_ns=520.0), ipi)["resolved"] is False
    assert compare_to_ipi(None, ipi)["begin_end_ratio"] is None
