"""The command line: a real run end to end, and every kind of bad input."""

import json
import os
import subprocess
import sys

import pytest

from lpw_mp.cli import main
from lpw_mp.report import exit_status

SMALL = ["--cpus", "4", "--memory", "32M", "--walker-time", "0.2"]


def test_a_run_writes_a_report_and_a_versioned_result(tmp_path):
    """python -m lpw_mp runs every asked strategy on real processes, prints a table, and
    writes runs/<id>/report.md and result.json with the configuration and host metadata."""
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "lpw_mp", *SMALL, "--strategy", "ipi,count",
                           "--walk-rate", "50", "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    (folder,) = list(runs.iterdir())
    assert sorted(os.listdir(folder)) == ["report.md", "result.json"]
    result = json.loads((folder / "result.json").read_text())
    assert result["format"] == "lpw_mp-result" and result["format_version"] == 1
    assert result["status"] == "complete"
    assert result["config"]["cpus"] == 4 and result["config"]["npmds"] == 16
    host = result["host"]
    for key in ("usable_cores", "affinity", "oversubscription", "python", "start_method"):
        assert key in host
    assert host["oversubscription"] == pytest.approx(5 / host["usable_cores"], rel=0.01)
    legs = {leg["strategy"]: leg for leg in result["legs"]}
    assert set(legs) == {"ipi", "count"}
    assert legs["ipi"]["serialisations"] == 16 and legs["ipi"]["ipis_sent"] == 64
    assert legs["ipi"]["ipi_round_s"]["n"] == 16
    for leg in legs.values():
        assert leg["serialisations"] + leg["skipped"] == 16
        assert leg["violations"]["total"] == 0 and leg["safety"] == "ok"
    md = (folder / "report.md").read_text()
    assert "| strategy" in md and "| ipi" in md
    assert "IPI round p50" in proc.stdout and str(folder) in proc.stdout


def test_quiet_prints_only_the_run_folder(tmp_path):
    """--quiet prints one line: the path of the run folder it wrote."""
    code = main([*SMALL, "--runs-dir", str(tmp_path), "--quiet"])
    assert code == 0
    (folder,) = list(tmp_path.iterdir())
    assert (folder / "result.json").exists()


def test_json_prints_the_result(tmp_path, capsys):
    """--json prints the same result document that result.json holds."""
    assert main([*SMALL, "--runs-dir", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    (folder,) = list(tmp_path.iterdir())
    assert printed == json.loads((folder / "result.json").read_text())


BAD = [
    (["--cpus", "0"], "--cpus"),
    (["--cpus", "-3"], "--cpus"),
    (["--cpus", "abc"], "not a whole number"),
    (["--cpus", "5000"], "4096"),
    (["--memory", "12X"], "malformed size"),
    (["--memory", "0"], "--memory"),
    (["--memory", "8P"], "malformed size"),
    (["--thp-size", "3M"], "not a power of two"),
    (["--thp-size", "1K"], "base page"),
    (["--memory", "8G", "--thp-size", "16G"], "larger than --memory"),
    (["--memory", "3M"], "whole number of"),
    (["--strategy", "bogus"], "unknown strategy 'bogus'"),
    (["--strategy", ","], "no strategy"),
    (["--op", "explode"], "invalid choice: 'explode'"),
    (["--ops", "10"], "--ops only applies to --op mixed"),
    (["--walk-rate", "-1"], "--walk-rate"),
    (["--walk-rate", "nan"], "--walk-rate"),
    (["--walk-window", "5h"], "malformed duration"),
    (["--walk-window", "2s"], "--walk-window"),
    (["--pte-fraction", "1.5"], "--pte-fraction"),
    (["--cpumask", "fuzzy"], "invalid choice: 'fuzzy'"),
    (["--active-fraction", "-0.1"], "--active-fraction"),
    (["--ipi-timeout", "0"], "--ipi-timeout"),
    (["--start-method", "forkserver"], "invalid choice"),
    (["--quiet", "--json"], "not allowed with"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["stray"], "unrecognized arguments: stray"),
    (["--memory", "4T", "--pte-fraction", "1", "--thp-size", "64M"], "PTE page pool"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    """Each bad value or combination: exit status 2, a one-line message naming the problem,
    no traceback, and no run folder."""
    runs = tmp_path / "runs"
    code = main([*args, "--runs-dir", str(runs)] if "--runs-dir" not in args else args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lpw_mp: error: "), err
    assert message in err
    assert not runs.exists()


def test_unwritable_runs_dir_is_a_usage_error(tmp_path, capsys):
    """A --runs-dir that cannot be created (under a regular file) fails up front."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*SMALL, "--runs-dir", str(blocker / "runs")]) == 2
    assert "--runs-dir" in capsys.readouterr().err


def test_usage_errors_print_no_traceback_from_a_real_process(tmp_path):
    """Through the real entry point: status 2, a single line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "lpw_mp", "--cpus", "zero"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_exit_status_flags_a_safe_strategy_that_was_violated():
    """A violation under a safe strategy is an emulator bug: exit 1; under none it is not."""
    def result(strategy, safe, total):
        return {"status": "complete", "legs": [], "unsafe_violations": total if safe else 0}
    assert exit_status(result("ipi", True, 3)) == 1
    assert exit_status(result("none", False, 3)) == 0
    assert exit_status({"status": "interrupted", "signal": "SIGINT"}) == 130
    assert exit_status({"status": "interrupted", "signal": "SIGTERM"}) == 143
    assert exit_status({"status": "failed"}) == 1
