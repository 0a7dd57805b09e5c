"""Runs every strategy of a configuration on the same workload and gathers one result."""

import datetime
import signal
import sys
import time

from lpw_mp import __version__
from lpw_mp.harness.emulator import Emulator, EmulatorError
from lpw_mp.harness.hostinfo import host_metadata
from lpw_mp.harness.plugins import spec_of, strategy_class
from lpw_mp.harness.progress import OPERATION, STARTING, STOPPING, WALKER_PHASE, Progress
from lpw_mp.harness.signals import Interrupted, deferred_signals, interruptible
from lpw_mp.harness.tracing import LegTrace
from lpw_mp.harness.walkers import measure_walkers
from lpw_mp.kernel.coordinator import P_DONE, P_TOTAL
from lpw_mp.kernel.cpu import hist_bucket
from lpw_mp.kernel.machine import HIST_BUCKETS, HIST_STEPS
from lpw_mp.results.formats import RESULT
from lpw_mp.results.repeats import combine, sample_of
from lpw_mp.results.stats import log_histogram, summarize


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def leg_result(cfg, spec: str, outcome: dict, violations: dict) -> dict:
    """Turn a coordinator outcome and walker counters into one row of the result."""
    cls = strategy_class(spec)
    st = outcome["stats"]
    walkers = st["walkers"]
    nops = sum(st["ops"].values())
    walks = walkers["walks"]
    wall = st["wall_s"]
    return {
        **_identity(spec),
        "status": "ok",
        "op": cfg.op,
        "ops": st["ops"],
        "thps": cfg.npmds,
        "operations": nops,
        "wall_s": wall,
        "per_op_s": wall / nops if nops else None,
        "serialisations": st["serialisations"],
        "skipped": st["skipped"],
        "ipis_sent": st["ipis_sent"],
        "ipi_round_s": summarize(st["rounds"]),
        "grace_periods": st["grace_periods"],
        "grace_period_s": summarize(st["gp_latencies"]),
        "walker": cfg.walker or cls.walker,
        "frees_deferred": st["frees_deferred"],
        "call_rcu_batches": st["call_rcu_batches"],
        "deferred_free_s": st["deferred_free_s"],
        "batch_failures": st["batch_failures"],
        "sync_ipis": st["sync_ipis"],
        "pool_exhausted": st["pool_exhausted"],
        "walks": walks,
        "walks_per_s": walks / wall if wall else None,
        "walks_held": walkers["held"],
        "retries": walkers["retries"],
        "ipis_handled": walkers["ipis_handled"],
        "walk_lateness_s": walkers["late_ns"] / walks / 1e9 if walks else None,
        # Kept by strategies that skip the IPI when idle, for the overlap model.
        "walks_in_rounds": st.get("walks_in_rounds"),
        "check_gap_histogram": (None if st.get("check_gaps") is None else log_histogram(
            _buckets(st["check_gaps"]), HIST_STEPS)),
        "slowest_rounds": st.get("slowest_rounds"),
        "violations": violations,
    }


def _buckets(seconds: list) -> list:
    """Counts of ``seconds`` in the walker histograms' buckets (``cpu.hist_bucket``, in ns)."""
    counts = [0] * HIST_BUCKETS
    for value in seconds:
        counts[hist_bucket(int(value * 1e9))] += 1
    return counts


def violation_summary(checker) -> dict:
    """The safety checker's count, per kind, and the first 10 records."""
    return {"total": checker.total(), "by_kind": checker.by_kind(),
            "examples": checker.violations()[:10]}


#: The leg's phases as its trace names them.
PHASE_NAMES = {WALKER_PHASE: "walker phase", OPERATION: "operation"}


