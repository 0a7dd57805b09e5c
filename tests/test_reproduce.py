"""The reproduce command (on a tiny scenario) and the committed reference run of the full one."""

import json
import pathlib
import statistics

import pytest

from lpw_mp.commands.cli import main
from lpw_mp.commands.shell import config_from_args
from lpw_mp.commands.reproduce import (PUBLISHED, build_parser, compare_rows,
                                      hardware_differences)
from lpw_mp.results.schemas import first_error
from lpw_mp.kernel.strategies import STRATEGIES
from lpw_mp.results.formats import RESULT
from test_cli import assert_refused, no_fork  # noqa: F401 (a fixture)

pytestmark = pytest.mark.timeout(60)

FAST = ["--walker-time", "0"]
REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "runs" / "reference"
SEED_THPS = 253_952
PUBLISHED_TEXT = ("275 s", "418 ms", "430 ms", "82,150 ms", "39 ms", "369 ms")


def test_the_default_is_the_seed_scenario():
    """Without options, reproduce means 128 CPUs unmapping 496G of 2M THPs (253,952 PMDs) under
    every strategy, three times over (interleaved), and --help says so."""
    cfg = config_from_args(build_parser().parse_args([]))
    assert (cfg.cpus, cfg.memory, cfg.thp_size, cfg.op) == (128, 496 << 30, 2 << 20, "munmap")
    assert cfg.npmds == SEED_THPS and cfg.strategies == list(STRATEGIES)
    assert cfg.repeat == 3
    helptext = " ".join(build_parser().format_help().split())
    assert "(default 496G)" in helptext and "(default all)" in helptext
    assert "medians with intervals (default 3)" in helptext


