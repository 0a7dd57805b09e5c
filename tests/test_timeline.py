"""The timeline command: which window of a trace it draws for each option (exact numbers),
which CPUs get a row when there are too many, what the picture shows (read back from its
matplotlib artists), the PNG written end to end with its default name, and every bad input
refused on one line with nothing written. Traces are synthetic, built with
``traces.TraceDocument`` in the layout a run or a check writes."""

import json

import matplotlib
import matplotlib.image
import pytest

from lpw_mp.commands.cli import main
from lpw_mp.results import timeline, traces
from lpw_mp.results.timeline import TimelineError
from helpers import without_matplotlib
from test_cli import assert_refused, no_fork, snapshot  # noqa: F401 (a fixture)
from test_sweep import PNG_SIGNATURE, png_size

pytestmark = pytest.mark.timeout(60)
matplotlib.use("Agg")

ORIGIN = 5_000_000_000  # ns on the host's monotonic clock


def ns(us: float) -> int:
    """A time ``us`` microseconds from the trace's origin, as the builder takes it."""
    return ORIGIN + round(us * 1000)


class Builder:
    """A run's trace in the making: a parent, the coordinator with its rcu track, CPUs."""

    def __init__(self, cpus=4, strategy="ipi", source="run"):
        self.doc = traces.TraceDocument(ORIGIN, source=source, strategy=strategy)
        self.coord, self.cpu = 101, {c: 200 + c for c in range(cpus)}
        self.doc.process(100, "lpw_mp", 0)
        self.doc.process(self.coord, f"{strategy}:coord", 1)
        self.doc.thread(self.coord, traces.RCU_TID_BASE + self.coord, "rcu", 1)
        for c, pid in self.cpu.items():
            self.doc.process(pid, f"{strategy}:cpu{c}", c + 2)

    def on(self, cpu, name, cat, start, end, **args):
        """A slice from ``start`` to ``end`` us on CPU ``cpu`` (None: the coordinator)."""
        pid = self.coord if cpu is None else self.cpu[cpu]
        self.doc.slice(pid, pid, name, cat, ns(start), ns(end) - ns(start), args)

    def round(self, number, start, end, last, why):
        self.on(None, "smp_call_function_many", "ipi", start, end, round=number,
                targets=len(self.cpu) - 1, slowest_cpu=last, why=why, took_us=end - start)

    def violation(self, cpu, at, slot=3):
        pid = self.cpu[cpu]
        self.doc.instant(pid, pid, "violation", "violation", ns(at),
                         dict(slot=slot, kind="use-after-free", generation_taken=4,
                              generation_seen=5))



def write(doc: traces.TraceDocument, path):
    doc.write(str(path))
    return path


