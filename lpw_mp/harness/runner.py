"""Runs every strategy of a configuration on the same workload and gathers one result."""

import datetime
import signal
import sys

from lpw_mp import __version__
from lpw_mp.harness.emulator import Emulator, EmulatorError
from lpw_mp.harness.signals import Interrupted, interruptible
from lpw_mp.harness.hostinfo import host_metadata
from lpw_mp.results.stats import summarize
from lpw_mp.kernel.strategies import STRATEGIES
from lpw_mp.harness.walkers import measure_walkers
from lpw_mp.results.formats import RESULT



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


def run_strategy(cfg, name: str, on_progress=None) -> dict:
    """One leg: a fresh machine, the operation under ``name``, and its counts."""
    with Emulator(cfg, name) as emu:
        walker_side = measure_walkers(emu, cfg.walker_time) if cfg.walker_time else None
        emu.start_coordinator()
        outcome = emu.wait_coordinator(on_progress)
        checker = emu.checker
        violations = {"total": checker.total(), "by_kind": checker.by_kind(),
                      "examples": checker.violations()[:10]}
        leg = leg_result(cfg, name, outcome, violations)
        leg["walker_side"] = walker_side
        return leg


def _leg_stub(name: str, status: str, error=None) -> dict:
    """The row of a leg without figures: ``failed``, ``interrupted`` or ``not run``."""
    leg = {"strategy": name, "safe": STRATEGIES[name].safe, "kernel": STRATEGIES[name].kernel,
           "status": status}
    if error is not None:
        leg["error"] = error
    return leg


def run(cfg, argv=None, progress_factory=None) -> dict:
    """Run every strategy of ``cfg`` in turn; never raises for a failed leg or an interrupt.

    The result's ``status`` is ``complete``, ``failed`` (a leg failed; later legs were not run)
    or ``interrupted`` (SIGINT/SIGTERM; ``signal`` names it). Legs that finished keep their
    figures either way; the leg under way is marked ``failed`` or ``interrupted``."""
    result = {
        **RESULT.header(), "lpw_mp_version": __version__,
        "command": list(argv if argv is not None else sys.argv),
        "started": now(), "finished": None, "status": "complete",
        "config": cfg.to_dict(), "host": host_metadata(cfg.cpus, cfg.start_method),
        "legs": [], "errors": [],
    }

    started = []
    try:
        with interruptible():
            for name in cfg.strategies:
                started.append(name)
                bar = progress_factory(name) if progress_factory else None
                try:
                    result["legs"].append(run_strategy(cfg, name, bar))
                except (EmulatorError, OSError, MemoryError) as exc:
                    # OSError, MemoryError: the host refused memory or a process; the legs that
                    # finished must still be reported.
                    error = (str(exc) if isinstance(exc, EmulatorError)
                             else f"{type(exc).__name__}: {exc} under strategy {name}")
                    result["status"] = "failed"
                    result["errors"].append(error)
                    result["legs"].append(_leg_stub(name, "failed", error))
                    break
                finally:
                    if bar is not None:
                        bar(None, None)
    except Interrupted as exc:
        result["status"] = "interrupted"
        result["signal"] = signal.Signals(exc.signum).name
        result["errors"].append(f"interrupted by {result['signal']}")
    done = {leg["strategy"] for leg in result["legs"]}
    for name in cfg.strategies:
        if name not in done:
            interrupted = name in started and result["status"] == "interrupted"
            result["legs"].append(_leg_stub(name, "interrupted" if interrupted else "not run"))
    result["finished"] = now()
    return result
