"""The plot command: a real sweep's figure drawn again from its sweep.json, what the figure
shows (medians, error bars, fitted lines, flagged points, the fixed parameters, --metric), read
back from its matplotlib artists, and every bad input refused on one line with nothing
written."""

import json
import shutil
import statistics

import matplotlib
import pytest

from lpw_mp.commands.cli import main
from lpw_mp.results import plot
from lpw_mp.results.formats import SWEEP
from lpw_mp.results.sweeps import fit_sweep, series
from test_formats import SWEEP_V1
from helpers import without_matplotlib
from test_cli import assert_refused, no_fork, snapshot  # noqa: F401 (a fixture)
from test_sweep import PNG_SIGNATURE, png_size

pytestmark = pytest.mark.timeout(60)
# lpw_mp draws on a Figure of its own, with no pyplot; no test should open a window either.
matplotlib.use("Agg")


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """One real sweep of three memory sizes, ipi and count, two repeats each and a short
    walker phase, made once for the module; tests work on copies."""
    runs = tmp_path_factory.mktemp("real") / "runs"
    assert main(["sweep", "--vary", "memory=8M,16M,32M", "--cpus", "2", "--walker-time",
                 "0.1", "--strategy", "ipi,count", "--repeat", "2", "-q",
                 "--runs-dir", str(runs)]) == 0
    (folder,) = list(runs.iterdir())
    return folder


@pytest.fixture
def sweep(tmp_path, real_sweep):
    """A copy of the real sweep folder under ``tmp_path/runs``."""
    folder = tmp_path / "runs" / real_sweep.name
    shutil.copytree(real_sweep, folder)
    return folder


def test_plot_draws_the_figure_of_a_real_sweep_again(sweep, capsys):
    """With sweep.png deleted, plot SWEEP draws it again into the sweep's folder from
    sweep.json alone, a PNG of the size the sweep drew, and prints its path."""
    drawn_by_sweep = png_size(sweep / "sweep.png")
    (sweep / "sweep.png").unlink()
    assert main(["plot", str(sweep)]) == 0
    out, err = capsys.readouterr()
    png = sweep / "sweep.png"
    assert out == f"{png}\n" and err == ""
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 0
    assert png_size(png) == drawn_by_sweep
    assert sorted(p.name for p in sweep.iterdir()) == ["manifest.json", "sweep.json", "sweep.md",
                                                       "sweep.png"]


def test_plot_takes_a_sweep_id_or_its_json_and_writes_where_o_says(sweep, tmp_path, capsys):
    """A sweep id is looked up under --runs-dir; -o sends the figure to another file and
    leaves the sweep's folder as it was."""
    (sweep / "sweep.png").unlink()
    assert main(["plot", sweep.name, "--runs-dir", str(sweep.parent)]) == 0
    assert capsys.readouterr().out == f"{sweep / 'sweep.png'}\n"
    before = snapshot(sweep)
    other = tmp_path / "figure.png"
    assert main(["plot", str(sweep / "sweep.json"), "-o", str(other)]) == 0
    assert capsys.readouterr().out == f"{other}\n"
    assert other.read_bytes()[:8] == PNG_SIGNATURE
    assert snapshot(sweep) == before


