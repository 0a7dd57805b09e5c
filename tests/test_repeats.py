"""``--repeat``: every strategy measured several times, interleaved, and the figures the tables
show over the samples (medians, order-statistics intervals, paired ratios to ipi)."""

import json
import pathlib
import random
import signal
import statistics

import pytest

from lpw_mp.harness.progress import Progress
from lpw_mp.harness.runner import run
from lpw_mp.results import schemas
from lpw_mp.results.formats import RESULT
from lpw_mp.results.repeats import combine, figure_values, interval_text, intervals
from lpw_mp.results.stats import median_interval
from lpw_mp.results.tables import format_markdown, format_terminal
from lpw_mp.results.verdicts import annotate
from lpw_mp.units import format_duration

pytestmark = pytest.mark.timeout(90)

DATA = pathlib.Path(__file__).parent / "data"


# -- the interval of a median ---------------------------------------------------------------

@pytest.mark.parametrize("n,confidence,rank", [
    (2, 0.5, 1), (3, 0.75, 1), (4, 0.875, 1), (5, 0.9375, 1),
    (6, 1 - 2 / 64, 1), (10, 1 - 2 * 11 / 1024, 2), (20, None, 6)])
def test_the_interval_is_the_widest_order_statistics_that_reach_95_percent(n, confidence, rank):
    """Below six samples no pair of order statistics holds the median with 95% confidence:
    the interval is the range and says its own confidence (75% at 3); from six on it is the
    narrowest pair that reaches 95% (the 2nd and 9th of 10, the 6th and 15th of 20)."""
    values = list(range(n, 0, -1))   # unsorted on purpose
    interval = median_interval(values)
    assert (interval["low"], interval["high"]) == (rank, n + 1 - rank)
    assert interval["median"] == statistics.median(values) and interval["n"] == n
    if confidence is not None:
        assert interval["confidence"] == pytest.approx(confidence)
    assert interval["confidence"] >= 0.95 or n < 6


def test_the_interval_holds_the_median_as_often_as_it_says():
    """Over 4,000 seeded draws of 10 samples from a skewed (exponential) distribution, the
    interval contains the true median (ln 2) at least 95% of the time, as it claims."""
    rng = random.Random(12)
    hits = 0
    for _ in range(4000):
        interval = median_interval([rng.expovariate(1.0) for _ in range(10)])
        hits += interval["low"] <= 0.6931471805599453 <= interval["high"]
    assert hits / 4000 >= 0.95 - 0.01   # binomial noise of 4,000 draws: about 0.35%


def test_one_sample_has_no_interval():
    """A figure measured once has no interval at all (not a zero-width one)."""
    assert median_interval([3.0]) is None and median_interval([None, 2.0]) is None


# -- combining samples ----------------------------------------------------------------------

def _sample(repeat, wall, serialisations, violations=0, hist=(1, 2)):
    return {"repeat": repeat, "wall_s": wall, "per_op_s": wall / 4,
            "serialisations": serialisations,
            "ipi_round_s": {"n": serialisations, "median": wall / 10, "p99": wall / 5},
            "walker_side": {"walks_per_s": 100.0 * repeat, "begin_end_hist": list(hist),
                            "begin_end_histogram": {"counts": list(hist)}},
            "violations": {"total": violations, "by_kind": {"freed": violations} if violations
                           else {}, "examples": [{"repeat": repeat}] * violations}}


def test_a_combined_leg_takes_medians_and_adds_up_violations():
    """The leg the tables show: every number the median of the samples' (counts the lower
    median, so a count stays whole), the violations of every sample added up, and the
    histograms and the round number left to the samples."""
    leg = combine([_sample(1, 3.0, 10), _sample(2, 1.0, 13, violations=2),
                   _sample(3, 2.0, 11, violations=1), _sample(4, 9.0, 12)])
    assert leg["wall_s"] == 2.5 and leg["serialisations"] == 11
    assert isinstance(leg["serialisations"], int)
    assert leg["ipi_round_s"] == {"n": 11, "median": 0.25, "p99": 0.5}
    assert leg["walker_side"] == {"walks_per_s": 250.0}
    assert leg["violations"]["total"] == 3 and leg["violations"]["by_kind"] == {"freed": 3}
    assert len(leg["violations"]["examples"]) == 3
    assert "repeat" not in leg


def test_ratios_to_ipi_pair_the_samples_of_the_same_round():
    """vs ipi divides the samples of the same round, not the medians: a host that slows
    down in round 2 slows both legs, and the per-round speedups stay 2x."""
    ipi = {"samples": [_sample(1, 2.0, 1), _sample(2, 20.0, 1), _sample(3, 4.0, 1)]}
    count = {"samples": [_sample(3, 2.0, 1), _sample(1, 1.0, 1), _sample(2, 10.0, 1)]}
    assert sorted(figure_values(count, "vs_ipi", ipi)) == [2.0, 2.0, 2.0]
    assert intervals(count, ipi)["vs_ipi"]["low"] == 2.0
    # Unpaired, the spread of the times themselves is wide.
    assert intervals(count)["time"]["high"] / intervals(count)["time"]["low"] == 10.0
    # A round ipi did not finish has no ratio.
    ipi["samples"].pop(1)
    assert sorted(figure_values(count, "vs_ipi", ipi)) == [2.0, 2.0]