def run_trace() -> traces.TraceDocument:
    """Four CPUs; round 1 (1600-2000 us, CPU 2 last: in an IRQ-off window), round 2, the
    slowest (3000-7000, CPU 1 last: queue), round 3 (9200-9240); a grace period; violation 1
    at 9510 inside CPU 3's walk (9500-9520), violation 2 at 12000 on CPU 1 outside any."""
    b = Builder()
    b.doc.slice(100, 100, "operation", "phase", ns(0), ns(13000) - ns(0))
    b.on(None, "munmap", "op", 1000, 9000, slot=3)
    b.on(None, "unlink", "step", 1000, 1500)
    b.on(None, "serialise", "step", 1500, 8000)
    b.round(1, 1600, 2000, last=2, why="irq-off")
    b.round(2, 3000, 7000, last=1, why="queue")
    b.on(None, "destroy", "step", 8000, 9000)
    b.on(None, "synchronize_rcu", "rcu", 8100, 8900)
    b.doc.instant(b.coord, b.coord, "call_rcu", "rcu", ns(8050))
    b.on(None, "split", "op", 9100, 9300, slot=4)
    b.round(3, 9200, 9240, last=0, why="not-running")
    b.doc.slice(b.coord, traces.RCU_TID_BASE + b.coord, "grace period", "rcu", ns(8100),
                ns(8800) - ns(8100))
    b.on(0, "idle", "idle", 0, 10000)
    b.on(0, "ipi_handler", "ipi", 1700, 1703, round=1, why="queue", delay_us=100)
    b.on(0, "ipi_handler", "ipi", 3100, 3103, round=2, why="queue", delay_us=100)
    b.on(0, "ipi_handler", "ipi", 9230, 9233, round=3, why="not-running", delay_us=30)
    b.on(1, "ipi_handler", "ipi", 1650, 1652, round=1, why="queue", delay_us=50)
    b.on(1, "walk", "walk", 2500, 2520, slot=2, walker="hold", held=True)
    b.on(1, "ipi_handler", "ipi", 6990, 6995, round=2, why="queue", delay_us=3990)
    b.violation(1, 12000, slot=5)
    b.on(2, "walk", "walk", 1590, 1995, slot=3, walker="hold", held=True)
    b.on(2, "ipi_handler", "ipi", 1995, 1998, round=1, why="irq-off", delay_us=395)
    b.on(2, "ipi_handler", "ipi", 3050, 3052, round=2, why="queue", delay_us=50)
    b.on(3, "walk", "walk", 9500, 9520, slot=3, walker="read-once", held=False)
    b.violation(3, 9510)
    return b.doc


def check_trace() -> traces.TraceDocument:
    """A check counterexample: the coordinator's steps (unlink, serialise, destroy, 10 us
    each from 10 us) and CPU 1's walk (5-60 us) with a violation at 45 us."""
    doc = traces.TraceDocument(ORIGIN, source="check", strategy="count")
    doc.process(300, "count:coord", 0)
    doc.process(301, "count:cpu1", 2)
    for name, start in (("unlink", 10), ("serialise", 20), ("destroy", 30)):
        doc.slice(300, 300, name, "step", ns(start), ns(start + 10) - ns(start), {"slot": 0})
    doc.slice(301, 301, "walk", "walk", ns(5), ns(60) - ns(5), {"slot": 0})
    doc.instant(301, 301, "load pmd", "step", ns(6))
    doc.instant(301, 301, "violation", "violation", ns(45),
                dict(slot=0, kind="use-after-free", generation_taken=1, generation_seen=2))
    return doc


def quiet_trace() -> traces.TraceDocument:
    """Two CPUs, a walk (100-120 us) and an idle period (50-400 us): no round, no
    violation."""
    b = Builder(cpus=2)
    b.on(0, "walk", "walk", 100, 120)
    b.on(1, "idle", "idle", 50, 400)
    return b.doc


def indexed(doc: traces.TraceDocument, tmp_path, name="trace-ipi.json") -> timeline.Trace:
    """The trace written, loaded back as the command loads it, and indexed."""
    return timeline.index(traces.load(str(write(doc, tmp_path / name))))


@pytest.fixture
def run(tmp_path):
    return indexed(run_trace(), tmp_path)


def bounds(window) -> tuple:
    """``((start, end), what)`` of a window, to compare with approximate numbers."""
    return (window.start, window.end), window.what


# -- windows -------------------------------------------------------------------------------

def test_a_round_gets_a_quarter_of_its_length_each_side_at_least_50us(run):
    """--round N: round 1 (400 us) is shown from 100 us before to 100 us after; round 3
    (40 us) gets the 50 us floor; --margin replaces both; the label names the round, its
    length, who answered last and why."""
    w = timeline.round_window(run, 1)
    assert bounds(w) == (pytest.approx((1500, 2100)), "round1")
    assert w.label == "IPI round 1, 400 us; CPU 2 answered last: inside an IRQ-off window"
    assert w.round["args"]["round"] == 1
    assert bounds(timeline.round_window(run, 3)) == (pytest.approx((9150, 9290)), "round3")
    assert bounds(timeline.round_window(run, 1, margin=10)) == \
        (pytest.approx((1590, 2010)), "round1")