def _edit(folder, change):
    """Rewrite the folder's sweep.json with ``change`` applied to the document."""
    path = folder / "sweep.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _spoil(sweep, case):
    """Make the bad input ``case`` out of a copy of the sweep; the arguments naming it."""
    if case == "missing":
        return ["nope"]
    if case == "run folder":  # a result.json and no sweep.json
        run = sweep.parent / "20261125-221441-4995cb"
        run.mkdir()
        (run / "result.json").write_text(json.dumps({"format": "lpw_mp-result",
                                                     "format_version": 1}))
        return [str(run)]
    if case == "folder without sweep.json":
        (sweep / "sweep.json").unlink()
        (sweep / "manifest.json").unlink()
    elif case == "sweep not ended":
        (sweep / "sweep.json").unlink()
    elif case == "not JSON":
        (sweep / "sweep.json").write_text("# a sweep\n")
    elif case == "a result, not a sweep":
        _edit(sweep, lambda d: d.update(format="lpw_mp-result"))
    elif case == "format version 3":
        _edit(sweep, lambda d: d.update(format_version=3))
    elif case == "invalid against the schema":
        _edit(sweep, lambda d: d.pop("points"))
        return [str(sweep / "sweep.json")]
    elif case == "valid but not drawable":
        _edit(sweep, lambda d: d["vary"][0].update(name="colour"))
    elif case == "unwritable output":
        return [str(sweep), "-o", str(sweep / "no" / "such.png")]
    elif case == "unknown metric":
        return [str(sweep), "--metric", "speed"]
    elif case == "a ratio to ipi without ipi":
        _edit(sweep, _only_count)
        return [str(sweep), "--metric", "vs_ipi"]
    elif case == "a walker figure without a walker phase":
        _edit(sweep, _no_walker_phase)
        return [str(sweep), "--metric", "walker_p50"]
    return [str(sweep)]


def _only_count(document):
    """The sweep as if it had run count alone."""
    document["config"]["strategies"] = ["count"]
    for point in document["points"]:
        point["legs"] = [leg for leg in point["legs"] if leg["strategy"] == "count"]


def _no_walker_phase(document):
    """The sweep as if it had run with --walker-time 0."""
    document["config"]["walker_time"] = 0
    for point in document["points"]:
        for leg in point["legs"]:
            for row in (leg, *leg["samples"]):
                row["walker_side"] = None


