"""What a person sees on a terminal while a run goes on: one status line for the whole run.

The runner tells a ``Progress`` about every phase of every leg (``runner.run``): the CPUs
starting, the walker phase, the operation with its operations done, the CPUs stopping. On a
terminal, ``TerminalProgress`` shows it on one line of stderr::

    strategy 2 of 5: count | munmap 1,234 of 4,096 ops [███░░░░░░░] 30% | 00:42 elapsed, ETA 01:05

It starts no thread (the emulator refuses to fork from a multi-threaded process), so the line
changes only when the runner calls it: at every phase change, for every CPU forked, and about
four times a second during the operation. It is drawn through tqdm, so that it stacks under the
sweep's own bar.
"""

import os
import sys
import time

from tqdm import tqdm

from lpw_mp.harness.plugins import strategy_class
from lpw_mp.units import format_duration

# tqdm's monitor is a thread that outlives the bar; a CPU forked while it holds a lock (its
# own, or stdio's) could hang on first use of it. The emulator forks only from a
# single-threaded parent, so no bar may start one.
tqdm.monitor_interval = 0

#: Phases of a leg, in order, as ``Progress.phase`` names them.
STARTING, WALKER_PHASE, OPERATION, STOPPING = "starting", "walker phase", "operation", "stopping"
#: Redraws for CPUs forked or operations done come at most this often (phase changes always).
REDRAW_EVERY = 0.1
#: Cells of the bar drawn during the operation.
BAR_CELLS = 10


class Progress:
    """What the runner says about a run while it goes on. This one shows nothing (not on a
    terminal, ``--quiet``, ``--json``); ``TerminalProgress`` draws it."""

    def leg(self, index: int, name: str) -> None:
        """Leg ``index`` (from 1) of the run, strategy ``name``, begins: its CPUs start."""

    def cpus_started(self, count: int) -> None:
        """``count`` CPUs of the leg have been forked."""

    def walker_phase(self) -> None:
        """Every CPU walks back to back for ``--walker-time``."""

    def operation(self) -> None:
        """The coordinator starts the operation."""

    def ops(self, done: int, total: int) -> None:
        """``done`` of ``total`` operations are done (``Emulator.wait_coordinator``'s
        ``on_progress``)."""

    def stopping(self) -> None:
        """The leg's processes are being stopped."""

    def leg_done(self) -> None:
        """The leg ended, whatever its outcome."""

    def close(self) -> None:
        """The run ended: take the line away."""