class Leg:
    """One strategy's leg as the parent sees it: ``run`` it, and if it is cut short (a signal,
    a failure) ``stub`` keeps what was known by then under ``partial``."""

    def __init__(self, cfg, spec: str, progress: Progress, repeat: int = 1):
        self.cfg, self.spec, self.progress, self.repeat = cfg, spec, progress, repeat
        self.emu = None
        #: ``(name, start ns, end ns)`` of the leg's phases, for its trace; the trace
        #: (``tracing.LegTrace``) once the machine is stopped, if the run is traced.
        self.phases = []
        self.trace = None
        self.phase = STARTING
        self.walker_side = None
        self.walks_before = None
        self.op_started = None
        self.cut_at = None

    def run(self) -> dict:
        """A fresh machine, the walker phase, the operation under the strategy, its counts."""
        cfg, progress = self.cfg, self.progress
        self.emu = emu = Emulator(cfg, self.spec, on_cpu_started=progress.cpus_started)
        try:
            with emu:
                try:
                    if cfg.walker_time:
                        self._enter(WALKER_PHASE)
                        self.walker_side = measure_walkers(emu, cfg.walker_time)
                    self._enter(OPERATION)
                    self.walks_before = emu.machine.walker_counters()
                    self.op_started = time.monotonic()
                    emu.start_coordinator()
                    outcome = emu.wait_coordinator(progress.ops)
                    self._enter(STOPPING)
                except BaseException:
                    self.cut_at = time.monotonic()
                    self._close_phase()
                    self.progress.stopping()  # the machine is stopped on the way out
                    raise
                leg = leg_result(cfg, self.spec, outcome, violation_summary(emu.checker))
                leg["walker_side"] = self.walker_side
        finally:
            if emu.machine.trace is not None:
                # Every process has stopped: the records are final. A signal waits for the
                # copy, so that a cut leg's trace, the one that shows why, is kept whole.
                with deferred_signals():
                    self.trace = LegTrace(emu, cfg, emu.strategy_name, self.repeat,
                                          self.phases)
        if self.trace is not None:
            leg["trace"] = self.trace.info
        return leg

    def _close_phase(self) -> int:
        now = time.perf_counter_ns()
        if self.phases and self.phases[-1][2] is None:
            self.phases[-1][2] = now
        return now

    def _enter(self, phase: str) -> None:
        now = self._close_phase()
        if phase != STOPPING:
            self.phases.append([PHASE_NAMES[phase], now, None])
        self.phase = phase
        {WALKER_PHASE: self.progress.walker_phase, OPERATION: self.progress.operation,
         STOPPING: self.progress.stopping}[phase]()

    def stub(self, status: str, error=None) -> dict:
        """The leg's row, ``failed`` or ``interrupted``, with its ``partial`` figures."""
        leg = _leg_stub(self.spec, status, error)
        leg["partial"] = self.partial()
        if self.trace is not None:
            leg["trace"] = self.trace.info
        return leg

    def partial(self) -> dict:
        """What the parent can read of the leg without the coordinator, from shared memory:
        how far the operation got, the IPIs the CPUs were sent, the walks during the
        operation, the violations; and the walker phase if it ended. Read once the machine is
        stopped, so the counts are final."""
        emu = self.emu
        out = {"phase": self.phase, "cpus_started": len(emu.cpus) if emu else 0,
               "operations_done": 0, "operations_total": None, "op_elapsed_s": None,
               "ipis_sent": 0, "ipi_rounds_at_least": 0, "walks": 0, "retries": 0,
               "walker_side": self.walker_side, "violations": None}
        if emu is None:
            return out
        sent = list(emu.machine.ipi_gen)
        out.update(ipis_sent=sum(sent), ipi_rounds_at_least=max(sent, default=0),
                   violations=violation_summary(emu.checker))
        if self.op_started is not None:
            walkers = emu.machine.walker_counters(since=self.walks_before)
            out.update(operations_done=emu.progress[P_DONE],
                       operations_total=emu.progress[P_TOTAL] or None,
                       op_elapsed_s=(self.cut_at or time.monotonic()) - self.op_started,
                       walks=walkers["walks"], retries=walkers["retries"])
        return out


def _identity(spec: str) -> dict:
    """Who a leg is: the class's name, as every table shows it, and for a plugin its spec,
    which a reader needs to run it again (and the tables, to blame it)."""
    cls = strategy_class(spec)
    plugin = {"plugin": spec_of(cls)} if spec_of(cls) else {}
    return {"strategy": cls.name, "safe": cls.safe, "kernel": cls.kernel, **plugin}


