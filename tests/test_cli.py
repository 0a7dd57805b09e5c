"""The command line: a real run end to end, and every kind of bad input."""

import json
import os
import subprocess
import sys

import pytest

from lpw_mp.commands.cli import COMMANDS, main
from lpw_mp.results.verdicts import exit_status, leg_warnings
from lpw_mp.results.formats import RESULT

SMALL = ["--cpus", "4", "--memory", "32M", "--walker-time", "0.2"]


def test_a_run_writes_a_report_and_a_versioned_result(tmp_path):
    """python -m lpw_mp runs every asked strategy on real processes, prints a table, and
    writes runs/<id>/report.md and result.json with the configuration and host metadata."""
    runs = tmp_path / "runs"
    # Huge leaves only: ipi serialises each zap_huge_pmd (a PTE table's free never was).
    proc = subprocess.run([sys.executable, "-m", "lpw_mp", *SMALL, "--pte-fraction", "0",
                           "--strategy", "ipi,count",
                           "--walk-rate", "50", "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    (folder,) = list(runs.iterdir())
    assert sorted(os.listdir(folder)) == ["report.md", "result.json"]
    result = json.loads((folder / "result.json").read_text())
    assert result["format"] == "lpw_mp-result" and result["format_version"] == RESULT.version
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
    (["--cpus", "9000"], "8192"),
    (["--memory", "12X"], "malformed size"),
    (["--memory", "0"], "--memory"),
    (["--memory", "8P"], "malformed size"),
    (["--thp-size", "3M"], "not a power of two"),
    (["--thp-size", "1K"], "--thp-size 1K is out of range: 4K to 64T (at least the base page)"),
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
    (["--batch-fail-rate", "1.5"], "--batch-fail-rate"),
    (["--batch-fail-rate", "-0.1"], "--batch-fail-rate"),
    (["--walker", "sometimes"], "invalid choice: 'sometimes'"),
    (["--strategy", "rcu2"], "unknown strategy 'rcu2'"),
    (["--ipi-timeout", "0"], "--ipi-timeout"),
    (["--start-method", "forkserver"], "invalid choice"),
    (["--quiet", "--json"], "not allowed with"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["stray"], "unknown command 'stray' (choose from run, reproduce, sweep, plot, timeline, compare, check)"),
    (["--cpus", "4", "stray"], "unrecognized arguments: stray"),
    (["run", "stray"], "unrecognized arguments: stray"),
    (["--memory", "4T", "--pte-fraction", "1", "--thp-size", "64M"], "PTE page pool"),
    # Every count has an upper bound, and a number too long for any bound is refused as such.
    (["--op", "mixed", "--ops", "100000000000000"],
     "--ops 100000000000000 is out of range: 0 to 10000000"),
    (["--seed", "4294967296"], "--seed 4294967296 is out of range: 0 to 4294967295"),
    (["--cpus", "9" * 30], "is too large (30 digits)"),
    (["--memory", "65T"], "--memory 65T is out of range: 4K to 64T"),
    (["--memory", "9" * 30 + "T"], "is too large"),
    (["--walk-rate", "2e6"], "--walk-rate 2e+06 is out of range"),
    (["--walker-time", "601s"], "--walker-time 601 s is out of range: 0 to 600 s"),
    # Every float refuses nan, inf and -inf in any capitalisation, and overflow.
    (["--pte-fraction", "nan"], "argument --pte-fraction: 'nan' is not a finite number"),
    (["--pte-fraction", "inf"], "argument --pte-fraction: 'inf' is not a finite number"),
    (["--pte-fraction=-inf"], "argument --pte-fraction: '-inf' is not a finite number"),
    (["--pte-fraction", "-inf"], "argument --pte-fraction: '-inf' is not a finite number"),
    (["--walk-rate", "-1e3"], "--walk-rate"),
    (["--active-fraction", "NaN"], "argument --active-fraction: 'NaN' is not a finite number"),
    (["--walk-rate", "Infinity"], "argument --walk-rate: 'Infinity' is not a finite number"),
    (["--walk-rate", "1e999"], "argument --walk-rate: '1e999' is not a finite number"),
    (["--walk-window", "inf"], "argument --walk-window: duration 'inf' is not finite"),
    # --ipi-timeout: 10 ms to 1 h.
    (["--ipi-timeout", "1ns"], "--ipi-timeout 1 ns is below 10 ms: below that, the host's "
                               "scheduler cannot tell a late CPU from a descheduled one"),
    (["--ipi-timeout", "9999us"], "--ipi-timeout 9.999 ms is below 10 ms"),
    (["--ipi-timeout", "3601s"], "--ipi-timeout 3,601 s is above 1 h"),
    # IRQs cannot be off for a second or more of every second.
    (["--walk-window", "1ms", "--walk-rate", "5000"],
     "--walk-window 1 ms x --walk-rate 5000 = 5: each CPU would keep IRQs off 5 s of every "
     "second"),
    (["--walk-window", "1ms", "--walk-rate", "1000"], "--walk-window 1 ms x --walk-rate 1000 = 1"),
    # Only the documented spellings: ASCII digits, no underscores, no spaces, no GB.
    (["--cpus", "1_0"], "argument --cpus: '1_0' is not a whole number (ASCII digits 0-9 only)"),
    (["--cpus", "\uff14"], "argument --cpus: '\uff14' is not a whole number"),
    (["--cpus", "\u0664"], "argument --cpus: '\u0664' is not a whole number"),
    (["--cpus", " 4"], "argument --cpus: ' 4' is not a whole number"),
    (["--cpus", "4x"], "argument --cpus: '4x' is not a whole number"),
    (["--seed", "+1"], "argument --seed: '+1' is not a whole number"),
    (["--walk-rate", "1_000"], "argument --walk-rate: '1_000' is not a number"),
    (["--pte-fraction", "\uff10.5"], "argument --pte-fraction: '\uff10.5' is not a number"),
    (["--memory", "8GB"], "argument --memory: size '8GB' is ambiguous (GB is a power of 1000 or "
                          "of 1024): write 8G or 8GiB"),
    (["--thp-size", "2kb"], "size '2kb' is ambiguous (KB is a power of 1000 or of 1024): write "
                            "2K or 2KiB"),
    (["--memory", "8G "], "malformed size '8G '"),
    (["--memory", "1_0G"], "malformed size '1_0G'"),
    (["--walk-window", "20 us"], "malformed duration '20 us'"),
    (["--walk-window", "20US"], "malformed duration '20US'"),
    (["--walker-time", "1h"], "malformed duration '1h'"),
    # --runs-dir "" would be the current folder, found unwritable only after the run.
    (["--runs-dir", ""], "--runs-dir is empty"),
]


@pytest.fixture
def no_fork(monkeypatch):
    """Fail the test if anything forks: bad input must start no process."""
    def fork():
        raise AssertionError("a process was forked for bad input")
    monkeypatch.setattr(os, "fork", fork)


def snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_refused(code, err, message):
    """Exit 2, one line on stderr that names the problem, no traceback."""
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lpw_mp: error: "), err
    assert "Traceback" not in err
    assert message in err, err


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, no_fork, args, message):
    """Each bad value or combination: exit status 2, a one-line message naming the problem,
    no traceback, no process forked and no run folder."""
    runs = tmp_path / "runs"
    code = main([*args, "--runs-dir", str(runs)] if "--runs-dir" not in args else args)
    assert_refused(code, capsys.readouterr().err, message)
    assert not runs.exists()


