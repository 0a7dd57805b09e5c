"""Runs every strategy of a configuration on the same workload and gathers one result."""

import datetime
import signal
import sys

from lpw_mp import __version__
from lpw_mp.harness.emulator import Emulator, EmulatorError
from lpw_mp.harness.signals import Interrupted, interruptible
from lpw_mp.harness.hostinfo import host_metadata
from lpw_mp.harness.progress import OPERATION, STARTING, STOPPING, WALKER_PHASE, Progress
from lpw_mp.results.stats import summarize
from lpw_mp.kernel.strategies import STRATEGIES
from lpw_mp.harness.walkers import measure_walkers

FORMAT = "lpw_mp-result"
FORMAT_VERSION = 1


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def leg_result(cfg, name: str, outcome: dict, violations: dict) -> dict:
    """Turn a coordinator outcome and walker counters into one row of the result."""
    cls = STRATEGIES[name]
    st = outcome["stats"]
    walkers = st["walkers"]
    nops = sum(st["ops"].values())
    walks = walkers["walks"]
    wall = st["wall_s"]
    return {
        "strategy": name,
        "safe": cls.safe,
        "kernel": cls.kernel,
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
        "pool_exhausted": st["pool_exhausted"],
        "walks": walks,
        "walks_per_s": walks / wall if wall else None,
        "walks_held": walkers["held"],
        "retries": walkers["retries"],
        "ipis_handled": walkers["ipis_handled"],
        "walk_lateness_s": walkers["late_ns"] / walks / 1e9 if walks else None,
        "violations": violations,
    }


def violation_summary(checker) -> dict:
    """The safety checker's count, per kind, and the first 10 records."""
    return {"total": checker.total(), "by_kind": checker.by_kind(),
            "examples": checker.violations()[:10]}


class _WatchedEmulator(Emulator):
    """A leg's emulator that tells the progress display about every CPU it forks, so that a
    long start-up (hundreds of CPUs on a busy host) shows how far it got."""

    def __init__(self, cfg, name, on_cpu_started):
        self._on_cpu_started = on_cpu_started
        super().__init__(cfg, name)

    def _fork(self, comm, target, *args):
        proc = super()._fork(comm, target, *args)
        if comm.startswith("cpu"):
            self._on_cpu_started(len(self.cpus) + 1)  # recorded in self.cpus on return
        return proc


class Leg:
    """One strategy's leg, telling the progress display each of its phases."""

    def __init__(self, cfg, name: str, progress: Progress):
        self.cfg, self.name, self.progress = cfg, name, progress
        self.phase = STARTING

    def run(self) -> dict:
        """A fresh machine, the walker phase, the operation under the strategy, its counts."""
        cfg, progress = self.cfg, self.progress
        with _WatchedEmulator(cfg, self.name, progress.cpus_started) as emu:
            try:
                walker_side = None
                if cfg.walker_time:
                    self._enter(WALKER_PHASE)
                    walker_side = measure_walkers(emu, cfg.walker_time)
                self._enter(OPERATION)
                emu.start_coordinator()
                outcome = emu.wait_coordinator(progress.ops)
                self._enter(STOPPING)
            except BaseException:
                self.progress.stopping()  # the machine is stopped on the way out
                raise
            leg = leg_result(cfg, self.name, outcome, violation_summary(emu.checker))
            leg["walker_side"] = walker_side
            return leg

    def _enter(self, phase: str) -> None:
        self.phase = phase
        {WALKER_PHASE: self.progress.walker_phase, OPERATION: self.progress.operation,
         STOPPING: self.progress.stopping}[phase]()

    def stub(self, status: str, error=None) -> dict:
        """The leg's row, ``failed`` or ``interrupted``."""
        return _leg_stub(self.name, status, error)


def _leg_stub(name: str, status: str, error=None) -> dict:
    """The row of a leg without figures: ``failed``, ``interrupted`` or ``not run``."""
    leg = {"strategy": name, "safe": STRATEGIES[name].safe, "kernel": STRATEGIES[name].kernel,
           "status": status}
    if error is not None:
        leg["error"] = error
    return leg


def run(cfg, argv=None, progress=None) -> dict:
    """Run every strategy of ``cfg`` in turn; never raises for a failed leg or an interrupt.

    The result's ``status`` is ``complete``, ``failed`` (a leg failed; later legs were not run)
    or ``interrupted`` (SIGINT/SIGTERM; ``signal`` names it). Legs that finished keep their
    figures either way; the leg under way is marked ``failed`` or ``interrupted``.
    ``progress`` (a ``Progress``) is told every phase of every leg."""
    progress = progress or Progress()
    result = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lpw_mp_version": __version__,
        "command": list(argv if argv is not None else sys.argv),
        "started": now(), "finished": None, "status": "complete",
        "config": cfg.to_dict(), "host": host_metadata(cfg.cpus, cfg.start_method),
        "legs": [], "errors": [],
    }

    current = None
    try:
        with interruptible():
            for index, name in enumerate(cfg.strategies, 1):
                current = Leg(cfg, name, progress)
                progress.leg(index, name)
                try:
                    result["legs"].append(current.run())
                except (EmulatorError, OSError, MemoryError) as exc:
                    # OSError, MemoryError: the host refused memory or a process; the legs that
                    # finished must still be reported.
                    error = (str(exc) if isinstance(exc, EmulatorError)
                             else f"{type(exc).__name__}: {exc} under strategy {name}")
                    result["status"] = "failed"
                    result["errors"].append(error)
                    result["legs"].append(current.stub("failed", error))
                    break
                finally:
                    progress.leg_done()
    except Interrupted as exc:
        result["status"] = "interrupted"
        result["signal"] = signal.Signals(exc.signum).name
        result["errors"].append(f"interrupted by {result['signal']}")
    finally:
        progress.close()
    done = {leg["strategy"] for leg in result["legs"]}
    for name in cfg.strategies:
        if name not in done:
            if current is not None and name == current.name and \
                    result["status"] == "interrupted":
                result["legs"].append(current.stub("interrupted"))
            else:
                result["legs"].append(_leg_stub(name, "not run"))
    result["finished"] = now()
    return result
