"""Tracing (``run --trace``): the ring buffers, the trace files they become, their windows, and
what a trace says of a deterministic race (a walker paused in its window during an IPI round)."""

import json
import os
import pathlib

import pytest

from helpers import acquire, wait_for_phase, wait_until
from lpw_mp.commands import cli
from lpw_mp.harness.emulator import Emulator
from lpw_mp.harness.tracing import LegTrace
from lpw_mp.kernel import trace as tr
from lpw_mp.kernel.coordinator import PHASE_SERIALIZING
from lpw_mp.kernel.hooks import WalkHook
from lpw_mp.results import traces

pytestmark = pytest.mark.timeout(90)


def slices(doc, pid, cat=None, name=None):
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == pid
            and (cat is None or e["cat"] == cat) and (name is None or e["name"] == name)]


def names(doc):
    return {name: pid for pid, name in traces.processes(doc).items()}


# -- the ring buffer --------------------------------------------------------------------------

def test_a_full_buffer_overwrites_its_oldest_records_and_counts_them():
    """In overwrite mode (ftrace's default) a track given more records than it holds keeps
    the newest, oldest first, and says how many it was given in all."""
    buffers = tr.TraceBuffers(ncpus=2, cpu_records=4)
    writer = buffers.writer(1)
    for n in range(10):
        writer.emit(tr.WALK, 1000 + n, 5, n)
    raw, written = buffers.records(1)
    assert written == 10
    assert [r[3] for r in tr.iter_records(raw)] == [6, 7, 8, 9]
    assert buffers.records(0) == (b"", 0)


def test_a_buffer_that_keeps_the_first_records_drops_the_newest():
    """For a trace of a leg's first seconds the buffer keeps its first records, counts the
    others, and ignores any that begin after ``until``."""
    buffers = tr.TraceBuffers(ncpus=1, cpu_records=3, overwrite=False)
    buffers.until.value = 1005
    writer = buffers.writer(0)
    for n in range(10):
        writer.emit(tr.WALK, 1000 + n, 1, n)
    raw, written = buffers.records(0)
    assert [r[3] for r in tr.iter_records(raw)] == [0, 1, 2]
    assert written == 6  # the 6 that began by 1005; the 3 past the buffer are lost


@pytest.mark.parametrize("in_window, last, before, why", [
    (True, 10_000_000, 0, tr.WHY_IRQ_OFF),          # sent inside its window: that first
    (False, 1_000 + tr.PREEMPTED_NS + 1, 1_000, tr.WHY_NOT_RUNNING),
    (False, 1_000 + tr.PREEMPTED_NS, 1_000, tr.WHY_QUEUE),
    (False, 5_000, 4_990, tr.WHY_QUEUE),
])
def test_why_the_last_answer_of_a_round_came_last(in_window, last, before, why):
    """The round's last answer is blamed on an IRQ-off window if the round was sent during
    one; else on the host if it came more than PREEMPTED_NS after the answer before it (the
    others were done, the host did not run it); else it was just the last in the queue."""
    assert tr.round_why(in_window, last, before) == why


# -- a deterministic race, traced ----------------------------------------------------------------

def test_a_walker_paused_in_its_window_is_the_rounds_slowest_responder(cfg, ctx, tmp_path):
    """A walker paused inside its IRQ-off window while the coordinator broadcasts holds the
    round open: the trace shows its window as a slice that begins before the round and ends
    after every other target has answered, its handler right after it, inside the round,
    and the round (and the run's slowest-rounds list) names it as the CPU that answered last,
    from inside an IRQ-off window. Processes are named in the trace as ps named them."""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=0.0, trace=True)
    hook = WalkHook(ctx, cpu=1, slot=2)
    with Emulator(c, "ipi", hooks=[hook], ctx=ctx) as emu:
        m = emu.machine
        comms = {pid: pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
                 for pid, _ in emu.comms.values()}
        acquire(hook.paused, what="walker to pause")
        emu.start_coordinator(slots=[2])
        wait_for_phase(emu, 2, PHASE_SERIALIZING)
        wait_until(lambda: m.ipi_gen[0] == m.ack_gen[0] == 1 and m.ipi_gen[2] == m.ack_gen[2]
                   == 1 and m.ipi_gen[1] == 1, what="CPUs 0 and 2 to answer")
        comms[emu.coord.pid] = pathlib.Path(f"/proc/{emu.coord.pid}/comm").read_text().strip()
        hook.resume.release()
        out = emu.wait_coordinator()
    slowest = out["stats"]["slowest_rounds"]
    assert [(r["round"], r["cpu"], r["why"], r["targets"]) for r in slowest] == \
        [(1, 1, "irq-off", 3)]
    path = tmp_path / "trace.json"
    LegTrace(emu, c, "ipi", 1, []).write(str(path))
    doc = traces.load(str(path))
    assert traces.validate(doc) == []
    by_name = names(doc)
    assert {pid: name for name, pid in by_name.items() if pid in comms} == comms
    assert {"ipi:cpu0", "ipi:cpu1", "ipi:cpu2", "ipi:coord"} <= set(by_name)
    (round_,) = slices(doc, by_name["ipi:coord"], "ipi", "smp_call_function_many")
    assert round_["args"]["slowest_cpu"] == 1 and round_["args"]["why"] == "irq-off"
    assert round_["args"]["answered_by"] == "0-2"
    (window,) = [w for w in slices(doc, by_name["ipi:cpu1"], "walk") if w["args"]["slot"] == 2]
    round_end, window_end = round_["ts"] + round_["dur"], window["ts"] + window["dur"]
    assert window["ts"] < round_["ts"] < window_end <= round_end
    for other in ("ipi:cpu0", "ipi:cpu2"):
        (handler,) = slices(doc, by_name[other], "ipi")
        assert handler["ts"] + handler["dur"] < window_end
    (handler,) = slices(doc, by_name["ipi:cpu1"], "ipi")
    assert window_end <= handler["ts"] <= round_end and handler["args"]["sent_in_window"]
    (op,) = slices(doc, by_name["ipi:coord"], "op", "munmap")
    assert op["ts"] <= round_["ts"] and round_end <= op["ts"] + op["dur"]
    steps = [s["name"] for s in slices(doc, by_name["ipi:coord"], "step")]
    assert steps == ["unlink", "zap_huge_pmd", "destroy"]


