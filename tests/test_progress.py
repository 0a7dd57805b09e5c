"""The run's progress display: one status line on a terminal for the whole run (strategy k of
n, the phase, elapsed time, ETA), nothing elsewhere, no thread, and the runner tells it every
phase of every leg."""

import io
import threading

import pytest

from lpw_mp.harness.progress import Progress, TerminalProgress, terminal_progress
from lpw_mp.harness.runner import run

pytestmark = pytest.mark.timeout(60)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def last_line(stream) -> str:
    """What the terminal shows last: the text after the last carriage return that has any."""
    frames = [f for f in stream.getvalue().split("\r") if f.strip()]
    return frames[-1].strip() if frames else ""


@pytest.fixture
def display(cfg):
    clock = Clock()
    stream = Terminal()
    shown = TerminalProgress(cfg(strategies=["ipi", "count"], cpus=4, walker_time=1.0), stream,
                             clock=clock, width=160)
    yield shown, stream, clock
    shown.close()


def test_the_line_shows_the_strategy_the_phase_and_an_eta(display):
    """Through a whole leg the line says which strategy of how many runs, what it is doing
    (starting the CPUs, walker phase, the operation with its ops done, stopping), the time
    elapsed, and an ETA: unknown at first, then from the operation's rate (10 s for 25 of 100
    ops: 30 s more for this leg, and the same 42 s for the one after it), then from the legs
    done."""
    shown, stream, clock = display
    shown.leg(1, "ipi")
    assert last_line(stream) == "strategy 1 of 2: ipi | starting 4 CPUs | 00:00 elapsed, " \
                                "ETA unknown"
    clock.now = 0.5  # redrawn for a CPU forked at most ten times a second
    shown.cpus_started(2)
    assert "starting 4 CPUs (2 forked)" in last_line(stream)
    clock.now = 1.0
    shown.walker_phase()
    assert "| walker phase: every CPU walks back to back for 1 s |" in last_line(stream)
    assert last_line(stream).endswith("ETA unknown")
    clock.now = 2.0
    shown.operation()
    clock.now = 12.0
    shown.ops(25, 100)
    assert last_line(stream) == ("strategy 1 of 2: ipi | munmap 25 of 100 ops [##--------] 25% "
                                 "| 00:12 elapsed, ETA 01:12")
    clock.now = 42.0
    shown.ops(100, 100)
    shown.stopping()
    assert "| stopping 4 CPUs | 00:42 elapsed, ETA 00:42" in last_line(stream)
    clock.now = 44.0
    shown.leg_done()
    shown.leg(2, "count")
    assert last_line(stream) == "strategy 2 of 2: count | starting 4 CPUs | 00:44 elapsed, " \
                                "ETA 00:44"


def test_with_repeats_the_line_counts_legs_and_the_eta_knows_each_strategy(cfg):
    """--repeat 2 of ipi and count: the line counts legs (k of 4) and names the repeat; once
    the first round is done, the ETA adds up each strategy's own last leg (ipi 40 s, count
    4 s: 44 s for the second round), not the average of both."""
    clock, stream = Clock(), Terminal()
    shown = TerminalProgress(cfg(strategies=["ipi", "count"], cpus=4, walker_time=1.0,
                                 repeat=2), stream, clock=clock, width=160)
    try:
        for index, name, took in ((1, "ipi", 40.0), (2, "count", 4.0)):
            shown.leg(index, name)
            clock.now += took
            shown.leg_done()
        assert shown.eta() == 44.0
        shown.leg(3, "ipi")
        assert last_line(stream).startswith("leg 3 of 4 (repeat 2 of 2): ipi | starting 4 CPUs")
        assert last_line(stream).endswith("ETA 00:44")
    finally:
        shown.close()


def test_a_narrow_terminal_gets_a_line_that_fits(cfg):
    """On a 60-column terminal the line drops the bar and is cut short of the last column, so
    that it never wraps (a wrapped line could not be redrawn in place)."""
    shown = TerminalProgress(cfg(), Terminal(), width=60)
    shown.leg(1, "ipi")
    shown.operation()
    shown.ops(3, 10)
    line = shown.line()
    assert len(line) == 59
    assert line.startswith("strategy 1 of 1: ipi | munmap 3 of 10 ops |")
    shown.close()


def test_nothing_is_printed_when_not_on_a_terminal(cfg):
    """When stderr is not a terminal the display is silent, whatever the runner tells it."""
    stream = io.StringIO()
    shown = terminal_progress(cfg(), stream)
    assert not isinstance(shown, TerminalProgress)
    for call in (lambda: shown.leg(1, "ipi"), lambda: shown.cpus_started(1),
                 shown.walker_phase, shown.operation, lambda: shown.ops(1, 2), shown.stopping,
                 shown.leg_done, shown.close):
        call()
    assert stream.getvalue() == ""


def test_the_display_starts_no_thread(cfg):
    """On a terminal the display starts no thread (no tqdm monitor), so a later leg can
    fork its CPUs."""
    shown = terminal_progress(cfg(), Terminal())
    assert isinstance(shown, TerminalProgress)
    shown.leg(1, "ipi")
    shown.operation()
    shown.ops(1, 10)
    try:
        assert threading.active_count() == 1
    finally:
        shown.close()


class Recorder(Progress):
    """Every call the runner makes, in order."""

    def __init__(self):
        self.calls = []

    def leg(self, index, name):
        self.calls.append(("leg", index, name))

    def cpus_started(self, count):
        self.calls.append(("cpus_started", count))

    def walker_phase(self):
        self.calls.append(("walker_phase",))

    def operation(self):
        self.calls.append(("operation",))

    def ops(self, done, total):
        self.calls.append(("ops", done, total))

    def stopping(self):
        self.calls.append(("stopping",))

    def leg_done(self):
        self.calls.append(("leg_done",))

    def close(self):
        self.calls.append(("close",))


def test_the_runner_tells_the_display_every_phase_of_every_leg(cfg):
    """A real run of two strategies: for each leg, in order, its start, every CPU forked, the
    walker phase, the operation and its progress up to every op done, the stop and its end;
    then the display is closed."""
    recorder = Recorder()
    result = run(cfg(strategies=["ipi", "v5.8"], cpus=3, walker_time=0.1), progress=recorder)
    assert result["status"] == "complete"
    calls = [c for c in recorder.calls if c[0] != "ops"]
    leg = [("cpus_started", 1), ("cpus_started", 2), ("cpus_started", 3), ("walker_phase",),
           ("operation",), ("stopping",), ("leg_done",)]
    assert calls == [("leg", 1, "ipi"), *leg, ("leg", 2, "v5.8"), *leg, ("close",)]
    ops = [c for c in recorder.calls if c[0] == "ops"]
    assert ops and ops[-1] == ("ops", 16, 16)


def test_a_real_run_draws_its_line_on_a_terminal(cfg):
    """Given a terminal, a real run draws the line for each strategy in turn and takes it away
    at the end."""
    stream = Terminal()
    config = cfg(strategies=["ipi", "v5.8"], cpus=2, walker_time=0.1)
    result = run(config, progress=TerminalProgress(config, stream, width=120))
    assert result["status"] == "complete"
    text = stream.getvalue()
    for part in ("strategy 1 of 2: ipi | starting 2 CPUs", "strategy 2 of 2: v5.8 | walker phase",
                 "munmap 16 of 16 ops", "stopping 2 CPUs", "elapsed, ETA"):
        assert part in text
    assert text.endswith("\r")  # the line was cleared
