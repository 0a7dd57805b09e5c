"""The compare command: runs side by side with ratios, verdicts, --json, warnings, and every
kind of bad input."""

import copy
import json
import os
import shutil
import subprocess
import sys

import pytest

from lpw_mp.commands.cli import main
from lpw_mp.commands.compare import METRICS
from lpw_mp.results.formats import RESULT
from lpw_mp.results.repeats import FIGURES, PAIRED, combine
from lpw_mp.results.verdicts import annotate

pytestmark = pytest.mark.timeout(60)

FAST = ["--walker-time", "0"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One real small run, made once for the module."""
    runs = tmp_path_factory.mktemp("real") / "runs"
    assert main(["--cpus", "2", "--memory", "8M", "--strategy", "ipi,count", "--walk-rate",
                 "0", *FAST, "--runs-dir", str(runs), "--quiet"]) == 0
    (folder,) = list(runs.iterdir())
    return folder


@pytest.fixture
def runs(tmp_path, real_run):
    """Run A (a copy of the real run), and B: a copy with 4 CPUs whose times are exactly twice
    A's."""
    runs = tmp_path / "runs"
    a = runs / real_run.name
    shutil.copytree(real_run, a)
    b = runs / "b-run"
    shutil.copytree(a, b)
    result = json.loads((b / "result.json").read_text())
    result["run_id"] = "b-run"
    result["config"]["cpus"] = 4
    for leg in result["legs"]:
        for row in [leg, *leg["samples"]]:
            row["wall_s"] *= 2
    (b / "result.json").write_text(json.dumps(result))
    return runs, a.name, "b-run"


def test_compare_prints_each_time_and_its_ratio_to_the_first(runs, capsys):
    """Each strategy gets a row with every run's time, the ratio to the first run and, for runs
    of one sample, no verdict; run ids are looked up under --runs-dir; a difference not named
    by --vary is warned about."""
    folder, a, b = runs
    assert main(["compare", a, b, "--runs-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("ipi", "count"))}
    assert set(rows) == {"ipi", "count"}
    assert all(row.rstrip().endswith(" 2x  one sample, cannot tell") for row in rows.values()), \
        rows
    assert f"A: {a} (one sample), cpus 2" in out and "B: b-run (one sample), cpus 4" in out
    assert "warning: the configurations differ in more than what is compared (cpus 2 / 4)" in out


def test_vary_names_the_difference_on_purpose(runs, capsys):
    """With --vary cpus, the same runs compare without a configuration warning; run folders
    given as paths work as well as ids."""
    folder, a, b = runs
    assert main(["compare", str(folder / a), str(folder / b / "result.json"),
                 "--vary", "cpus"]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out and " 2x" in out


def test_other_hosts_and_same_config_are_warned_about(runs, capsys):
    """A run from another host is flagged; so is a --vary key that does not actually differ."""
    folder, a, b = runs
    path = folder / b / "result.json"
    result = json.loads(path.read_text())
    result["host"]["hostname"] = "elsewhere"
    path.write_text(json.dumps(result))
    assert main(["compare", a, b, "--runs-dir", str(folder), "--vary", "cpus,seed"]) == 0
    out = capsys.readouterr().out
    assert "different hosts (they differ in hostname)" in out
    assert "--vary seed: every run has the same seed" in out


def test_a_strategy_missing_from_a_run_shows_a_dash(runs, capsys):
    """A strategy that only one run has shows '-' for the other, and no ratio or verdict."""
    folder, a, b = runs
    path = folder / b / "result.json"
    result = json.loads(path.read_text())
    result["legs"] = [leg for leg in result["legs"] if leg["strategy"] == "ipi"]
    path.write_text(json.dumps(result))
    assert main(["compare", a, b, "--runs-dir", str(folder), "--vary", "cpus"]) == 0
    (count,) = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("count")]
    assert count.split()[-3:] == ["-", "-", "-"]


def _bad(folder, a, b, kind):
    """Write a broken result of ``kind`` into a new folder; return its path."""
    target = folder / kind
    target.mkdir()
    if kind in ("sweep", "sweep folder"):
        (target / "sweep.json").write_text(json.dumps({"format": "lpw_mp-sweep"}))
        return str(target / "sweep.json") if kind == "sweep" else str(target)
    if kind == "not-json":
        (target / "result.json").write_text("# a report\n")
    elif kind == "version-3":
        result = json.loads((folder / a / "result.json").read_text())
        result["format_version"] = 3
        (target / "result.json").write_text(json.dumps(result))
    elif kind == "header-only":
        (target / "result.json").write_text(json.dumps({"format": "lpw_mp-result",
                                                        "format_version": 1}))
    elif kind == "no-config":
        result = json.loads((folder / a / "result.json").read_text())
        del result["config"]
        (target / "result.json").write_text(json.dumps(result))
    return str(target)


BAD = [
    ("missing", lambda f, a, b: ["compare", a, "nope"], "no run 'nope'"),
    ("one run", lambda f, a, b: ["compare", a], "at least two runs"),
    ("no result.json", lambda f, a, b: ["compare", a, _bad(f, a, b, "empty")],
     "not an lpw_mp run folder"),
    ("sweep", lambda f, a, b: ["compare", a, _bad(f, a, b, "sweep")],
     "is not an lpw_mp result (format 'lpw_mp-sweep'"),
    ("sweep folder", lambda f, a, b: ["compare", a, _bad(f, a, b, "sweep folder")],
     "is a sweep folder, not a run"),
    ("not json", lambda f, a, b: ["compare", a, _bad(f, a, b, "not-json")],
     "is not an lpw_mp result (not JSON"),
    ("version 3", lambda f, a, b: ["compare", a, _bad(f, a, b, "version-3")],
     "format version 3; this lpw_mp reads versions 1, 2"),
    ("header only", lambda f, a, b: ["compare", a, _bad(f, a, b, "header-only")],
     "result.json is not a valid lpw_mp result: 'lpw_mp_version' is a required property "
     "(at top level)"),
    ("no config", lambda f, a, b: ["compare", a, _bad(f, a, b, "no-config")],
     "result.json is not a valid lpw_mp result: 'config' is a required property "
     "(at top level)"),
    ("bad vary", lambda f, a, b: ["compare", a, b, "--vary", "colour"],
     "'colour' is not a configuration key"),
    ("bad metric", lambda f, a, b: ["compare", a, b, "--metric", "joy"],
     "argument --metric: 'joy' is not a figure (choose from time, per-op, ipi-p50, "),
]


@pytest.mark.parametrize("args,message", [(a, m) for _, a, m in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_compare_input_is_one_line_and_exit_2(runs, capsys, args, message):
    """A missing run, a file that is not an lpw_mp result (or of another version, or with the
    right header but not valid against the format's schema), a bad option: exit 2 and one line
    naming the problem, no table."""
    folder, a, b = runs
    code = main([*args(folder, a, b), "--runs-dir", str(folder)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith("lpw_mp: error: ")
    assert message in captured.err, captured.err
    assert captured.out == ""


# -- verdicts: result documents built from a real run's, with samples set by the test ---------

#: Three samples' own factors: a spread of a few percent, not sorted.
SPREAD = (1.02, 0.97, 1.0)
#: What --json prints, by level.
DOCUMENT_KEYS = {"metric", "test", "runs", "strategies", "notes", "warnings"}
RUN_KEYS = {"letter", "run_id", "path", "repeat", "samples_per_leg", "status", "differs"}
CELL_KEYS = {"letter", "status", "value", "interval", "n", "samples", "ratio", "verdict",
             "p_value", "test"}


@pytest.fixture(scope="module")
def repeated_run(tmp_path_factory):
    """One real tiny run with --repeat 3 and a walker phase, made once for the module: the
    template of every result document the verdict tests write."""
    runs = tmp_path_factory.mktemp("repeated") / "runs"
    assert main(["--cpus", "2", "--memory", "16M", "--walker-time", "0.1", "--repeat", "3",
                 "--runs-dir", str(runs), "--quiet"]) == 0
    (folder,) = list(runs.iterdir())
    return json.loads((folder / "result.json").read_text())


def write_run(runs, run_id, template, scale=None, spread=SPREAD, reverse=False, **config):
    """Write run ``run_id`` under ``runs``: the ``template`` result with, if ``scale`` is given,
    every ok leg's samples set to the leg's own median times ``scale`` times the sample's
    factor in ``spread`` (operation time, time per operation and walker-phase walks/s; the
    other figures are the template's); the samples in reverse order if ``reverse``; the
    ``config`` keys changed. Its legs are combined again and annotated as a run's are, and
    the document is checked to load as a valid result. Returns the folder."""
    result = copy.deepcopy(template)
    result["run_id"] = run_id
    result["config"].update(config)
    for leg in (leg for leg in result["legs"] if leg.get("status") == "ok"):
        if scale is not None:
            for sample, factor in zip(leg["samples"], spread, strict=True):
                sample["wall_s"] = leg["wall_s"] * scale * factor
                sample["per_op_s"] = leg["per_op_s"] * scale * factor
                sample["walker_side"]["walks_per_s"] = \
                    leg["walker_side"]["walks_per_s"] * scale * factor
        if reverse:
            leg["samples"].reverse()
        leg.update(combine(leg["samples"]))
    annotate(result)
    folder = runs / run_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result))
    RESULT.load(str(folder / "result.json"))
    return folder


def compare_json(capsys, *args) -> dict:
    """``compare --json`` of ``args`` through main: exit 0, and the document it printed."""
    assert main(["compare", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def verdicts(document: dict) -> dict:
    """strategy -> the verdict of each run after the first."""
    return {row["strategy"]: [cell["verdict"] for cell in row["runs"][1:]]
            for row in document["strategies"]}


def test_runs_of_the_same_samples_are_not_significant_in_any_figure(tmp_path, repeated_run,
                                                                      capsys):
    """Two runs whose legs hold the very same samples (in another order) are "not
    significant" for every figure compare takes that they have, with ratio 1: compare does
    not call noise a difference."""
    a = write_run(tmp_path, "same-a", repeated_run)
    b = write_run(tmp_path, "same-b", repeated_run, reverse=True)
    seen = set()
    for metric in METRICS:
        document = compare_json(capsys, a, b, "--metric", metric)
        for row in document["strategies"]:
            first, second = row["runs"]
            if first["value"] is None:   # no such figure (count sent no IPI; ipi vs ipi)
                assert second["verdict"] is None
                continue
            assert second["verdict"] == "not significant", (metric, row)
            assert second["ratio"] == pytest.approx(1.0) and second["p_value"] > 0.9
            seen.add((metric, row["strategy"]))
    # Whether count sent an IPI is up to the walkers; every other figure is always there.
    always = {(m, s) for m in METRICS for s in ("ipi", "count")
              if not m.startswith("ipi-") and not (m.endswith("vs-ipi") and s == "ipi")}
    assert always <= seen and ("ipi-p50", "ipi") in seen


def test_clearly_separated_runs_are_slower_or_faster_the_right_way(tmp_path, repeated_run):
    """B's samples twice A's, each with a spread of a few percent: through
    ``python -m lpw_mp compare --json``, B is "slower" in operation time (ratio 2) and A
    against B "faster"; in walks/s, where more is better, the doubled B is "faster"."""
    a = write_run(tmp_path, "fast", repeated_run, scale=1.0)
    b = write_run(tmp_path, "slow", repeated_run, scale=2.0, spread=(0.99, 1.01, 1.0))

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "lpw_mp", "compare", *map(str, args),
                               "--json"], capture_output=True, text=True, check=True, timeout=60)
        return json.loads(proc.stdout)

    forward = run(a, b)
    assert verdicts(forward) == {"ipi": ["slower"], "count": ["slower"]}
    for row in forward["strategies"]:
        assert row["runs"][1]["ratio"] == pytest.approx(2.0)
        assert row["runs"][1]["p_value"] < 0.001
        assert row["runs"][1]["test"] == "Welch's t-test on log samples"
    assert verdicts(run(b, a)) == {"ipi": ["faster"], "count": ["faster"]}
    assert verdicts(run(a, b, "--metric", "walks-per-s")) == {"ipi": ["faster"],
                                                              "count": ["faster"]}


def test_the_table_shows_medians_intervals_and_the_verdict(tmp_path, repeated_run, capsys):
    """The table gives each run's median with its interval, the ratio and pyperf's wording
    (``2.00x slower``); the footer names the test and what the intervals are."""
    a = write_run(tmp_path, "fast", repeated_run, scale=1.0)
    b = write_run(tmp_path, "slow", repeated_run, scale=2.0, spread=(0.99, 1.01, 1.0))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "A: fast (3 repeats)" in out and "B: slow (3 repeats)" in out
    (ipi,) = [line for line in out.splitlines() if line.startswith("ipi")]
    assert ipi.rstrip().endswith("  2x  2.00x slower") and ipi.count("(") == 2, ipi
    assert "verdicts: Welch's t-test on log samples (two-sided, alpha 0.05); a ratio within " \
           "1% of 1 is not significant" in out
    assert "with 3 samples it is their range, at 75.0% confidence" in out
    assert "warning" not in out


def test_runs_of_one_sample_cannot_tell(tmp_path, repeated_run, real_run, capsys):
    """A run without --repeat (one sample per leg) gets no verdict but "one sample, cannot
    tell", beside a repeated run as beside another single one, and the footer says how to
    get verdicts."""
    repeated = write_run(tmp_path, "repeated", repeated_run)
    for pair in ((repeated, real_run), (real_run, repeated)):
        document = compare_json(capsys, *pair, "--vary", "memory,walk-rate,walker-time")
        assert verdicts(document) == {"ipi": ["one sample, cannot tell"],
                                      "count": ["one sample, cannot tell"]}
        single = [run["letter"] for run in document["runs"] if run["samples_per_leg"] == 1]
        assert len(single) == 1
        assert (f"one sample, cannot tell: {single[0]} has one sample per strategy, so no "
                f"difference can be told from noise; run with --repeat 5 or more for "
                f"verdicts") in document["notes"]
    assert main(["compare", str(real_run), str(real_run)]) == 0
    assert "A and B have one sample per strategy" in capsys.readouterr().out


def test_the_same_run_twice_is_warned_about_and_still_compared(tmp_path, repeated_run, capsys):
    """One folder passed twice (as a folder and as its result.json), or a copy of a run with
    its run id: a warning says a run compared with itself says nothing, and the comparison is
    printed all the same."""
    a = write_run(tmp_path, "one", repeated_run)
    assert main(["compare", str(a), str(a / "result.json")]) == 0
    out = capsys.readouterr().out
    assert (f"warning: A and B are the same run ({a / 'result.json'}): a run compared with "
            f"itself says nothing") in out
    assert "not significant" in out
    copy_of_a = tmp_path / "copied" / "one"
    shutil.copytree(a, copy_of_a)
    document = compare_json(capsys, a, copy_of_a)
    assert document["warnings"] == [
        f"A and B are the same run (run id one at {a / 'result.json'} and "
        f"{copy_of_a / 'result.json'}): a run compared with itself says nothing"]


def test_json_has_the_documented_keys(tmp_path, repeated_run, real_run, capsys):
    """--json prints one JSON document instead of the table: the metric, the test, the runs
    with their ids and resolved paths, per strategy a cell per run (value, interval, ratio,
    verdict, p-value, test; nothing to compare in the first), notes and warnings."""
    a = write_run(tmp_path, "a", repeated_run, scale=1.0)
    b = write_run(tmp_path, "b", repeated_run, scale=1.5, cpus=4)
    document = compare_json(capsys, a, b, real_run, "--metric", "per_op")
    assert set(document) == DOCUMENT_KEYS
    assert document["metric"] == {"key": "per_op", "name": "per-op",
                                  "title": "time per operation", "unit": "s",
                                  "higher_is_better": False, "relative_to": None}
    assert document["test"] == {"name": "Welch's t-test on log samples", "alpha": 0.05,
                                "min_effect": 0.01}
    runs = document["runs"]
    assert all(set(run) == RUN_KEYS for run in runs)
    assert [run["run_id"] for run in runs] == ["a", "b", real_run.name]
    assert runs[0]["path"] == os.path.realpath(a / "result.json")
    assert [run["repeat"] for run in runs] == [3, 3, 1]
    assert runs[1]["differs"]["cpus"] == 4
    for row in document["strategies"]:
        first, b_cell, c_cell = row["runs"]
        assert all(set(cell) == CELL_KEYS for cell in row["runs"])
        assert first["ratio"] is first["verdict"] is first["p_value"] is None
        assert first["interval"]["n"] == 3 and first["value"] == first["interval"]["median"]
        assert b_cell["verdict"] == "slower" and b_cell["ratio"] == pytest.approx(1.5)
        assert c_cell["verdict"] == "one sample, cannot tell" and c_cell["interval"] is None
    assert any("differ in more than what is compared" in w for w in document["warnings"])


def test_metric_names_and_figures_relative_to_ipi(tmp_path, repeated_run, capsys):
    """--metric takes every figure, spelt with - or _ (time, per-op and ipi-p50 as before);
    for a figure relative to ipi, ipi's own row is the baseline, with nothing to compare."""
    a = write_run(tmp_path, "a", repeated_run)
    b = write_run(tmp_path, "b", repeated_run)
    assert METRICS[:3] == ["time", "per-op", "ipi-p50"]
    assert set(METRICS) == {key.replace("_", "-") for key in (*FIGURES, *PAIRED)}
    for spelling in ("ipi-p50", "ipi_p50", "IPI-P50"):
        assert compare_json(capsys, a, b, "--metric", spelling)["metric"]["key"] == "ipi_p50"
    document = compare_json(capsys, a, b, "--metric", "vs-ipi")
    assert document["metric"]["relative_to"] == "ipi"
    ipi = next(row for row in document["strategies"] if row["strategy"] == "ipi")
    assert all(cell["value"] is None and cell["verdict"] is None for cell in ipi["runs"])
    assert main(["compare", str(a), str(b), "--metric", "vs-ipi"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("ipi")]
    assert line.split() == ["ipi", "baseline", "baseline", "-", "-"]


def test_a_key_a_run_predates_counts_as_its_default():
    """A run made before --memory-model existed has no memory_model in its configuration: it
    ran sc, so beside an sc run nothing differs, and beside a tso run the key does."""
    from lpw_mp.commands.compare import differing_keys
    old = {"config": {"cpus": 4, "seed": 1}}
    assert differing_keys([old, {"config": {"cpus": 4, "seed": 1, "memory_model": "sc"}}]) == {}
    assert differing_keys([old, {"config": {"cpus": 4, "seed": 1, "memory_model": "tso"}}]) \
        == {"memory_model": ["sc", "tso"]}