class TerminalProgress(Progress):
    """One status line on ``stream``: the strategy (k of n), the phase, elapsed time, ETA.

    The ETA adds up what is left of the leg under way (from its operations per second once
    some are done, else from the legs done so far) and the legs not started, each taken to
    last as long as the same strategy's last leg did (with ``--repeat``, from the second
    round on), else as long as the legs done so far did on average (or as the one under way
    will, while none is done). Until one of those is known it says ``ETA unknown``."""

    def __init__(self, cfg, stream, clock=time.monotonic, width=None):
        self.stream = stream
        self.clock = clock
        self.width = width
        # By name, as the runner tells each leg (a plugin's spec is not what a user reads).
        self.strategies = [strategy_class(spec).name for spec in cfg.strategies]
        self.repeat = getattr(cfg, "repeat", 1)
        #: Every leg of the run in order: the strategies once per repeat (runner.run).
        self.legs = self.strategies * self.repeat
        self.by_name = {}            # strategy -> duration of its last finished leg
        self.cpus, self.op, self.walker_time = cfg.cpus, cfg.op, cfg.walker_time
        self.started = clock()
        self.durations = []          # of the legs done
        self.index, self.name = 0, ""
        self.phase, self.leg_started = None, None
        self.forked = 0
        self.op_started, self.done, self.total = None, 0, 0
        self.drawn_at, self.shown = None, None
        self.bar = None
        self.unicode = "utf" in (getattr(stream, "encoding", None) or "").lower()

    # -- what the runner says --------------------------------------------------------------

    def leg(self, index, name):
        self.index, self.name = index, name
        self.leg_started = self.clock()
        self.forked, self.done, self.total, self.op_started = 0, 0, 0, None
        self._enter(STARTING)

    def cpus_started(self, count):
        self.forked = count
        self._draw(urgent=count == self.cpus)

    def walker_phase(self):
        self._enter(WALKER_PHASE)

    def operation(self):
        self.op_started = self.clock()
        self._enter(OPERATION)

    def ops(self, done, total):
        self.done, self.total = done, total
        self._draw(urgent=bool(total) and done == total)

    def stopping(self):
        self._enter(STOPPING)

    def leg_done(self):
        if self.leg_started is not None:
            self.durations.append(self.clock() - self.leg_started)
            self.by_name[self.name] = self.durations[-1]
        self.leg_started = None

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar, self.shown = None, None

    # -- the line ------------------------------------------------------------------------------

    def _enter(self, phase):
        self.phase = phase
        self._draw(urgent=True)

    def _draw(self, urgent: bool):
        now = self.clock()
        if not urgent and self.drawn_at is not None and now - self.drawn_at < REDRAW_EVERY:
            return
        line = self.line(now)
        if line == self.shown:
            return
        self.drawn_at, self.shown = now, line
        if self.bar is None:
            self.bar = tqdm(total=None, bar_format="{desc}", file=self.stream, leave=False,
                            dynamic_ncols=True, mininterval=0)
        self.bar.set_description_str(line, refresh=True)

    def line(self, now=None) -> str:
        """The status line, cut to the terminal's width (the bar goes first)."""
        now = self.clock() if now is None else now
        width = (self.width or _columns(self.stream)) - 1
        if self.repeat > 1:
            per_round = len(self.strategies)
            strategy = (f"leg {self.index} of {len(self.legs)} (repeat "
                        f"{(self.index - 1) // per_round + 1} of {self.repeat}): {self.name}")
        else:
            strategy = f"strategy {self.index} of {len(self.strategies)}: {self.name}"
        times = f"{_clock(now - self.started)} elapsed, {self._eta_text(now)}"
        parts = [strategy, self._phase_text(with_bar=True), times]
        if len(" | ".join(parts)) > width:
            parts[1] = self._phase_text(with_bar=False)
        return " | ".join(parts)[:width]

    def _phase_text(self, with_bar: bool) -> str:
        if self.phase == STARTING:
            forked = f" ({self.forked:,} forked)" if 0 < self.forked < self.cpus else ""
            return f"starting {self.cpus:,} CPUs{forked}"
        if self.phase == WALKER_PHASE:
            return (f"walker phase: every CPU walks back to back for "
                    f"{format_duration(self.walker_time)}")
        if self.phase == STOPPING:
            return f"stopping {self.cpus:,} CPUs"
        if not self.total:
            return f"{self.op} starting"
        text = f"{self.op} {self.done:,} of {self.total:,} ops"
        if with_bar:
            full = BAR_CELLS * self.done // self.total
            on, off = ("\u2588", "\u2591") if self.unicode else ("#", "-")
            text += f" [{on * full}{off * (BAR_CELLS - full)}] {self.done / self.total:.0%}"
        return text

    def _eta_text(self, now) -> str:
        left = self.eta(now)
        return "ETA unknown" if left is None else f"ETA {_clock(left)}"

    def eta(self, now=None):
        """Seconds left in the whole run, or None while there is nothing to estimate it from."""
        now = self.clock() if now is None else now
        average = sum(self.durations) / len(self.durations) if self.durations else None
        later = self._later(average)
        if self.leg_started is None:  # between legs: the one just done is counted already
            return None if average is None else later
        in_leg = now - self.leg_started
        if self.op_started is not None and self.done and self.total:
            op_time = now - self.op_started
            this_leg = in_leg + op_time * (self.total - self.done) / self.done
        elif average is not None:
            this_leg = max(self.by_name.get(self.name, average), in_leg)
        else:
            return None
        if average is None:
            later = (len(self.legs) - self.index) * this_leg
        return (this_leg - in_leg) + later

    def _later(self, average):
        """Seconds for the legs not started: each as long as that strategy's last leg took
        (known from the second repeat on), else as long as the legs done took on average."""
        if average is None:
            return None
        return sum(self.by_name.get(name, average) for name in self.legs[self.index:])


def _clock(seconds: float) -> str:
    return tqdm.format_interval(max(0.0, seconds))


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


def terminal_progress(cfg, stream=None) -> Progress:
    """The run's progress display: a status line when ``stream`` (stderr) is a terminal,
    else one that shows nothing."""
    stream = stream or sys.stderr
    return TerminalProgress(cfg, stream) if stream.isatty() else Progress()