def _leg_stub(spec: str, status: str, error=None) -> dict:
    """The row of a leg without figures: ``failed``, ``interrupted`` or ``not run``."""
    leg = {**_identity(spec), "status": status}
    if error is not None:
        leg["error"] = error
    return leg


def leg_not_run(spec: str) -> dict:
    """The row of a strategy that did not run."""
    return _leg_stub(spec, "not run")


def _combined_leg(spec: str, samples: list, asked: int) -> dict:
    """The leg of ``spec`` over its finished ``samples`` (``repeats.combine``)."""
    return {**_leg_stub(spec, "ok"), **combine(samples), "repeats": len(samples),
            "repeats_asked": asked, "samples": samples}


def run(cfg, argv=None, progress=None, traces=None) -> dict:
    """Run every strategy of ``cfg`` ``cfg.repeat`` times, interleaved (ABCABC: round by
    round, each leg on a fresh machine); never raises for a failed leg or an interrupt.

    The result's ``status`` is ``complete``, ``failed`` (a leg failed; later legs were not run)
    or ``interrupted`` (SIGINT/SIGTERM; ``signal`` names it). A strategy with at least one
    finished repeat is an ``ok`` leg over the repeats that finished (``repeats`` of
    ``repeats_asked``); one with none is marked ``failed``, ``interrupted`` (keeping what was
    known of it under ``partial``) or ``not run``. ``progress`` (a ``Progress``) is told every
    phase of every leg. A traced run (``cfg.trace``) appends every leg's trace, a cut one's
    too, to the list ``traces``, to be written with the run folder."""
    progress = progress or Progress()
    result = {
        **RESULT.header(), "lpw_mp_version": __version__,
        "command": list(argv if argv is not None else sys.argv),
        "started": now(), "finished": None, "status": "complete",
        "config": cfg.to_dict(), "host": host_metadata(cfg.cpus, cfg.start_method),
        "legs": [], "errors": [],
    }
    samples = {spec: [] for spec in cfg.strategies}
    current, cut = None, None   # cut: the stub of the leg that did not finish
    try:
        with interruptible():
            index = 0
            for repeat in range(1, cfg.repeat + 1):
                for spec in cfg.strategies:
                    index += 1
                    leg = current = Leg(cfg, spec, progress, repeat)
                    progress.leg(index, strategy_class(spec).name)
                    try:
                        samples[spec].append(sample_of(current.run(), repeat))
                        current = None   # finished: an interrupt now cuts no leg short
                    except (EmulatorError, OSError, MemoryError) as exc:
                        # OSError, MemoryError: the host refused memory or a process; the
                        # legs that finished must still be reported.
                        error = (str(exc) if isinstance(exc, EmulatorError)
                                 else f"{type(exc).__name__}: {exc} under strategy "
                                    f"{strategy_class(spec).name}")
                        if cfg.repeat > 1:
                            error += f" (repeat {repeat} of {cfg.repeat})"
                        result["status"] = "failed"
                        result["errors"].append(error)
                        cut = current.stub("failed", error)
                        raise _Stop from None
                    finally:
                        progress.leg_done()
                        if leg.trace is not None and traces is not None:
                            traces.append(leg.trace)
    except _Stop:
        pass
    except Interrupted as exc:
        result["status"] = "interrupted"
        result["signal"] = signal.Signals(exc.signum).name
        result["errors"].append(f"interrupted by {result['signal']}")
        if current is not None:
            cut = current.stub("interrupted")
    finally:
        progress.close()
    for spec in cfg.strategies:
        name = strategy_class(spec).name
        if samples[spec]:
            leg = _combined_leg(spec, samples[spec], cfg.repeat)
            if cut is not None and cut["strategy"] == name:
                leg["cut"] = cut   # a later repeat of it was cut short
        elif cut is not None and cut["strategy"] == name:
            leg = cut
        else:
            leg = _leg_stub(spec, "not run")
        result["legs"].append(leg)
    result["finished"] = now()
    return result


class _Stop(Exception):
    """A leg failed: no later leg runs."""