def _dangling(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    return tmp_path / "link"


def _loop(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a" / "runs"


def _file(tmp_path):
    (tmp_path / "file").write_text("")
    return tmp_path / "file"


#: --runs-dir values that cannot become a writable folder: name -> (make the path, message).
BAD_RUNS_DIRS = {
    "dangling link": (_dangling, "link is a dangling symbolic link (to "),
    "a file name with a NUL byte": (lambda t: "runs\0x", "contains a NUL byte"),
    "under a dangling link": (lambda t: _dangling(t) / "sub" / "runs",
                              "link is a dangling symbolic link"),
    "symbolic link loop": (_loop, "is a symbolic link loop"),
    "a regular file": (_file, "file is a file, not a folder"),
    "through a regular file": (lambda t: _file(t) / "sub" / "runs",
                               "sub/runs cannot be made: "),
    "a name too long": (lambda t: t / ("x" * 300) / "runs", "is longer than the 255 bytes"),
    "a path too long": (lambda t: t.joinpath(*["y" * 200] * 21), "--runs-dir is too long a path"),
}


@pytest.mark.parametrize("command", [[], ["reproduce"], ["sweep", "--vary", "cpus=2"]])
@pytest.mark.parametrize("kind", BAD_RUNS_DIRS)
def test_a_runs_dir_that_cannot_be_written_is_refused_up_front(tmp_path, capsys, no_fork,
                                                                command, kind):
    """A --runs-dir that cannot become a writable folder (a dangling symbolic link, a path
    under one or through a regular file, a loop, a name the file system refuses) is refused
    before the run by every command that writes, not after it; nothing is created."""
    make, message = BAD_RUNS_DIRS[kind]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    code = main([*command, "--cpus", "2", "--memory", "16M", "--runs-dir", str(path)])
    err = capsys.readouterr().err
    assert_refused(code, err, message)
    assert "--runs-dir" in err
    assert snapshot(tmp_path) == before


def test_a_runs_dir_without_write_permission_is_refused(tmp_path, capsys, monkeypatch, no_fork):
    """A folder this user may not write into (root may write anywhere, so the permission is
    denied through os.access here) is refused up front, naming the folder at fault."""
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(tmp_path))
    code = main(["--runs-dir", str(tmp_path / "runs")])
    assert_refused(code, capsys.readouterr().err, f"--runs-dir {tmp_path}/runs cannot be made: "
                                                   f"{tmp_path} is not writable")
    assert not (tmp_path / "runs").exists()


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


def _leg(walks, wall_s):
    """The part of a leg that leg_warnings reads, with nothing else to warn about."""
    return {"ipi_round_s": {"n": 0, "cv": None}, "walker_side": None, "walk_lateness_s": None,
            "pool_exhausted": 0, "safe": True, "violations": {"total": 0},
            "walks": walks, "wall_s": wall_s}


@pytest.mark.parametrize("walks,wall_s,rate,active,flagged", [
    (1000, 1.0, 5000.0, 4, True),     # 250/s per CPU against 5000 asked
    (9999, 1.0, 5000.0, 4, True),     # just under half
    (10000, 1.0, 5000.0, 4, False),   # exactly half
    (0, 0.2, 20.0, 4, False),         # 16 walks expected: too few to judge
    (0, 0.25, 20.0, 4, True),         # 20 expected, none made
    (0, 1.0, 0.0, 4, False),          # no walks asked
    (0, 1.0, 20.0, 0, False),         # no CPU running the process
    (0, 0.0, 20.0, 4, False),         # an operation too quick to time
])
def test_a_walk_rate_far_below_the_asked_one_is_flagged(walks, wall_s, rate, active, flagged):
    """When the walks made during the operation, per second and per active CPU, fall below
    half of --walk-rate and at least 20 were expected, the leg gets a warning (a ? note)
    giving the achieved and the asked rate; otherwise it gets none."""
    config = {"walk_rate": rate, "active_cpus": active, "op": "munmap"}
    warnings = leg_warnings(_leg(walks, wall_s), {}, config)
    assert warnings == ([f"walks ran at {walks / wall_s / active:.3g}/s per CPU during the "
                         f"munmap, under 50% of the {rate:g}/s asked (--walk-rate): the host "
                         f"could not keep up, so the updater met fewer walks than asked"]
                        if flagged else [])


def test_help_lists_every_command_with_its_summary(capsys):
    """Top-level --help names every subcommand beside a one-line summary."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, module in COMMANDS.items():
        assert f"{name} {' '.join(module.SUMMARY.split())}" in out


@pytest.mark.parametrize("argv,message", [
    (["bogus"], "unknown command 'bogus' (choose from run, reproduce, sweep, plot, timeline, compare, check)"),
    (["swep", "--vary", "cpus=2"], "unknown command 'swep'; did you mean 'sweep'?"),
    (["comapre"], "unknown command 'comapre'; did you mean 'compare'?"),
])
def test_an_unknown_command_is_one_line_with_a_suggestion(capsys, argv, message):
    """A word that names no command is one line, with the closest command if one is close,
    exit status 2."""
    assert main(argv) == 2
    assert capsys.readouterr().err == f"lpw_mp: error: {message}\n"


@pytest.mark.parametrize("how,prog", [
    ([sys.executable, "-m", "lpw_mp"], "python -m lpw_mp"),
    ([os.path.join(os.path.dirname(sys.executable), "lpw_mp")], "lpw_mp"),
])
def test_usage_names_the_program_as_it_was_invoked(how, prog):
    """Usage lines follow how lpw_mp was started: as a module or as the installed script,
    for the top level and for a subcommand."""
    for words, usage in (([], f"usage: {prog} "), (["sweep"], f"usage: {prog} sweep ")):
        proc = subprocess.run([*how, *words, "--help"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(usage), proc.stdout