# -- real runs ------------------------------------------------------------------------------

class Recorder(Progress):
    """Records which strategy each leg ran, in order; sends SIGINT at ``interrupt_at``:
    the walker phase of that leg (counting from 1)."""

    def __init__(self, interrupt_at=None):
        self.order, self.interrupt_at = [], interrupt_at

    def leg(self, index, name):
        self.order.append(name)

    def walker_phase(self):
        if len(self.order) == self.interrupt_at:
            signal.raise_signal(signal.SIGINT)


def _judged(result):
    annotate(result)
    result["run_id"] = "test"
    assert schemas.first_error(result, "lpw_mp-result", RESULT.version) is None
    return result


def test_repeats_run_interleaved_and_the_tables_show_medians_with_intervals(cfg):
    """--repeat 3 runs ipi, count, ipi, count, ipi, count (ABCABC, each on a fresh machine);
    each leg keeps its three samples with their round, its figures are their medians, and the
    tables print each figure with its interval and say what the interval means."""
    recorder = Recorder()
    result = _judged(run(cfg(strategies=["ipi", "count"], cpus=2, walker_time=0.1,
                             repeat=3), progress=recorder))
    assert recorder.order == ["ipi", "count"] * 3
    assert result["status"] == "complete"
    for leg in result["legs"]:
        assert [s["repeat"] for s in leg["samples"]] == [1, 2, 3]
        assert leg["repeats"] == leg["repeats_asked"] == 3
        walls = [s["wall_s"] for s in leg["samples"]]
        assert leg["wall_s"] == statistics.median(walls)
        assert leg["intervals"]["time"]["low"] == min(walls)
        assert leg["intervals"]["time"]["confidence"] == 0.75
    assert not set(result["legs"][0]["intervals"]) & {"vs_ipi", "walker_vs_ipi", "p99_vs_ipi"}
    count = result["legs"][1]
    speedups = [i["wall_s"] / c["wall_s"] for i, c in zip(result["legs"][0]["samples"],
                                                         count["samples"])]
    assert count["speedup_vs_ipi"] == pytest.approx(statistics.median(speedups))
    interval = count["intervals"]["time"]
    cell = format_duration(count["wall_s"]) + interval_text(interval, format_duration)
    assert format_duration(interval["low"]).split()[0] in cell
    for text in (format_terminal(result, width=250), format_markdown(result)):
        assert "medians of 3 repeats, run interleaved" in text
        assert "75.0% confidence" in text
        assert cell in text


def test_an_interrupted_repeat_leaves_the_finished_ones(cfg):
    """SIGINT in ipi's second repeat: ipi and count keep their first samples as ok legs of
    one repeat of two; ipi also says its second repeat was interrupted, and the tables say
    so; the result validates."""
    recorder = Recorder(interrupt_at=3)
    result = _judged(run(cfg(strategies=["ipi", "count"], cpus=2, walker_time=0.1,
                             repeat=2), progress=recorder))
    assert recorder.order == ["ipi", "count", "ipi"]
    assert result["status"] == "interrupted"
    ipi, count = result["legs"]
    assert (ipi["status"], ipi["repeats"], ipi["repeats_asked"]) == ("ok", 1, 2)
    assert ipi["cut"]["status"] == "interrupted"
    assert ipi["cut"]["partial"]["phase"] == "walker phase"
    assert (count["status"], count["repeats"]) == ("ok", 1) and "cut" not in count
    text = format_terminal(result, width=200)
    assert "ipi: repeat 2 of 2 was interrupted during its walker phase: its row shows the 1 " \
           "that finished" in text


def test_a_version_1_result_reads_as_one_sample_legs():
    """A result.json written by lpw_mp before --repeat (format version 1, committed in
    tests/data) loads: every ok leg is its own one sample, config.repeat is 1, and the
    tables say there is one sample per strategy."""
    path = DATA / "result-v1.json"
    assert json.loads(path.read_text())["format_version"] == 1
    result = RESULT.load(str(path))
    assert result["format_version"] == RESULT.version and result["config"]["repeat"] == 1
    for leg in result["legs"]:
        assert leg["repeats"] == 1 and len(leg["samples"]) == 1
        assert leg["samples"][0]["wall_s"] == leg["wall_s"]
    assert schemas.first_error(result, "lpw_mp-result", RESULT.version) is None
    assert "one sample per strategy: no intervals" in format_terminal(result, width=200)
