"""The compare command: runs side by side with ratios, warnings, and every kind of bad input."""

import json
import shutil

import pytest

from lpw_mp.commands.cli import main

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