# -- runs ---------------------------------------------------------------------------------------

def run_cli(tmp_path, *args):
    runs = tmp_path / "runs"
    code = cli.main(["--cpus", "4", "--memory", "16M", "--walker-time", "0.2",
                     "--runs-dir", str(runs), "-q", *args])
    folders = sorted(runs.iterdir()) if runs.exists() else []
    return code, folders


def test_a_traced_run_writes_a_valid_trace_per_leg(tmp_path, capsys):
    """``--trace`` writes trace-STRATEGY.json per leg beside result.json: each valid (slices
    closed and nested, times in order per track, every track named once), with a track per
    CPU named as ps names it, the coordinator's operations, their steps and IPI rounds, and
    the parent's phases; the result says what each trace holds."""
    code, (folder,) = run_cli(tmp_path, "--strategy", "ipi,none", "--trace",
                              "--walk-rate", "200")
    assert code == 0
    result = json.loads((folder / "result.json").read_text())
    for leg in result["legs"]:
        (info,) = leg["traces"]
        assert info["file"] == f"trace-{leg['strategy']}.json" and info["dropped"] == 0
        doc = traces.load(str(folder / info["file"]))
        assert info["events"] == sum(e["ph"] != "M" for e in doc["traceEvents"])
        by_name = names(doc)
        name = leg["strategy"]
        assert {f"{name}:cpu{n}" for n in range(4)} | {f"{name}:coord"} <= set(by_name)
        cats = {e["cat"] for e in doc["traceEvents"] if e["ph"] != "M"}
        assert {"walk", "op", "step", "phase"} <= cats
        phases = [e["name"] for e in doc["traceEvents"] if e.get("cat") == "phase"]
        assert phases == ["walker phase", "operation"]
    ipi = traces.load(str(folder / "trace-ipi.json"))
    rounds = slices(ipi, names(ipi)["ipi:coord"], "ipi")
    assert len(rounds) == result["legs"][0]["serialisations"]
    assert all(r["args"]["targets"] == 4 and r["args"]["answered_by"] == "0-3"
               and r["args"]["why"] in traces.WHY for r in rounds)


def test_an_untraced_run_writes_no_trace_yet_names_its_slowest_rounds(tmp_path):
    """Without ``--trace`` nothing of tracing is written, but the result and the report still
    name the slowest IPI rounds and the CPU that answered each last (why needs a trace)."""
    code, (folder,) = run_cli(tmp_path, "--strategy", "ipi")
    assert code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["report.md", "result.json"]
    (leg,) = json.loads((folder / "result.json").read_text())["legs"]
    assert "traces" not in leg
    rounds = leg["slowest_rounds"]
    assert 1 <= len(rounds) <= 5
    assert [r["took_s"] for r in rounds] == sorted((r["took_s"] for r in rounds), reverse=True)
    assert all(0 <= r["cpu"] < 4 and r["why"] is None for r in rounds)
    report = (folder / "report.md").read_text()
    assert "Slowest IPI rounds" in report and f"round {rounds[0]['round']}" in report