def test_tiny_reproduce_prints_and_writes_the_comparison(tmp_path, capsys):
    """A tiny reproduce runs every strategy three times, prints the emulator's median times
    and speedups (medians of the per-round ratios) with their intervals beside every
    published figure and its speedup, says it is not the published scenario and what differs
    from the hardware, and writes reproduce.md next to the usual report."""
    runs = tmp_path / "runs"
    code = main(["reproduce", "--cpus", "2", "--memory", "16M", "--walk-rate", "0", *FAST,
                 "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert code == 0
    (folder,) = list(runs.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["report.md", "reproduce.md",
                                                        "result.json"]
    result = json.loads((folder / "result.json").read_text())
    assert first_error(result, "lpw_mp-result", RESULT.version) is None  # the reproduce section included
    section = result["reproduce"]
    legs = {leg["strategy"]: leg for leg in result["legs"]}
    assert set(legs) == set(STRATEGIES)
    rows = section["rows"]
    assert sorted(r["published_s"] for r in rows if r["published_s"]) == sorted(
        p.seconds for p in PUBLISHED)
    by_strategy = {r["strategy"]: r for r in rows}
    count = by_strategy["count"]
    rounds = zip(legs["ipi"]["samples"], legs["count"]["samples"])
    assert count["emulator_speedup"] == pytest.approx(
        statistics.median(i["wall_s"] / c["wall_s"] for i, c in rounds))
    low, high = count["emulator_speedup_interval"]["low"], count["emulator_speedup_interval"]["high"]
    assert low <= count["emulator_speedup"] <= high
    assert count["emulator_interval"]["low"] <= legs["count"]["wall_s"]
    assert count["published_speedup"] == pytest.approx(275 / 0.418)
    assert by_strategy["v5.8"]["published_speedup"] == pytest.approx(82.150 / 0.369)
    assert by_strategy["none"]["published"] is None
    assert section["scenario_differences"] == ["cpus 2 (published: 128)",
                                               "memory 16M (published: 496G)"]
    for text in PUBLISHED_TEXT:
        assert f" {text} " in out
    assert "NOT the published scenario" in out
    assert "2 simulated CPUs are 2 Python processes" in out
    md = (folder / "reproduce.md").read_text()
    assert "| strategy" in md and "What differs" in md and "82,150 ms" in md


def test_the_hardware_differences_say_how_often_count_ipis_against_the_kernel():
    """With count's overlap figures (annotate adds them), reproduce says how often it found a
    walker, what the model predicts, what it would be at the kernel's 154 ns per check, and
    how many times as often as the kernel the emulator's count IPIs."""
    result = RESULT.load(str(pathlib.Path(__file__).parent / "data" / "result-v1.json"))
    legs = {leg["strategy"]: leg for leg in result["legs"]}
    legs["count"]["overlap"] = {"observed": 0.02, "predicted": 0.025, "own_time_s": 5e-6,
                                "kernel_predicted": 0.001}
    lines = hardware_differences(result)
    assert ("How often `count` found a walker: in 2.00% of its checks (the overlap model "
            "predicts 2.50% from the walk starts and the 5 us the updater spends per check); "
            "at the kernel's 154 ns per check the model gives 0.10%, so here it IPIs about 20 "
            "times as often as the kernel would at the same walker activity.") in lines


@pytest.mark.parametrize("asked", [["count"], ["none"], ["v5.8", "count"], list(STRATEGIES)])
def test_every_published_figure_is_one_row_whatever_strategies_ran(asked):
    """compare_rows gives one row per published figure, ipi's and v5.8's two each included,
    and one per asked strategy without a figure; a strategy not asked shows 'not asked'.
    (With --strategy count, ipi and rcu used to come out twice: four rows each.)"""
    legs = [{"strategy": name, "status": "ok", "wall_s": 1.0} for name in asked]
    result = {"config": {"strategies": asked, "npmds": 16}, "legs": legs}
    rows = compare_rows(result)
    published = [(r["strategy"], r["published"]) for r in rows if r["published"]]
    assert sorted(published) == sorted((p.strategy, p.as_published) for p in PUBLISHED)
    assert rows[0]["strategy"] == asked[0]  # the asked strategies come first
    unpublished = [r["strategy"] for r in rows if not r["published"]]
    assert unpublished == [n for n in asked if n in ("sync-one", "sync-mm", "none")]
    for r in rows:
        assert r["status"] == ("ok" if r["strategy"] in asked else "not asked")


def test_reproduce_with_one_strategy_prints_each_published_figure_once(tmp_path, capsys):
    """reproduce --strategy count: each published figure once on the terminal, in
    reproduce.md and in result.json."""
    runs = tmp_path / "runs"
    code = main(["reproduce", "--strategy", "count", "--cpus", "2", "--memory", "16M",
                 "--walk-rate", "0", *FAST, "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert code == 0
    (folder,) = list(runs.iterdir())
    rows = json.loads((folder / "result.json").read_text())["reproduce"]["rows"]
    assert sorted(r["published"] for r in rows) == sorted(PUBLISHED_TEXT)
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("strategy    emulator"))
    table = "\n".join(lines[start:lines.index("", start)])
    md_table = "\n".join(line for line in (folder / "reproduce.md").read_text().splitlines()
                         if line.startswith("|"))
    for text in PUBLISHED_TEXT:
        assert table.count(f" {text} ") == 1 and md_table.count(f" {text} ") == 1, text


@pytest.mark.parametrize("args,message", [
    (["--op", "split"], "published figures are for munmap"),
    (["--preset", "v9"], "invalid choice: 'v9'"),
    (["--memory", "3M"], "whole number of"),
    (["--pte-fraction", "nan"], "argument --pte-fraction: 'nan' is not a finite number"),
    (["--pte-fraction", "inf"], "argument --pte-fraction: 'inf' is not a finite number"),
    (["--pte-fraction=-INF"], "argument --pte-fraction: '-INF' is not a finite number"),
    (["--memory", "496GB"], "size '496GB' is ambiguous"),
    (["--cpus", "1_28"], "argument --cpus: '1_28' is not a whole number"),
    (["--ipi-timeout", "1ns"], "--ipi-timeout 1 ns is below 10 ms"),
    (["--walk-window", "1ms", "--walk-rate", "5000"], "--walk-rate 5000 = 5"),
])
def test_bad_reproduce_input_is_one_line_and_writes_nothing(tmp_path, capsys, no_fork, args,
                                                           message):
    """A scenario the published figures do not cover, an unknown preset or a bad value: exit 2
    and one line, before anything runs (no process forked) or is written."""
    runs = tmp_path / "runs"
    code = main(["reproduce", *args, "--runs-dir", str(runs)])
    assert_refused(code, capsys.readouterr().err, message)
    assert not runs.exists()


def test_the_committed_reference_is_the_full_seed_scenario():
    """runs/reference holds one complete reproduce run of the full seed scenario: 128 CPUs,
    496G, every strategy finished three times, one IPI round per THP under ipi, no violation under a safe
    strategy, the host recorded, and reproduce.md beside the published figures. It reads
    as a result of this version (an older one is upgraded by RESULT.load)."""
    (path,) = list(REFERENCE.glob("*/result.json"))
    result = RESULT.load(str(path))
    assert result["format"] == "lpw_mp-result" and result["format_version"] == RESULT.version
    assert result["status"] == "complete"
    c = result["config"]
    # Three repeats, interleaved, each figure with its interval.
    assert c["repeat"] == 3
    assert all(leg["repeats"] == 3 and leg["intervals"]["time"]["n"] == 3
               for leg in result["legs"])
    assert (c["cpus"], c["memory"], c["thp_size"], c["op"]) == (128, 496 << 30, 2 << 20,
                                                                 "munmap")
    assert c["npmds"] == SEED_THPS
    legs = {leg["strategy"]: leg for leg in result["legs"]}
    assert list(legs) == ["ipi", "count", "percpu", "v5.8", "sync-one", "sync-mm", "none"]
    assert all(leg["status"] == "ok" for leg in legs.values())
    # ipi broadcasts for every huge leaf; the PTE tables go through RCU, never an IPI.
    tables = legs["ipi"]["frees_deferred"]
    assert tables > 0 and legs["ipi"]["serialisations"] == SEED_THPS - tables
    assert legs["ipi"]["ipis_sent"] == (SEED_THPS - tables) * 128
    assert all(leg["violations"]["total"] == 0 for leg in legs.values() if leg["safe"])
    assert legs["ipi"]["wall_s"] > max(leg["wall_s"] for name, leg in legs.items()
                                       if name != "ipi")
    host = result["host"]
    assert host["usable_cores"] >= 1 and host["hostname"] and host["load_average"]
    section = result["reproduce"]
    assert section["scenario_differences"] == []
    md = (path.parent / "reproduce.md").read_text()
    for text in PUBLISHED_TEXT:
        assert text in md
    assert "What differs" in md and "NOT the published scenario" not in md