def test_slowest_is_the_longest_round_and_the_default(run):
    """--slowest picks the longest round (round 2, 4 ms: 1 ms each side), and so does no
    option at all when the trace has rounds."""
    w = timeline.slowest_window(run)
    assert bounds(w) == (pytest.approx((2000, 8000)), "round2")
    assert w.label == ("IPI round 2 (the slowest of 3), 4 ms; CPU 1 answered last: just "
                       "last in the queue")
    assert bounds(timeline.default_window(run)) == bounds(w)


def test_a_violation_is_shown_from_its_walks_start_or_200us_before(run):
    """--violation K: the first violation (inside CPU 3's walk from 9500 us) is shown from
    the walk's start to 100 us after it; the second, outside any walk, from 200 us before
    to 100 us after; --margin puts that much before the walk and after the violation."""
    w = timeline.violation_window(run, 1)
    assert bounds(w) == (pytest.approx((9500, 9610)), "violation1")
    assert w.violation[0] == 3
    assert w.label == ("violation 1 of 2: CPU 3, slot 3, use-after-free (generation 4 "
                       "taken, 5 seen)")
    assert bounds(timeline.violation_window(run, 2)) == \
        (pytest.approx((11800, 12100)), "violation2")
    assert bounds(timeline.violation_window(run, 1, margin=20)) == \
        (pytest.approx((9480, 9530)), "violation1")


def test_start_and_end_give_the_window_and_default_to_the_traces_extent(run):
    """--start/--end: exactly that window, named by its times; a missing end is the end of
    the last event drawn (12 ms: the parent's phases are not drawn), a missing start the
    first event's (0); neither is the whole trace."""
    assert bounds(timeline.span_window(run, 1500, 3000)) == \
        (pytest.approx((1500, 3000)), "1.5ms-3ms")
    assert timeline.span_window(run, 1500).end == pytest.approx(12000)
    assert timeline.span_window(run, None, 3000).start == pytest.approx(0)
    whole = timeline.span_window(run)
    assert bounds(whole) == (pytest.approx((0, 12000)), "all")


def test_without_rounds_the_default_is_the_first_violation_else_everything(tmp_path):
    """A trace without rounds (a check counterexample) defaults to its first violation,
    from its walk's start; one with neither rounds nor violations to the whole trace."""
    check = indexed(check_trace(), tmp_path, "counterexample.json")
    assert bounds(timeline.default_window(check)) == \
        (pytest.approx((5, 145)), "violation1")
    assert bounds(timeline.default_window(indexed(quiet_trace(), tmp_path))) == \
        (pytest.approx((50, 400)), "all")


@pytest.mark.parametrize("choose,message", [
    (lambda t: timeline.round_window(t, 7), "no IPI round 7 in the trace (its rounds are "
                                            "numbered 1 to 3)"),
    (lambda t: timeline.violation_window(t, 3), "no violation 3: the trace has 2"),
    (lambda t: timeline.span_window(t, 3000, 1500), "empty window: it ends (1.5ms) before "
                                                    "it starts (3ms)"),
    (lambda t: timeline.check_not_empty(t, timeline.span_window(t, 20000, 30000)),
     "empty window: nothing of the trace happens from 20ms to 30ms (its events run from "
     "0ns to 12ms)"),
])
def test_a_window_the_trace_cannot_give_is_one_line(run, choose, message):
    """A round that is not in the trace, a violation past the last, a window that ends
    before it starts or holds nothing: TimelineError with one line saying so."""
    with pytest.raises(TimelineError) as caught:
        choose(run)
    assert str(caught.value) == message


# -- rows ----------------------------------------------------------------------------------