BAD = {
    "missing": "no sweep 'nope' (not a folder, nor a sweep id under",
    "run folder": "is a run folder, not a sweep",
    "folder without sweep.json": "is not an lpw_mp sweep folder (it has no sweep.json)",
    "sweep not ended": "is a sweep that has not ended (no sweep.json yet): ",
    "not JSON": "sweep.json is not an lpw_mp sweep (not JSON",
    "a result, not a sweep": "is not an lpw_mp sweep (format 'lpw_mp-result', expected "
                             "'lpw_mp-sweep')",
    "format version 3": "has sweep format version 3; this lpw_mp reads versions 1, 2",
    "invalid against the schema": "sweep.json is not a valid lpw_mp sweep: 'points' is a "
                                  "required property (at top level)",
    "valid but not drawable": "cannot be drawn: it varies 'colour', which is not a sweep "
                              "parameter",
    "unwritable output": "cannot write ",
    "unknown metric": "--metric 'speed': choose from time, per_op, ipi_p50, ipi_p99, "
                      "walks_per_s, walker_p50, walker_p99, vs_ipi, walker_vs_ipi, p99_vs_ipi",
    "a ratio to ipi without ipi": "--metric 'vs_ipi' (a ratio to ipi needs ipi among the "
                                  "strategies): choose from time, per_op,",
    "a walker figure without a walker phase": "has no value of walker_p50 to draw (it ran with "
                                              "--walker-time 0)",
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(sweep, tmp_path, capsys, no_fork,
                                                         case):
    """A missing sweep, a run folder, a file that is not JSON, another format or version, a
    document the schema refuses or that names no sweep parameter, an output that cannot be
    written, a --metric that is not a figure of the sweep: exit 2, one line naming the
    problem (and the valid figures), and no file written or replaced."""
    (sweep / "sweep.png").unlink()
    args = _spoil(sweep, case)
    before = snapshot(tmp_path)
    code = main(["plot", *args, "--runs-dir", str(sweep.parent)])
    assert_refused(code, capsys.readouterr().err, BAD[case])
    assert snapshot(tmp_path) == before
    assert not (sweep / "sweep.png").exists()


def test_without_matplotlib_plot_names_the_extra(sweep, capsys, monkeypatch):
    """Without matplotlib, plot says on one line how to install it, exits 2 and writes
    nothing (it does not even read the sweep)."""
    without_matplotlib(monkeypatch)
    (sweep / "sweep.png").unlink()
    code = main(["plot", str(sweep)])
    assert_refused(code, capsys.readouterr().err, "pip install 'lpw_mp[plot]'")
    assert not (sweep / "sweep.png").exists()


# -- what the figure shows -----------------------------------------------------------------

def _load(folder):
    return SWEEP.load(str(folder / "sweep.json"))


def _by_gid(fig, gid):
    """The artists of ``fig`` with that gid (lines and collections of every panel)."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections) if a.get_gid() == gid]


def test_repeats_are_drawn_as_medians_with_error_bars_and_fitted_lines(sweep, capsys):
    """A sweep with repeats: plot writes a PNG; in its figure each strategy's line goes
    through the medians of its samples, its error bars run from each interval's low to its
    high, its fitted power law is a dashed line of the same colour whose legend gives the
    exponent and its interval; the title carries every parameter that was not varied and the
    repeats, and a footnote says what the bars and dashes are."""
    (sweep / "sweep.png").unlink()
    assert main(["plot", str(sweep)]) == 0
    assert (sweep / "sweep.png").read_bytes()[:8] == PNG_SIGNATURE
    capsys.readouterr()
    document = _load(sweep)
    fig = plot.draw_figure(document)
    points = {s: series(document, "memory", s, {}) for s in ("ipi", "count")}
    fits = {f["strategy"]: f for f in fit_sweep(document)}
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for strategy, pts in points.items():
        (line,) = _by_gid(fig, f"median:{strategy}")
        assert list(line.get_xdata()) == [8 << 20, 16 << 20, 32 << 20]
        assert list(line.get_ydata()) == pytest.approx(
            [statistics.median(p["values"]) for p in pts])
        (bars,) = _by_gid(fig, f"interval:{strategy}")
        spans = [sorted(seg[:, 1]) for seg in bars.get_segments()]
        assert spans == [pytest.approx([p["interval"]["low"], p["interval"]["high"]])
                         for p in pts]
        (fitted,) = _by_gid(fig, f"fit:{strategy}")
        assert fitted.get_linestyle() == "--" and fitted.get_color() == line.get_color()
        fit = fits[strategy]
        assert fitted.get_ydata()[0] == pytest.approx(fit["coefficient"] * 8388608.0
                                                      ** fit["exponent"])
        assert (f"{strategy} fit x^{fit['exponent']:.2f} [{fit['low']:.2f}, "
                f"{fit['high']:.2f}]") in " ".join(labels)
    title = " ".join(fig._suptitle.get_text().split())
    assert title.startswith("munmap time vs memory")
    for fixed in ("cpus 2", "thp-size 2M", "walk-rate 20/s", "walk-window 20 us",
                  "pte-fraction 0.0625", "active-fraction 1", "cpumask sticky", "seed 1",
                  "2 repeats"):
        assert fixed in title
    assert "memory 8M" not in title and "memory=" not in title
    note = fig._supxlabel.get_text()
    assert "error bars: interval of the median of 2 repeats" in note
    assert "dashed: power law, least squares on log-log over every sample" in note


def test_metric_walker_p50_draws_the_walker_side(sweep, tmp_path, capsys):
    """plot --metric walker_p50 draws each strategy's median begin+end time of its walker
    phases (not the operation time), labelled so, and fits that."""
    out = tmp_path / "walker.png"
    assert main(["plot", str(sweep), "--metric", "walker_p50", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    capsys.readouterr()
    document = _load(sweep)
    fig = plot.draw_figure(document, "walker_p50")
    for strategy in ("ipi", "count"):
        (line,) = _by_gid(fig, f"median:{strategy}")
        walker = [statistics.median(s["walker_side"]["begin_end_median_ns"]
                                    for s in point["legs"][i]["samples"])
                  for point in document["points"]
                  for i, leg in enumerate(point["legs"]) if leg["strategy"] == strategy]
        assert list(line.get_ydata()) == pytest.approx(walker)
        assert _by_gid(fig, f"fit:{strategy}")
    assert fig.axes[0].get_ylabel() == "begin+end p50"
    assert fig._suptitle.get_text().startswith("begin+end p50 vs memory")


def test_another_metric_goes_beside_the_sweeps_own_figure(sweep, capsys):
    """plot --metric walker-p50 (either spelling) of a sweep of the operation time writes
    sweep-walker_p50.png beside sweep.png and leaves sweep.png as it was."""
    own = (sweep / "sweep.png").read_bytes()
    assert main(["plot", str(sweep), "--metric", "walker-p50"]) == 0
    png = sweep / "sweep-walker_p50.png"
    assert capsys.readouterr().out == f"{png}\n"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert (sweep / "sweep.png").read_bytes() == own
    png.unlink()


def test_a_ratio_to_ipi_draws_ipi_as_the_baseline(sweep):
    """--metric vs_ipi draws count's speedup over ipi, and ipi as the line at 1 rather than
    as a strategy of its own."""
    fig = plot.draw_figure(_load(sweep), "vs_ipi")
    (baseline,) = _by_gid(fig, "baseline:ipi")
    assert list(baseline.get_ydata()) == [1, 1]
    assert _by_gid(fig, "median:count") and not _by_gid(fig, "median:ipi")


def test_points_a_run_would_flag_are_drawn_hollow(sweep):
    """A leg whose warnings qualify the plotted figure (the ? of a run's table) is drawn with
    a hollow marker, in the legend and the footnote too, and left out of the filled ones; a
    warning about another figure does not make the time's point hollow."""
    document = _load(sweep)
    ipi = document["points"][1]["legs"][0]
    assert ipi["strategy"] == "ipi"
    ipi["warnings"] = ["600 splits skipped: the PTE page pool ran out"]
    ipi["warning_figures"] = [["time"]]
    count = document["points"][2]["legs"][1]
    count["warnings"], count["warning_figures"] = ["only 9 IPI rounds"], [["ipi_p50"]]
    fig = plot.draw_figure(document, "time")
    (hollow,) = _by_gid(fig, "flagged:ipi")
    assert list(hollow.get_xdata()) == [16 << 20]
    assert hollow.get_markerfacecolor() == "white"
    (line,) = _by_gid(fig, "median:ipi")
    assert hollow.get_markeredgecolor() == line.get_color()
    assert list(line.get_markevery()) == [0, 2]
    assert not _by_gid(fig, "flagged:count")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "hollow: a run flags it ?" in labels
    assert "hollow: a run would mark the figure ?" in fig._supxlabel.get_text()
    unflagged = plot.draw_figure(_load(sweep), "time")
    assert not _by_gid(unflagged, "flagged:ipi")
    assert "hollow" not in unflagged._supxlabel.get_text()


def test_a_version_1_sweep_is_drawn(tmp_path, capsys):
    """A version 1 sweep (one sample per point) is drawn: medians without error bars, fits
    with their interval, and a footnote that says there are no error bars."""
    folder = tmp_path / "sweep-old"
    folder.mkdir()
    shutil.copy(SWEEP_V1, folder / "sweep.json")
    assert main(["plot", str(folder)]) == 0
    assert (folder / "sweep.png").read_bytes()[:8] == PNG_SIGNATURE
    capsys.readouterr()
    fig = plot.draw_figure(_load(folder))
    assert _by_gid(fig, "median:ipi") and _by_gid(fig, "fit:ipi")
    assert not _by_gid(fig, "interval:ipi")
    assert "1 sample per point" in fig._suptitle.get_text()
    assert "no error bars" in fig._supxlabel.get_text()
