"""The sweep command: table, JSON and PNG on small real sweeps (the fit itself is tested in
test_fit.py)."""

import io
import json
import re
import struct
import subprocess
import sys

import pytest

from lpw_mp.harness import resources
from lpw_mp.commands.cli import main
from lpw_mp.results.fit import power_law
from lpw_mp.harness.resources import Host
from lpw_mp.commands import sweep as sweep_command
from lpw_mp.commands.sweep import (MAX_POINTS, MAX_VALUES, MAX_VARY, PARSERS, parse_vary, plan,
                                   sweep_bar)
from lpw_mp.results import plot
from lpw_mp.results.sweeps import PARAMETERS, values_at, warnings_about
from helpers import without_matplotlib
from test_cli import assert_refused, no_fork  # noqa: F401 (a fixture)

pytestmark = pytest.mark.timeout(60)

# The walker-side phase is not what these tests look at; skipping it keeps them fast.
FAST = ["--walker-time", "0"]
SMALL = ["--cpus", "2", "--walk-rate", "0", *FAST]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sweep_folder(runs):
    (folder,) = [p for p in runs.iterdir()]
    assert folder.name.startswith("sweep-")
    return folder


def png_size(path):
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_vary_accepts_lists_and_doubling_ranges():
    """NAME=LO..HI doubles from LO to HI; sizes take suffixes; dashes name attributes."""
    assert parse_vary("cpus=2..128") == ("cpus", [2, 4, 8, 16, 32, 64, 128])
    assert parse_vary("memory=64M..256M") == ("memory", [64 << 20, 128 << 20, 256 << 20])
    assert parse_vary("walk-rate=0,10,100") == ("walk_rate", [0.0, 10.0, 100.0])
    assert parse_vary("cpumask=sticky,trim") == ("cpumask", ["sticky", "trim"])


def test_every_parameter_a_sweep_describes_can_be_varied():
    """The command's parsers and the sweep document's parameters (kept apart: results read
    data, commands parse it) name the same parameters."""
    assert set(PARSERS) == set(PARAMETERS)