def test_cpus_lists_are_numbers_and_ranges():
    """--cpus takes numbers and ranges; anything else is refused with the spelling."""
    assert timeline.parse_cpus("0-3,40,2") == [0, 1, 2, 3, 40]
    for bad, words in (("0-", "is not a list of CPUs"), ("a", "is not a list of CPUs"),
                       ("5-3", "runs backwards"), ("70000", "out of range"),
                       ("1,,2", "is not a list")):
        with pytest.raises(ValueError, match=words):
            timeline.parse_cpus(bad)
    assert traces.spans([0, 1, 2, 3, 40, 42, 43]) == "0-3,40,42-43"


def crowded(tmp_path) -> timeline.Trace:
    """100 CPUs; in round 1 (1000-2000 us) CPU 77 answers last, CPU 90 has a violation
    and CPU 95 an IRQ-off window; CPU 10's walk is long before the round's window."""
    b = Builder(cpus=100)
    b.round(1, 1000, 2000, last=77, why="not-running")
    b.on(10, "walk", "walk", 10, 30)
    b.on(90, "walk", "walk", 1500, 1520)
    b.violation(90, 1510)
    b.on(95, "walk", "walk", 1900, 1950)
    return indexed(b.doc, tmp_path)


def test_all_cpus_get_a_row_when_they_fit(run):
    """Up to --max-rows CPUs, every CPU has a row, by number, and none is left out."""
    w = timeline.slowest_window(run)
    assert timeline.choose_rows(run, w) == ([0, 1, 2, 3], 0)
    assert timeline.choose_rows(run, w, max_rows=4) == ([0, 1, 2, 3], 0)


def test_past_max_rows_the_interesting_cpus_are_kept_first(tmp_path):
    """Past --max-rows, the round's last responder, then the CPUs with a violation, then
    those with an IRQ-off window in the window are kept before the rest (by number), rows
    in CPU order, and the count left out is returned for the title."""
    t = crowded(tmp_path)
    w = timeline.round_window(t, 1)
    assert timeline.choose_rows(t, w, max_rows=4) == ([0, 77, 90, 95], 96)
    assert timeline.choose_rows(t, w, max_rows=2) == ([77, 90], 98)
    assert timeline.choose_rows(t, w, max_rows=64)[0][:3] == [0, 1, 2]
    assert 77 in timeline.choose_rows(t, w, max_rows=64)[0]
    assert timeline.title(t, w, [77, 90], 98).endswith(
        "; 2 of 100 CPUs drawn, 98 left out (--cpus, --max-rows)")


def test_cpus_selects_the_rows_and_names_cpus_the_trace_lacks(tmp_path):
    """--cpus draws those CPUs (still capped by --max-rows, the interesting first); a CPU
    that is not in the trace is refused, naming the CPUs it has."""
    t = crowded(tmp_path)
    w = timeline.round_window(t, 1)
    assert timeline.choose_rows(t, w, cpus=[5, 3, 77]) == ([3, 5, 77], 0)
    assert timeline.choose_rows(t, w, max_rows=1, cpus=[3, 5, 77]) == ([77], 2)
    with pytest.raises(TimelineError, match=r"^--cpus 100-101: not in the trace \(it has "
                                            r"CPUs 0-99\)$"):
        timeline.choose_rows(t, w, cpus=[3, 100, 101])


# -- the picture ---------------------------------------------------------------------------

def by_gid(fig, gid):
    ax = fig.axes[0]
    return [a for a in (*ax.collections, *ax.lines, *ax.patches, *ax.texts)
            if a.get_gid() == gid]