def test_a_small_buffer_loses_the_oldest_records_and_says_so(tmp_path):
    """With a buffer of 64 records per CPU the trace keeps each track's newest records: the
    result and the trace count what was lost per track, and no kept walk of a CPU is older
    than one that was lost would be (the walker phase's, long before the operation)."""
    code, (folder,) = run_cli(tmp_path, "--strategy", "ipi", "--trace", "--trace-buffer",
                              "3K", "--walk-rate", "500")
    assert code == 0
    (leg,) = json.loads((folder / "result.json").read_text())["legs"]
    (info,) = leg["traces"]
    assert info["dropped"] > 0 and info["dropped"] == sum(info["dropped_by_track"].values())
    assert all(name.startswith("ipi:") for name in info["dropped_by_track"])
    doc = traces.load(str(folder / info["file"]))
    assert doc["otherData"]["dropped"] == info["dropped"]
    by_name = names(doc)
    for cpu in range(4):
        events = [e for e in doc["traceEvents"] if e["ph"] != "M"
                  and e["pid"] == by_name[f"ipi:cpu{cpu}"]]
        assert len(events) <= 64


def test_a_trace_of_the_slowest_rounds_keeps_only_what_ran_around_them(tmp_path):
    """``--trace-window slowest:2`` keeps the two slowest rounds and what overlaps them
    (with a margin), and nothing of the walker phase."""
    code, (folder,) = run_cli(tmp_path, "--strategy", "ipi", "--trace", "--trace-window",
                              "slowest:2", "--walk-rate", "200")
    assert code == 0
    (leg,) = json.loads((folder / "result.json").read_text())["legs"]
    doc = traces.load(str(folder / "trace-ipi.json"))
    kept = {r["args"]["round"]: r for r in slices(doc, names(doc)["ipi:coord"], "ipi")}
    slowest = [kept[r["round"]] for r in leg["slowest_rounds"][:2]]
    spans = [(r["ts"] - max(r["dur"] / 4, 50) - 1, r["ts"] + r["dur"] * 1.25 + 51)
             for r in slowest]
    for e in doc["traceEvents"]:
        if e["ph"] == "X" and e["cat"] != "phase":
            assert any(e["ts"] <= hi and e["ts"] + e["dur"] >= lo for lo, hi in spans), e
    assert "walker phase" not in {e["name"] for e in doc["traceEvents"]}


def test_a_trace_of_the_last_seconds_keeps_nothing_older(tmp_path):
    """``--trace-window last:50ms`` keeps only events that end in the last 50 ms of the
    leg's records."""
    code, (folder,) = run_cli(tmp_path, "--strategy", "ipi", "--trace", "--trace-window",
                              "last:50ms", "--walk-rate", "200")
    assert code == 0
    doc = traces.load(str(folder / "trace-ipi.json"))
    events = [e for e in doc["traceEvents"] if e["ph"] != "M"]
    end = max(e["ts"] + e.get("dur", 0) for e in events)
    assert events and all(e["ts"] + e.get("dur", 0) >= end - 50_000 - 1 for e in events)


@pytest.mark.parametrize("args, message", [
    (["--trace-window", "last:1s"], "only apply with --trace"),
    (["--trace-buffer", "2M"], "only apply with --trace"),
    (["--trace", "--trace-window", "middle"], "is not one of all, first:DURATION"),
    (["--trace", "--trace-window", "slowest:0"], "is not one of"),
    (["--trace", "--trace-window", "first:-1s"], "--trace-window first:-1s"),
    (["--trace", "--trace-buffer", "1K"], "--trace-buffer 1K is out of range"),
])
def test_bad_trace_options_are_one_line_and_start_nothing(tmp_path, capsys, args, message):
    """A bad trace option is refused in one line with status 2, before anything runs or is
    written."""
    code, folders = run_cli(tmp_path, *args)
    err = capsys.readouterr().err
    assert code == 2 and folders == []
    assert err.count("\n") == 1 and err.startswith("lpw_mp: error:") and message in err


def test_a_trace_is_refused_when_its_buffers_do_not_fit(monkeypatch):
    """The preflight counts the trace buffers (and the parent's copies): a run that fits
    without them but not with them is refused in one line that names --trace-buffer."""
    from lpw_mp.harness import resources
    from lpw_mp.harness.config import Config
    cfg = Config(cpus=512, trace=True, trace_buffer=64 << 20).validate()
    need = resources.memory_needed(cfg)
    assert need - resources.trace_bytes(cfg) < 16 << 30 < need
    found = resources.problems(cfg, resources.Host(memory_free=16 << 30))
    assert len(found) == 1 and "lower --trace-buffer" in found[0]