def test_memory_sweep_writes_table_json_png_and_a_linear_ipi_fit(tmp_path, capsys):
    """A sweep of memory under ipi writes sweep.md, sweep.json and a valid PNG; ipi's IPI
    count grows exactly linearly with memory (fitted exponent 1), and the fit reported for the
    time is the power law of the measured times. (How close that exponent is to 1 depends on
    the host's load, so it is a benchmark figure, not asserted here; the fit itself is tested
    on synthetic data above.) Huge leaves only: a PTE table's free is not an IPI."""
    runs = tmp_path / "runs"
    code = main(["sweep", "--vary", "memory=16M..512M", "--strategy", "ipi", *SMALL,
                 "--pte-fraction", "0", "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert code == 0
    folder = sweep_folder(runs)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "sweep.json", "sweep.md",
                                                        "sweep.png"]
    width, height = png_size(folder / "sweep.png")
    assert width >= 320 and height >= 240
    from matplotlib.image import imread
    assert imread(folder / "sweep.png").shape[:2] == (height, width)

    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["format"] == "lpw_mp-sweep" and sweep["format_version"] == 2
    assert sweep["status"] == "complete" and sweep["sweep_id"] == folder.name
    assert sweep["host"]["usable_cores"] >= 1 and sweep["config"]["cpus"] == 2
    sizes = [16 << 20, 32 << 20, 64 << 20, 128 << 20, 256 << 20, 512 << 20]
    assert sweep["vary"] == [{"name": "memory", "values": sizes}]
    assert [p["values"]["memory"] for p in sweep["points"]] == sizes
    legs = [p["legs"][0] for p in sweep["points"]]
    assert all("examples" not in leg["violations"] for leg in legs)
    rounds = power_law(sizes, [leg["serialisations"] for leg in legs])
    assert rounds["exponent"] == pytest.approx(1.0, abs=1e-9)
    (fit,) = sweep["fits"]
    assert fit["strategy"] == "ipi" and fit["parameter"] == "memory" and fit["metric"] == "time"
    assert fit["points"] == fit["samples"] == 6
    assert fit["exponent"] == pytest.approx(power_law(sizes, [leg["wall_s"] for leg in legs])
                                            ["exponent"])

    for size in ("16M", "32M", "64M", "128M", "256M", "512M"):
        assert f"\n{size} " in out
    assert f"x^{fit['exponent']:.2f}" in out
    md = (folder / "sweep.md").read_text()
    assert "| memory" in md and "![munmap time](sweep.png)" in md


def test_repeats_give_medians_with_intervals_flags_and_fits_with_intervals(tmp_path, capsys):
    """With --repeat 3 and --metric ipi_p50, the table shows each point's median IPI round
    with its interval and the ? of a run (too few rounds for a median at these sizes: 4 to
    16 THPs), numbered notes say why, and the fit is made over all 9 samples with its
    interval; sweep.json records the metric, and its fits are of it."""
    runs = tmp_path / "runs"
    code = main(["sweep", "--vary", "memory=8M,16M,32M", "--strategy", "ipi", "--repeat", "3",
                 "--metric", "ipi_p50", *SMALL, "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert code == 0
    folder = sweep_folder(runs)
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["metric"] == "ipi_p50" and sweep["config"]["repeat"] == 3
    assert all(len(p["legs"][0]["samples"]) == 3 for p in sweep["points"])
    (fit,) = sweep["fits"]
    assert fit["metric"] == "ipi_p50" and fit["samples"] == 9 and fit["points"] == 3
    assert fit["low"] < fit["exponent"] < fit["high"]
    assert "each figure the median of 3 repeats" in out
    rows = [line for line in out.splitlines() if line.startswith(("8M ", "16M ", "32M "))]
    assert len(rows) == 3
    interval_then_flag = re.compile(r" \([0-9.]+( [mun]?s)?-[0-9.]+ [mun]?s\)\?$")
    assert all(interval_then_flag.search(row) for row in rows), rows
    assert "[1] memory=8M ipi: only " in out and "[3] memory=32M ipi: only " in out
    assert f"x^{fit['exponent']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}]" in out
    assert "9 samples at 3 points" in out and "ipi IPI round p50" in out
    md = (folder / "sweep.md").read_text()
    assert "9 samples at 3 points" in md and "- [1] memory=8M ipi: only " in md


def _point(legs):
    return {"values": {"cpus": 2}, "legs": legs}


def _leg(strategy, wall, warnings=(), figures=None, repeat=(1, 2)):
    leg = {"strategy": strategy, "status": "ok", "warnings": list(warnings),
           "samples": [{"repeat": r, "wall_s": wall * r} for r in repeat]}
    if figures is not None:
        leg["warning_figures"] = figures
    return leg


def test_a_ratio_to_ipi_pairs_the_rounds_and_takes_ipis_warnings():
    """A point's vs_ipi values are ipi's time over the strategy's, round by round; a warning
    of ipi's about its time flags the ratio of every strategy; a warning about another figure
    does not; a warning from before warnings named their figures flags every figure."""
    ipi = _leg("ipi", 1.0, ["pool ran out"], [["time"]])
    count = _leg("count", 0.1, ["few rounds"], [["ipi_p50"]])
    point = _point([ipi, count])
    assert values_at(point, "count", "vs_ipi") == pytest.approx([10.0, 10.0])
    assert warnings_about(point, "count", "vs_ipi") == [("ipi", "pool ran out")]
    assert warnings_about(point, "count", "time") == []
    assert warnings_about(point, "count", "ipi_p50") == [("count", "few rounds")]
    old = _point([_leg("count", 0.1, ["anything"])])
    assert warnings_about(old, "count", "walker_p99") == [("count", "anything")]
    assert values_at(_point([count]), "count", "vs_ipi") is None


def test_two_parameters_give_a_row_per_point_and_a_fit_per_group(tmp_path):
    """--vary twice runs the cross product; numeric parameters are fitted once per value of
    the other; a non-numeric one (cpumask) is not fitted but still plotted (one panel each)."""
    runs = tmp_path / "runs"
    code = main(["sweep", "--vary", "cpus=2,4", "--vary", "cpumask=sticky,trim", "--memory",
                 "8M", "--strategy", "ipi,count", "--walk-rate", "0", *FAST,
                 "--runs-dir", str(runs), "--quiet"])
    assert code == 0
    folder = sweep_folder(runs)
    sweep = json.loads((folder / "sweep.json").read_text())
    assert [p["values"] for p in sweep["points"]] == [
        {"cpus": 2, "cpumask": "sticky"}, {"cpus": 2, "cpumask": "trim"},
        {"cpus": 4, "cpumask": "sticky"}, {"cpus": 4, "cpumask": "trim"}]
    assert {(f["strategy"], f["fixed"]["cpumask"]) for f in sweep["fits"]} == {
        ("ipi", "sticky"), ("ipi", "trim"), ("count", "sticky"), ("count", "trim")}
    assert all(f["parameter"] == "cpus" and f["points"] == 2 for f in sweep["fits"])
    width, _ = png_size(folder / "sweep.png")
    assert width >= 2 * 320  # two panels side by side
    table = (folder / "sweep.md").read_text()
    assert table.count("| 2      |") + table.count("| 4      |") == 4


def test_without_matplotlib_the_sweep_says_so_before_it_runs(tmp_path, capsys, monkeypatch):
    """With matplotlib not installed, sweep says so in one line on stderr, naming the extra,
    before the first point runs (not hours later), then runs and writes sweep.md and
    sweep.json without a PNG; the line is not repeated at the end."""
    without_matplotlib(monkeypatch)
    before_first_point = []
    real_run = sweep_command.run

    def run(*args, **kwargs):
        if not before_first_point:
            before_first_point.append(capsys.readouterr().err)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(sweep_command, "run", run)
    runs = tmp_path / "runs"
    code = main(["sweep", "--vary", "memory=8M,16M", "--strategy", "ipi", *SMALL,
                 "--runs-dir", str(runs), "--quiet"])
    err = before_first_point[0] + capsys.readouterr().err
    assert code == 0
    folder = sweep_folder(runs)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "sweep.json", "sweep.md"]
    assert "sweep.png" not in (folder / "sweep.md").read_text()
    assert "pip install 'lpw_mp[plot]'" in before_first_point[0]
    assert err.count("\n") == 1 and "matplotlib is not installed" in err


def test_a_matplotlib_that_will_not_import_is_said_once_at_the_end(tmp_path, capsys,
                                                                  monkeypatch):
    """matplotlib found but failing to import (a broken installation): the sweep still writes
    its table and JSON, and says once, at the end, that there is no PNG and how to fix it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setattr(plot, "available", lambda: True)
    runs = tmp_path / "runs"
    code = main(["sweep", "--vary", "memory=8M,16M", "--strategy", "ipi", *SMALL,
                 "--runs-dir", str(runs), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert sorted(p.name for p in sweep_folder(runs).iterdir()) == ["manifest.json", "sweep.json",
                                                                    "sweep.md"]
    assert err.count("\n") == 1 and "would not import" in err
    assert "pip install 'lpw_mp[plot]'" in err


def test_help_states_the_limits_on_vary(capsys):
    """sweep --help gives the bounds that plan enforces: parameters varied, values per
    --vary and points per sweep."""
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"At most {MAX_VARY} --vary of at most {MAX_VALUES} values each" in text
    assert f"at most {MAX_POINTS} points in all" in text


def test_outer_bar_counts_points_on_a_terminal_only():
    """The sweep's outer progress bar shows points done out of the total on a terminal, and is
    absent when stderr is not one."""
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = sweep_bar(3, stream)
    bar.update(1)
    bar.refresh()
    assert "sweep" in stream.getvalue() and "1/3" in stream.getvalue()
    bar.close()
    assert sweep_bar(3, io.StringIO()) is None


BAD = [
    ([], "sweep needs --vary"),
    (["--vary", "bogus=1"], "cannot vary 'bogus'"),
    (["--vary", "cpus"], "expected NAME=V1,V2"),
    (["--vary", "cpus="], "expected NAME=V1,V2"),
    (["--vary", "cpus=abc"], "not a whole number"),
    (["--vary", "cpus=8..2"], "must run from a positive value up"),
    (["--vary", "cpus=2,2"], "repeated"),
    (["--vary", "cpus=0,2"], "sweep point cpus=0: --cpus"),
    (["--vary", "memory=3M"], "sweep point memory=3M"),
    (["--vary", "cpumask=fuzzy"], "unknown cpumask 'fuzzy'"),
    (["--vary", "cpus=2", "--vary", "cpus=4"], "given twice"),
    (["--vary", "cpus=2", "--vary", "memory=8M", "--vary", "walk-rate=1"], "at most 2"),
    (["--vary", "cpus=2", "--walk-rate", "-1"], "--walk-rate"),
    # Ranges are finite and plans bounded, found before any value is made in bulk.
    (["--vary", "walk-rate=1..inf"], "--vary walk-rate: 'inf' is not a finite number"),
    (["--vary", "pte-fraction=0.1..inf"], "--vary pte-fraction: 'inf' is not a finite number"),
    (["--vary", "active-fraction=0.1..Infinity"], "'Infinity' is not a finite number"),
    (["--vary", "walk-window=1us..inf"], "--vary walk-window: duration 'inf' is not finite"),
    (["--vary", "walk-rate=1e-300..1"],
     "--vary walk-rate: range '1e-300..1' doubles to more than the 32 values a --vary takes"),
    (["--vary", "cpus=1..99999999999999999999"], "doubles to more than the 32 values"),
    (["--vary", "cpus=" + ",".join(str(n) for n in range(1, 41))],
     "--vary cpus: 40 values, more than the 32 a --vary takes"),
    (["--vary", "cpus=1..128", "--vary", "walk-rate=1..1024"],
     "sweep of 8 x 11 = 88 points: more than the 64 a sweep takes"),
    # Non-finite values in a list, and in the fixed options.
    (["--vary", "pte-fraction=nan,0.5"], "--vary pte-fraction: 'nan' is not a finite number"),
    (["--vary", "cpus=2", "--pte-fraction", "nan"], "'nan' is not a finite number"),
    # Only documented spellings, in lists too.
    (["--vary", "cpus=2,,4"], "--vary cpus: '2,,4' has an empty value"),
    (["--vary", "cpus=2,4,"], "has an empty value"),
    (["--vary", "cpus=1_0"], "--vary cpus: '1_0' is not a whole number"),
    (["--vary", "memory=8GB,16M"], "--vary memory: size '8GB' is ambiguous"),
    # Every point is validated and preflighted before the first runs.
    (["--cpus", "2", "--vary", "cpus=2,8192"],
     "sweep point cpus=8192: --cpus 8192 needs about"),
    (["--vary", "walk-window=1ms,2ms", "--walk-rate", "600"],
     "sweep point walk-window=2 ms: --walk-window 2 ms x --walk-rate 600 = 1.2"),
    (["--vary", "cpus=2", "--ipi-timeout", "1ms"], "--ipi-timeout 1 ms is below 10 ms"),
    # The figure of the table, fits and plot is named before anything runs.
    (["--vary", "cpus=2", "--metric", "speed"],
     "--metric 'speed': choose from time, per_op, ipi_p50, ipi_p99, walks_per_s, walker_p50, "
     "walker_p99, vs_ipi, walker_vs_ipi, p99_vs_ipi"),
    (["--vary", "cpus=2", "--strategy", "count", "--metric", "vs_ipi"],
     "--metric 'vs_ipi' (a ratio to ipi needs ipi among the strategies): choose from time,"),
    (["--vary", "cpus=2", "--walker-time", "0", "--metric", "walker_p50"],
     "--metric walker_p50 is a figure of the walker phase, which --walker-time 0 skips"),
]

#: A host with room for a few CPUs, not thousands, so the preflight's verdicts do not depend on
#: the machine the tests run on.
SMALL_HOST = Host(memory_free=2 << 30, system_tasks_free=1 << 20, files_hard=1 << 20)


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[:60] or "none" for a, _ in BAD])
def test_bad_sweep_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, no_fork,
                                                        args, message):
    """Every malformed --vary, unbounded plan or bad point: exit 2, one line naming the
    problem, no traceback, no process forked, no folder."""
    monkeypatch.setattr(resources, "probe", lambda: SMALL_HOST)
    runs = tmp_path / "runs"
    code = main(["sweep", *args, "--runs-dir", str(runs)])
    assert_refused(code, capsys.readouterr().err, message)
    assert not runs.exists()


def test_the_largest_plan_allowed_is_accepted(tmp_path, monkeypatch):
    """The bounds are not off by one: 32 values of one parameter, or 8 x 8 points, plan."""
    monkeypatch.setattr(resources, "probe", lambda: SMALL_HOST)
    assert len(parse_vary("walk-rate=" + ",".join(str(n) for n in range(32)))[1]) == 32
    assert len(parse_vary("walk-rate=1..2147483648")[1]) == 32
    _, _, _, points = plan(["--vary", "cpus=1..128", "--vary", "walk-rate=1..128", "--cpus", "2",
                            "--memory", "8M", "--runs-dir", str(tmp_path / "runs")])
    assert len(points) == 64
    assert not (tmp_path / "runs").exists()



#: Runs a sweep whose second point is interrupted by a SIGINT sent as it starts.
INTERRUPT_SECOND_POINT = """
import os, signal, sys
from lpw_mp.commands import sweep
from lpw_mp.commands.cli import main

real, calls = sweep.run, []
def run(cfg, **kwargs):
    calls.append(cfg.cpus)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGINT)
    return real(cfg, **kwargs)
sweep.run = run
sys.exit(main(sys.argv[1:]))
"""


def test_an_interrupted_sweep_is_completed_by_resume(tmp_path, capsys):
    """A sweep interrupted as its second point starts leaves its folder: the manifest says
    the first point is done and the others are not, sweep.json says interrupted, and the output says
    how to resume. `sweep --resume DIR` runs only the points not done (the first keeps its
    record) and writes a complete sweep.json with every point, in the plan's order."""
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_SECOND_POINT, "sweep", "--vary",
                           "cpus=1,2,4", "--memory", "8M", "--strategy", "ipi,count", *FAST,
                           "--runs-dir", str(runs)], capture_output=True, text=True,
                          timeout=100)
    assert proc.returncode == 130, proc.stderr
    folder = sweep_folder(runs)
    assert f"sweep --resume {folder}" in proc.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [p["state"] for p in manifest["points"]] == ["done", "pending", "pending"]
    first = manifest["points"][0]["record"]
    assert json.loads((folder / "sweep.json").read_text())["status"] == "interrupted"

    assert main(["sweep", "--resume", str(folder), "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [p["state"] for p in manifest["points"]] == ["done"] * 3
    assert manifest["points"][0]["record"] == first
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["status"] == "complete" and sweep["sweep_id"] == folder.name
    assert [p["values"]["cpus"] for p in sweep["points"]] == [1, 2, 4]
    assert sweep["points"][0] == first
    assert all(p["status"] == "complete" for p in sweep["points"])
    assert {leg["safety"] for p in sweep["points"] for leg in p["legs"]} == {"ok"}


def test_resume_refuses_what_it_cannot_resume_in_one_line(tmp_path, capsys):
    """--resume of a folder without a manifest, or with run options beside it, is one line
    and status 2; a sweep whose points are all done is written again, and says so."""
    (tmp_path / "empty").mkdir()
    for argv, message in (
            (["--resume", str(tmp_path / "empty")], "no manifest.json"),
            (["--resume", str(tmp_path / "nowhere")], "not a folder"),
            (["--resume", str(tmp_path / "empty"), "--cpus", "4"], "unrecognized arguments")):
        assert main(["sweep", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    runs = tmp_path / "runs"
    assert main(["sweep", "--vary", "cpus=1,2", "--memory", "8M", *FAST, "--strategy", "ipi",
                 "--runs-dir", str(runs), "-q"]) == 0
    folder = sweep_folder(runs)
    capsys.readouterr()
    assert main(["sweep", "--resume", str(folder), "-q"]) == 0
    assert "every point of" in capsys.readouterr().err


def test_points_from_different_kinds_of_host_are_said_so():
    """Points that ran on hosts of another CPU model, core count or memory are grouped by
    kind, and the sweep's notes say that a curve then joins different hardware; points of
    one kind of host (or recorded without it) say nothing."""
    from lpw_mp.results.sweeps import host_kinds, host_note

    def point(cpus, model, cores):
        return {"values": {"cpus": cpus}, "host": {"cpu_model": model, "usable_cores": cores,
                                                   "memory_bytes": 16 << 30}}
    one = {"points": [point(2, "Xeon", 2), point(4, "Xeon", 2), {"values": {"cpus": 8}}]}
    assert list(host_kinds(one)) == ["Xeon, 2 cores, 16 GiB"] and host_note(one) is None
    two = {"points": [point(2, "Xeon", 2), point(4, "EPYC", 64), point(8, "Xeon", 2)]}
    assert host_kinds(two) == {"Xeon, 2 cores, 16 GiB": ["cpus=2", "cpus=8"],
                               "EPYC, 64 cores, 16 GiB": ["cpus=4"]}
    note = host_note(two)
    assert note.startswith("the points ran on 2 kinds of host (Xeon, 2 cores, 16 GiB: cpus=2, "
                           "cpus=8; EPYC, 64 cores, 16 GiB: cpus=4)")
    assert "ratios to ipi within a point come from one host" in note


def test_a_point_lost_with_its_host_is_a_failed_point_of_a_valid_sweep(tmp_path, capsys):
    """A point that never returned (its host lost twice on a cluster) is recorded as failed,
    its legs not run and its host unknown: the sweep document stays valid, and its table
    and notes say what happened."""
    from lpw_mp.results.formats import SWEEP
    from lpw_mp.results.sweeps import format_terminal
    runs = tmp_path / "runs"
    assert main(["sweep", "--vary", "cpus=1,2", *SMALL, "--memory", "8M", "--strategy", "ipi",
                 "--runs-dir", str(runs), "-q"]) == 0
    sweep = json.loads((sweep_folder(runs) / "sweep.json").read_text())
    lost = sweep_command._lost_record({"cpus": 2}, ["ipi"], "its worker was lost on each of 2 "
                                      "attempts (KilledWorker: ...)")
    sweep["points"][1] = lost
    sweep["status"], sweep["errors"] = "failed", ["cpus=2: its worker was lost"]
    assert SWEEP.problem(sweep) == ""
    assert lost["legs"] == [{"strategy": "ipi", "safe": True, "kernel": lost["legs"][0]["kernel"],
                             "status": "not run"}]
    text = format_terminal(sweep)
    assert "error: cpus=2: its worker was lost" in text