def test_a_round_is_drawn_with_its_band_and_last_responder(run):
    """The round's picture: a band across every row for the round, CPU 2's label in red and
    'answered last: inside an IRQ-off window' on its row, an IRQ-off bar on CPU 2's row
    (the coordinator is row 0), IPI handlers drawn at least the minimum width, and a title
    naming the strategy and the window."""
    w = timeline.round_window(run, 1)
    fig = timeline.draw_figure(run, w, [0, 1, 2, 3])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == \
        ["coordinator", "CPU 0", "CPU 1", "CPU 2", "CPU 3"]
    assert by_gid(fig, "band")
    (why,) = by_gid(fig, "why")
    assert why.get_text() == "answered last: inside an IRQ-off window"
    assert why.xy[1] == 3
    assert ax.get_yticklabels()[3].get_color() == "C3"
    (walks,) = by_gid(fig, "walk")
    assert [round(p.vertices[:, 1].mean()) for p in walks.get_paths()] == [3]
    (handlers,) = by_gid(fig, "ipi")
    widths = [p.vertices[:, 0].max() - p.vertices[:, 0].min() for p in handlers.get_paths()]
    assert len(widths) == 3 and min(widths) >= timeline.MIN_WIDTH * w.length * 0.999
    assert ax.get_xlabel() == "\u00b5s from 1.5 ms into the trace"
    assert ax.get_title(loc="left") == ("ipi: IPI round 1, 400 us; CPU 2 answered last: "
                                        "inside an IRQ-off window\n1.5 ms to 2.1 ms into the "
                                        "trace (600 us)")


def test_a_violation_is_a_red_marker_on_the_walkers_row(tmp_path):
    """A counterexample: the violation is a red marker on CPU 1's row (row 1, under the
    coordinator), whose label is red; the coordinator's steps are bars, the destructive one
    (destroy) in a colour of its own."""
    check = indexed(check_trace(), tmp_path, "counterexample.json")
    w = timeline.default_window(check)
    fig = timeline.draw_figure(check, w, [1])
    (marker,) = by_gid(fig, "violation")
    assert list(marker.get_ydata()) == [1] and marker.get_color() == "red"
    assert list(marker.get_xdata()) == pytest.approx([40])
    assert fig.axes[0].get_yticklabels()[1].get_color() == "C3"
    (steps,) = by_gid(fig, "step")
    assert len(steps.get_paths()) == 2
    assert by_gid(fig, "slot_op") == []  # the coordinator's steps are not operations
    (destroy,) = by_gid(fig, "destroy")
    assert [p.vertices[:, 0].min() for p in destroy.get_paths()] == pytest.approx([30 - 5])


def test_the_figure_grows_with_rows_up_to_a_cap(tmp_path):
    """More rows make a taller figure, up to MAX_HEIGHT inches (128 CPUs reach it)."""
    b = Builder(cpus=128)
    b.round(1, 1000, 2000, last=127, why="queue")
    t = indexed(b.doc, tmp_path)
    w = timeline.round_window(t, 1)
    heights = [timeline.draw_figure(t, w, list(range(n))).get_figheight()
               for n in (2, 64, 128)]
    assert heights[0] < heights[1] < heights[2] == timeline.MAX_HEIGHT


# -- the command ---------------------------------------------------------------------------

def test_timeline_writes_the_slowest_round_with_its_default_name(tmp_path, monkeypatch,
                                                                  capsys):
    """timeline TRACE with no option draws the slowest round into
    timeline-<leg>-round<N>.png in the current directory and prints that path: a PNG of
    1300 pixels wide and a height for its 5 rows, with more than a few colours in it."""
    trace = write(run_trace(), tmp_path / "trace-ipi.json")
    monkeypatch.chdir(tmp_path)
    assert main(["timeline", str(trace)]) == 0
    assert capsys.readouterr() == ("timeline-ipi-round2.png\n", "")
    png = tmp_path / "timeline-ipi-round2.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert png_size(png) == (1300, 355)
    pixels = matplotlib.image.imread(str(png))
    assert pixels.shape == (355, 1300, 4)
    assert len({tuple(p) for p in pixels.reshape(-1, 4)[::97]}) > 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timeline-ipi-round2.png",
                                                          "trace-ipi.json"]