def test_the_validator_catches_broken_traces():
    """``traces.validate`` reports a slice that ends outside the one it began in, times out
    of order on a track, a track with events but no name, and two processes of one name."""
    doc = traces.TraceDocument(0, source="run")
    doc.process(1, "ipi:cpu0", 1)
    doc.process(2, "ipi:cpu0", 2)
    good = doc.document()
    good["traceEvents"] += [
        {"ph": "X", "pid": 1, "tid": 1, "name": "a", "cat": "walk", "ts": 0, "dur": 10},
        {"ph": "X", "pid": 1, "tid": 1, "name": "b", "cat": "ipi", "ts": 5, "dur": 10},
        {"ph": "X", "pid": 1, "tid": 1, "name": "c", "cat": "ipi", "ts": 2, "dur": 1},
        {"ph": "i", "s": "t", "pid": 3, "tid": 3, "name": "d", "cat": "violation", "ts": 1}]
    problems = "\n".join(traces.validate(good))
    assert "after the slice it began in ends" in problems
    assert "before the previous event" in problems
    assert "pid 3 tid 3 has events but no process name" in problems
    assert "both named 'ipi:cpu0'" in problems
    with pytest.raises(traces.TraceError, match="not a trace"):
        path = pathlib.Path(os.devnull)
        traces.load(str(path))


@pytest.mark.parametrize("record", [
    (10_000_123_456, 20_001, tr.WALK, 7, tr.F_HELD | tr.F_RETRIED, 2),
    (10_000_000_999, 0, tr.WALK, 0, 0, 0),
    (9_999_999_000, 1_500, tr.IPI, 12, 1, -250),
    (10_000_000_001, 999_999_999, tr.IDLE, 0, 0, 0),
])
def test_a_cpus_events_written_as_text_are_the_events_the_layout_gives(record):
    """A CPU's walks, handlers and idle periods are written as JSON text for speed: the text
    loads back as the event ``TraceDocument.slice_event`` makes, to the nanosecond (negative
    times, before the origin, included)."""
    doc = traces.TraceDocument(10_000_000_000)
    event = json.loads(LegTrace._cpu_event(doc, 42, 42, 3, record))
    start, dur, kind, a, b, c = record
    name = {tr.WALK: "walk", tr.IPI: "ipi_handler", tr.IDLE: "idle"}[kind]
    expected = doc.slice_event(42, 42, name, event["cat"], start, dur, event["args"])
    assert event == expected
    if kind == tr.WALK:
        assert event["args"] == {"slot": a, "walker": tr.WALKER_CODES[c],
                                 "held": bool(b & tr.F_HELD), "retried": bool(b & tr.F_RETRIED)}
    elif kind == tr.IPI:
        assert event["args"] == {"round": a, "sent_in_window": True, "delay_us": c / 1000}


def test_each_repeat_of_a_leg_has_its_trace(tmp_path):
    """With ``--repeat 2`` every leg's repeats are traced apart, trace-STRATEGY-N.json, and
    the leg lists both; each sample says which is its own."""
    code, (folder,) = run_cli(tmp_path, "--strategy", "ipi", "--trace", "--repeat", "2",
                              "--walker-time", "0")
    assert code == 0
    (leg,) = json.loads((folder / "result.json").read_text())["legs"]
    assert [t["file"] for t in leg["traces"]] == ["trace-ipi-1.json", "trace-ipi-2.json"]
    assert [s["trace"]["file"] for s in leg["samples"]] == ["trace-ipi-1.json",
                                                            "trace-ipi-2.json"]
    for n in (1, 2):
        assert traces.load(str(folder / f"trace-ipi-{n}.json"))["otherData"]["repeat"] == n


FAILS_LATE = '''
from lpw_mp.kernel.strategies.ipi import IPIStrategy


class FailsLate(IPIStrategy):
    """ipi, whose fourth zap_huge_pmd raises: the leg fails in the middle of munmap."""
    name = "failslate"
    zaps = 0

    def zap_huge_pmd(self, up):
        self.zaps += 1
        if self.zaps == 4:
            raise RuntimeError("lost the IPI")
        super().zap_huge_pmd(up)
'''


def test_a_failed_legs_trace_is_kept_up_to_its_failure(tmp_path):
    """A leg that fails halfway keeps its trace, the one that shows what happened: the run
    folder has it, the failed leg names it, and it holds the operations done before the
    failure with their IPI rounds."""
    plugin = tmp_path / "fails.py"
    plugin.write_text(FAILS_LATE)
    code, (folder,) = run_cli(tmp_path, "--strategy", f"{plugin}:FailsLate", "--trace",
                              "--pte-fraction", "0", "--walker-time", "0")
    assert code == 1
    result = json.loads((folder / "result.json").read_text())
    (leg,) = result["legs"]
    assert result["status"] == "failed" and leg["status"] == "failed"
    assert leg["trace"]["file"] == "trace-failslate.json"
    doc = traces.load(str(folder / "trace-failslate.json"))
    coord = names(doc)["failslate:coord"]
    assert len(slices(doc, coord, "ipi", "smp_call_function_many")) == 3
    assert len(slices(doc, coord, "op", "munmap")) == 3
