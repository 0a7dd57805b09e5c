"""``lpw_mp check STRATEGY --trace DIR``: each counterexample written as a trace in the layout
of ``results.traces`` (Perfetto opens it), none for a safe strategy, a bad DIR refused before
anything starts; and the conversion itself on a hand-made schedule, to the nanosecond. The
checks run one path under one model without stress (``--stress-ops 0``): under a second."""

import json
import os
import signal

import pytest

from lpw_mp.commands import check as check_command
from lpw_mp.commands.cli import main
from lpw_mp.harness.check_traces import (NAME_MAX, counterexample_trace, process_names,
                                         trace_file_name)
from lpw_mp.harness.checking import Schedule
from lpw_mp.harness.emulator import comm_of
from lpw_mp.harness.signals import Interrupted
from lpw_mp.kernel.hooks import AFTER_PMD_READ, WALK_POINTS
from lpw_mp.results import traces

pytestmark = pytest.mark.timeout(120)

QUICK = ["--path", "zap-leaf", "--memory-model", "sc", "--stress-ops", "0"]


def check_json(capsys, *argv) -> tuple:
    """``(exit status, report)`` of ``check ... --json``."""
    status = main(["check", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def events(document, pid, ph=None, cat=None) -> list:
    """The events on the main track of ``pid``, of phase ``ph`` and category ``cat``."""
    return [e for e in document["traceEvents"] if e["pid"] == pid and e["tid"] == pid
            and e["ph"] != "M" and ph in (None, e["ph"]) and cat in (None, e["cat"])]


def inside(t, window) -> bool:
    return window["ts"] <= t <= window["ts"] + window["dur"]


# -- the command ---------------------------------------------------------------------------------

def test_the_unsafe_control_writes_one_valid_trace_per_counterexample(tmp_path, capsys):
    """check none --trace DIR: one file per counterexample, named <strategy>-<path>-<model>,
    that passes traces.validate; its two processes are named as ps showed them (none:coord,
    none:cpuN) with their real, distinct pids; the walker's IRQ-off window is a walk slice
    holding the violation point, and the coordinator's destructive step begins inside it.
    The JSON report names each file and times each step."""
    folder = tmp_path / "traces" / "new"  # made, as it is missing
    status, report = check_json(capsys, "none", *QUICK, "--trace", str(folder))
    assert status == 1 and report["counterexamples"]
    assert report["trace_dir"] == str(folder)
    names = sorted(os.listdir(folder))
    assert names == sorted(f"none-{c['path']}-{c['model']}.json"
                           for c in report["counterexamples"])
    for ce in report["counterexamples"]:
        assert ce["trace"] == str(folder / f"none-{ce['path']}-{ce['model']}.json")
        assert all(isinstance(s["t_us"], float) for s in ce["steps"])
        document = traces.load(ce["trace"])
        assert traces.validate(document) == []
        cpu = ce["violations"][0]["cpu"]
        by_name = {name: pid for pid, name in traces.processes(document).items()}
        assert set(by_name) == {"none:coord", f"none:cpu{cpu}"}
        coord, walker = by_name["none:coord"], by_name[f"none:cpu{cpu}"]
        assert all(type(p) is int and p > 0 for p in (coord, walker)) and coord != walker
        other = document["otherData"]
        assert (other["source"], other["strategy"], other["path"], other["model"]) == \
            ("check", "none", ce["path"], ce["model"])
        assert (other["schedule"], other["summary"], other["walker_point"],
                other["coordinator_step"]) == (ce["schedule"], ce["summary"],
                                               ce["walker_point"], ce["coordinator_step"])
        [window] = events(document, walker, "X", "walk")
        [violation] = events(document, walker, "i", "violation")
        assert inside(violation["ts"], window)
        assert {k: violation["args"][k] for k in ("kind", "slot", "generation_taken",
                                                  "generation_seen")} == \
            {k: ce["violations"][0][k] for k in ("kind", "slot", "generation_taken",
                                                 "generation_seen")}
        [destroy] = [e for e in events(document, coord, "X")
                     if "(destructive)" in e["args"]["step"]]
        assert window["ts"] < destroy["ts"] < window["ts"] + window["dur"]


def test_the_text_report_prints_each_counterexamples_trace(tmp_path, capsys):
    """The terminal report gives the trace's path after the counterexample it belongs to."""
    assert main(["check", "none", *QUICK, "--trace", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    path = tmp_path / "none-zap-leaf-sc.json"
    assert f"  trace: {path}" in out and path.exists()
    assert out.index("Counterexample (zap-leaf, sc") < out.index(f"trace: {path}")


def test_a_safe_strategy_writes_no_trace(tmp_path, capsys):
    """ipi has no counterexample: no file is written (DIR is not even made), and the report
    says so."""
    folder = tmp_path / "traces"
    assert main(["check", "ipi", *QUICK, "--trace", str(folder)]) == 0
    assert "no counterexample, no trace written" in capsys.readouterr().out
    assert not folder.exists()


def test_an_interrupted_check_writes_no_trace(tmp_path, capsys, monkeypatch):
    """A check interrupted after a counterexample was found (under sc, before tso) writes
    nothing: exit status 130, and DIR is not made."""
    real = check_command.check_schedules

    def interrupted_under_tso(cfg, cls, model, **kw):
        if model == "tso":
            raise Interrupted(signal.SIGINT)
        return real(cfg, cls, model, **kw)
    monkeypatch.setattr(check_command, "check_schedules", interrupted_under_tso)
    folder = tmp_path / "traces"
    assert main(["check", "none", "--path", "zap-leaf", "--memory-model", "sc,tso",
                 "--stress-ops", "0", "--trace", str(folder)]) == 130
    assert "interrupted (check writes nothing)" in capsys.readouterr().err
    assert not folder.exists()


@pytest.fixture
def nothing_started(monkeypatch):
    """Fail the test if check forks a process or begins its schedules."""
    def refuse(*args, **kwargs):
        raise AssertionError("check started for a bad --trace")
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(check_command, "check_schedules", refuse)


def _a_file(tmp_path):
    (tmp_path / "file").write_text("")
    return tmp_path / "file", "is a file, not a folder"


def _under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "traces", "cannot be made"


def _unwritable(tmp_path, monkeypatch):
    # root may write anywhere: the permission is denied through os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(tmp_path))
    return tmp_path / "traces", f"cannot be made: {tmp_path} is not writable"


@pytest.mark.parametrize("make", [_a_file, _under_a_file, _unwritable])
def test_a_bad_trace_dir_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch,
                                                nothing_started, make):
    """A --trace DIR that cannot become a writable folder (a file, a path through a file, a
    folder this user may not write): one line naming it, exit status 2, nothing started and
    nothing made."""
    args = (tmp_path, monkeypatch) if make is _unwritable else (tmp_path,)
    folder, message = make(*args)
    before = sorted(os.listdir(tmp_path))
    assert main(["check", "none", *QUICK, "--trace", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lpw_mp: error: --trace "), err
    assert message in err
    assert sorted(os.listdir(tmp_path)) == before


# -- the conversion ------------------------------------------------------------------------------

ORIGIN = 5_000_000_000
LONG = ("READ_ONCE(pmd[1]) = THP of slot 1 (generation 5) (stale: memory holds THP of slot 1 "
        "(generation 5))")
#: (ns after the schedule's start, who, text): a walker stopped after its PMD read, the
#: coordinator going on through an IPI round, a call_rcu and the destructive step.
STEPS = [(10_000, "CPU 1", "local_irq_disable(); walk slot 1 (hold)"),
         (12_000, "CPU 1", "READ_ONCE(pmd[1]) = THP of slot 1 (generation 5)"),
         (13_000, "CPU 1", "paused after reading the PMD, before reading the PTE"),
         (20_000, "coordinator", LONG),
         (22_500, "coordinator", "smp_call_function_many(CPUs 0-2, wait=1)"),
         (25_000, "coordinator", "call_rcu"),
         (30_000, "coordinator", "free the THP of slot 1 (destructive)"),
         (40_000, "CPU 1", "resumed"),
         (41_000, "CPU 1", "uses freed memory: PMD slot repurposed (slot 1, generation 5 "
                           "taken, 6 now)"),
         (45_000, "CPU 1", "local_irq_enable()")]
VIOLATION = {"kind": "PMD slot repurposed", "cpu": 1, "slot": 1, "generation_taken": 5,
             "generation_seen": 6}


def schedule(steps=STEPS, ended=50_000, strategy="none") -> Schedule:
    return Schedule(
        "zap-leaf", "sc", cpu=1, slot=1, point=AFTER_PMD_READ, step=0, rep=0, number=13,
        label="READ_ONCE(pmd[1])", violations=[VIOLATION],
        steps=[(who, text) for _, who, text in steps],
        stamps=[ORIGIN + t for t, _, _ in steps], began_ns=ORIGIN, ended_ns=ORIGIN + ended,
        strategy=strategy, processes={"coordinator": (101, comm_of(strategy, "coord")),
                                      "CPU 1": (102, comm_of(strategy, "cpu1"))})


def test_the_conversion_to_the_nanosecond():
    """A hand-made schedule: each coordinator step lasts until its next (the last until the
    schedule ends), an IPI round is ipi and call_rcu rcu, a long text is shortened with the
    full one in args.step; the walker's window runs from local_irq_disable() to
    local_irq_enable() with its pause nested inside, the violation is a point carrying the
    checker's record, its other steps are points; otherData says what it is of."""
    document = counterexample_trace(schedule()).document()
    assert traces.validate(document) == []
    assert traces.processes(document) == {101: "none:coord", 102: "none:cpu1"}
    coord = [(e["ts"], e["dur"], e["cat"], e["args"]["n"]) for e in events(document, 101)]
    assert coord == [(20.0, 2.5, "step", 4), (22.5, 2.5, "ipi", 5), (25.0, 5.0, "rcu", 6),
                     (30.0, 20.0, "step", 7)]
    long = events(document, 101)[0]
    assert len(long["name"]) == NAME_MAX and long["name"].endswith("…")
    assert long["args"]["step"] == LONG
    walker = [(e["ph"], e["ts"], e.get("dur"), e["cat"], e["name"])
              for e in events(document, 102)]
    assert walker == [
        ("X", 10.0, 35.0, "walk", "walk slot 1 (hold)"),
        ("i", 12.0, None, "step", "READ_ONCE(pmd[1]) = THP of slot 1 (generation 5)"),
        ("X", 13.0, 27.0, "step", "paused after reading the PMD, before reading the PTE"),
        ("i", 41.0, None, "violation", "uses freed memory: PMD slot repurposed")]
    window, violation = events(document, 102)[0], events(document, 102)[-1]
    assert window["args"]["slot"] == 1 and window["args"]["point"] == WALK_POINTS[AFTER_PMD_READ]
    assert violation["args"]["kind"] == "PMD slot repurposed"
    assert (violation["args"]["slot"], violation["args"]["generation_taken"],
            violation["args"]["generation_seen"]) == (1, 5, 6)
    other = document["otherData"]
    assert other["origin_ns"] == ORIGIN and other["source"] == "check"
    assert (other["strategy"], other["path"], other["model"], other["schedule"]) == \
        ("none", "zap-leaf", "sc", 13)
    assert other["summary"] == schedule().describe()
    assert other["walker_point"] == WALK_POINTS[AFTER_PMD_READ]
    assert other["coordinator_step"] == 1


def test_back_to_back_slices_never_read_as_overlapping():
    """Microseconds added in floating point can come out past the next slice's start
    (187.935 + 4.699 = 192.63400000000001): such a slice is cut by 1 ns, so the trace stays
    valid and no slice is off by more."""
    steps = [(10_000, "CPU 1", "local_irq_disable(); walk slot 1 (hold)"),
             (187_935, "coordinator", "WRITE_ONCE(pmd[1], none)"),
             (192_634, "coordinator", "free the THP of slot 1 (destructive)"),
             (195_635, "coordinator", "WRITE_ONCE(pmd[1], THP of slot 1 (generation 6))"),
             (300_000, "CPU 1", "local_irq_enable()")]
    document = counterexample_trace(schedule(steps, ended=200_000)).document()
    assert traces.validate(document) == []
    coord = events(document, 101)
    for a, b in zip(coord, coord[1:]):
        assert 0 <= b["ts"] - (a["ts"] + a["dur"]) <= 0.001 + 1e-9


def test_process_and_file_names_of_a_long_plugin_name():
    """The trace names the processes as the schedule recorded them (as ps showed them), and
    a long strategy name keeps them apart (the emulator cuts the strategy, not the role).
    The file name keeps only characters safe in a file name."""
    long = schedule(strategy="my plugin/v2.long-name")
    assert process_names(long) == {"coordinator": "my plugin:coord", "CPU 1": "my plugin/:cpu1"}
    assert traces.validate(counterexample_trace(long).document()) == []
    assert trace_file_name(long) == "my_plugin_v2.long-name-zap-leaf-sc.json"
    assert trace_file_name(schedule(strategy="../x")) == "_x-zap-leaf-sc.json"