def test_a_run_folder_gives_its_trace_and_leg_picks_one_of_several(tmp_path, capsys):
    """A run folder holding one trace-*.json draws it; with several, --leg NAME picks
    trace-NAME.json; -o says where the PNG goes."""
    folder = tmp_path / "run"
    folder.mkdir()
    write(run_trace(), folder / "trace-ipi.json")
    out = tmp_path / "one.png"
    assert main(["timeline", str(folder), "--round", "1", "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    write(check_trace(), folder / "trace-count.json")
    out = tmp_path / "two.png"
    assert main(["timeline", str(folder), "--leg", "count", "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert out.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("argv,expected", [
    ([], ((2000, 8000), "round2")),
    (["--round", "1", "--margin", "10us"], ((1590, 2010), "round1")),
    (["--slowest", "--margin", "0.5ms"], ((2500, 7500), "round2")),
    (["--violation"], ((9500, 9610), "violation1")),
    (["--violation", "2"], ((11800, 12100), "violation2")),
    (["--start", "1.5ms", "--end", "3000us"], ((1500, 3000), "1.5ms-3ms")),
    (["--margin", "2ms"], ((1000, 9000), "round2")),
])
def test_the_options_choose_the_window(run, argv, expected):
    """The command's options reach the window functions in microseconds: no option is the
    slowest round, --margin and --start/--end are durations (10us, 0.5ms, 1.5ms)."""
    from lpw_mp.commands.timeline import build_parser, choose_window
    args = build_parser().parse_args(["trace.json", *argv])
    (start, end), what = bounds(choose_window(run, args))
    assert ((start, end), what) == (pytest.approx(expected[0]), expected[1])


def test_default_names_say_what_was_drawn(tmp_path):
    """The default output is timeline-<trace stem without trace->-<what>.png: a round, a
    violation, a span of times, the whole trace; a file not named trace-* keeps its stem."""
    from lpw_mp.commands.timeline import default_output
    run = indexed(run_trace(), tmp_path)
    for window, name in ((timeline.round_window(run, 1), "timeline-ipi-round1.png"),
                         (timeline.violation_window(run, 2), "timeline-ipi-violation2.png"),
                         (timeline.span_window(run, 1500, 3000), "timeline-ipi-1.5ms-3ms.png"),
                         (timeline.span_window(run), "timeline-ipi-all.png")):
        assert default_output("runs/x/trace-ipi.json", window) == name
    assert default_output("cex.json", timeline.violation_window(run, 1)) == \
        "timeline-cex-violation1.png"


def _bad(tmp_path, case) -> list:
    """The arguments of bad input ``case``, with whatever files it needs under tmp_path."""
    trace = write(run_trace(), tmp_path / "trace-ipi.json")
    t = str(trace)
    if case == "missing file":
        return [str(tmp_path / "nope.json")]
    if case == "not JSON":
        (tmp_path / "notes.json").write_text("# notes\n")
        return [str(tmp_path / "notes.json")]
    if case == "not a trace":
        (tmp_path / "result.json").write_text(json.dumps({"format": "lpw_mp-result"}))
        return [str(tmp_path / "result.json")]
    if case == "folder without traces":
        (tmp_path / "empty").mkdir()
        return [str(tmp_path / "empty")]
    if case == "folder with several traces":
        write(check_trace(), tmp_path / "trace-count.json")
        return [str(tmp_path)]
    if case == "leg not in the folder":
        return [str(tmp_path), "--leg", "rcu"]
    if case == "leg with a file":
        return [t, "--leg", "ipi"]
    if case == "no such round":
        return [t, "--round", "9"]
    if case == "no violation in the trace":
        return [str(write(quiet_trace(), tmp_path / "quiet.json")), "--violation"]
    if case == "violation 0":
        return [t, "--violation", "0"]
    if case == "empty window":
        return [t, "--start", "1s"]
    if case == "start with round":
        return [t, "--start", "1ms", "--round", "1"]
    if case == "margin without a round or a violation":
        return [str(write(quiet_trace(), tmp_path / "quiet.json")), "--margin", "1ms"]
    if case == "margin with start":
        return [t, "--start", "1ms", "--margin", "1ms"]
    if case == "bad cpu list":
        return [t, "--cpus", "0-x"]
    if case == "cpu not in the trace":
        return [t, "--cpus", "0-5"]
    if case == "max rows 0":
        return [t, "--max-rows", "0"]
    if case == "bad duration":
        return [t, "--start", "soon"]
    if case == "unwritable output":
        return [t, "-o", str(tmp_path / "no" / "such.png")]
    raise AssertionError(case)


BAD = {
    "missing file": "no trace '",
    "not JSON": "notes.json is not a trace (not JSON",
    "not a trace": "result.json is not a valid lpw_mp trace",
    "folder without traces": "holds no trace (no trace-*.json",
    "folder with several traces": "holds 2 traces: choose one with --leg from count, ipi",
    "leg not in the folder": "holds no trace of leg 'rcu': choose one with --leg from ipi",
    "leg with a file": "--leg picks a trace in a run folder;",
    "no such round": "no IPI round 9 in the trace (its rounds are numbered 1 to 3)",
    "no violation in the trace": "the trace has no violation",
    "violation 0": "--violation 0: violations count from 1",
    "empty window": "empty window: it ends (12ms) before it starts (1s)",
    "start with round": "--start/--end and --round choose the window both; give one",
    "margin without a round or a violation": "--margin widens a round or a violation; the "
                                             "trace has neither",
    "margin with start": "--margin widens a round or a violation, not --start/--end",
    "bad cpu list": "argument --cpus: '0-x' is not a list of CPUs",
    "cpu not in the trace": "--cpus 4-5: not in the trace (it has CPUs 0-3)",
    "max rows 0": "--max-rows 0: draw at least 1 row",
    "bad duration": "argument --start: malformed duration 'soon'",
    "unwritable output": "cannot write ",
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                         no_fork, case):
    """A missing file, a file that is not JSON or not a trace, a folder with no trace or
    several and no (or a wrong) --leg, a round or violation the trace lacks, an empty
    window, conflicting or malformed options, an output that cannot be written: exit 2, one
    line naming the problem, and no file written anywhere."""
    args = _bad(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code = main(["timeline", *args])
    assert_refused(code, capsys.readouterr().err, BAD[case])
    assert snapshot(tmp_path) == before


def test_without_matplotlib_timeline_names_the_extra(tmp_path, monkeypatch, capsys):
    """Without matplotlib, timeline says how to install it on one line, exits 2 and writes
    nothing."""
    trace = write(run_trace(), tmp_path / "trace-ipi.json")
    without_matplotlib(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert_refused(main(["timeline", str(trace)]), capsys.readouterr().err,
                   "timeline needs matplotlib, which is not installed: pip install "
                   "'lpw_mp[plot]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace-ipi.json"]


def test_around_a_violation_the_operations_on_its_slot_are_named(tmp_path):
    """Drawing a violation, the coordinator's operations on the violation's slot (what freed
    what the walker held) are outlined in red and named; those on other slots are not."""
    b = Builder(cpus=2, strategy="none")
    b.on(1, "walk", "walk", 100, 300, slot=3, walker="hold", held=True)
    b.violation(1, 250, slot=3)
    b.on(None, "munmap", "op", 150, 200, slot=3)
    b.on(None, "split", "op", 210, 220, slot=4)
    trace = indexed(b.doc, tmp_path)
    fig = timeline.draw_figure(trace, timeline.violation_window(trace, 1), [0, 1])
    (outline,) = by_gid(fig, "slot_op")
    assert outline.get_x() == pytest.approx(50) and outline.get_width() == pytest.approx(50)
    named = [t.get_text() for t in fig.axes[0].texts if "of slot" in t.get_text()]
    assert named == ["munmap of slot 3"]
