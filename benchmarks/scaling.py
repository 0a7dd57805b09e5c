"""Benchmark: how start-up, the IPI round and memory per CPU scale with the number of CPUs.

For each CPU count N, ``--trials`` times, in this order so that the floor and the emulator see
the same host conditions trial by trial:

1. the C floor's broadcast round at N (``benchmarks/calibrate/ipi_floor.sh``);
2. an emulated machine of N idle CPUs (walk rate 0):
   - **start-up**: from constructing the Emulator to every CPU ready (forks included);
   - **memory per CPU**: the fall of the host's MemAvailable over that start-up, over N, so
     that what the kernel spends per process (page tables, VMAs, file tables) counts; and the
     median USS and PSS of up to 32 of its CPU processes, read once all are up;
   - **IPI round**: a coordinator unmaps WARMUP + ``--rounds`` THPs under ``ipi``, one
     broadcast round each; the median round after the warm-up (and, in the JSON, the leg per
     THP as ``ipi_round.py`` measures it);
3. the same machine with walkers on (``--walk-rate`` per CPU): its start-up only, since
   starting CPUs that already walk is what a busy host finds hard.

MemAvailable does not see the pages the kernel keeps on its per-CPU free lists (150-300 MiB
on the 2-core host of the README, whose lists are tuned on the fly), so a fall below ten times
what they can hold is marked ``?`` (every count up to about 128 CPUs there); USS and PSS,
read per process, do not suffer from this.

The table gives medians over trials; the JSON keeps every trial. The first count the host
cannot run ends the benchmark there, with the one line that says why (the library's
preflight, or the emulator's own error).

Target: 1024 CPUs with walkers start in 20 s or less.

    python benchmarks/scaling.py [--cpus 2 8 32 128 512 1024 2048 4096] [--rounds 200]
                                 [--trials 3] [--walk-rate 20] [--json PATH] [--plot PATH.png]
"""

import contextlib
import sys
import time

from tabulate import tabulate

from lpw_mp.harness.config import Config
from lpw_mp.harness.emulator import Emulator
from lpw_mp.harness.resources import preflight
from lpw_mp.results.plot import INSTALL
from lpw_mp.results.plot import available as plot_available
from lpw_mp.units import format_duration

from _measure import (MEMORY_SAMPLE, WARMUP, available_bytes, document, finish, floor_round_us,
                      hidden_free_bytes, ipi_config, load_average, load_text, measure_counts,
                      median_uss_pss, options, paired_ratios, parse, point_warnings,
                      ratio_text, run_ipi_leg, spread, us_text)

COUNTS = [2, 8, 32, 128, 512, 1024, 2048, 4096]
#: CPUs with walkers -> the most seconds their start-up may take.
START_TARGETS = {1024: 20.0}
#: Per-trial figures whose median and range the table and the figure show.
FIGURES = ("start_idle_s", "start_walkers_s", "round_us", "leg_us_per_thp", "floor_us",
           "mem_per_cpu_bytes", "uss_bytes", "pss_bytes")
#: A start-up's fall of MemAvailable is trusted when it is this many times what the kernel's
#: per-CPU free lists can hide.
TRUSTED_FALL = 10


@contextlib.contextmanager
def started(cfg):
    """A started Emulator of ``cfg``, with the seconds from its construction to every CPU
    ready; shut down on leaving."""
    start = time.perf_counter()
    with Emulator(cfg, "ipi") as emu:
        yield emu, time.perf_counter() - start


def idle_machine(cfg) -> dict:
    """Start-up, memory and IPI round of one machine of idle CPUs."""
    before = available_bytes()
    with started(cfg) as (emu, start_s):
        fall = before - available_bytes()
        uss, pss = median_uss_pss([proc.pid for proc in emu.cpus])
        leg = run_ipi_leg(emu)
    return {"start_idle_s": start_s, "mem_per_cpu_bytes": fall / cfg.cpus, "uss_bytes": uss,
            "pss_bytes": pss, "round_us": leg["round_us"],
            "leg_us_per_thp": leg["leg_us_per_thp"]}


def walkers_start_s(cfg) -> float:
    with started(cfg) as (_, start_s):
        return start_s


def trial(cpus: int, args, seed: int) -> dict:
    floor = floor_round_us(args.floor, cpus)
    out = idle_machine(ipi_config(cpus, args.rounds, seed))
    out["start_walkers_s"] = walkers_start_s(ipi_config(cpus, args.rounds, seed,
                                                        args.walk_rate))
    return dict(out, floor_us=floor)


def point(cpus: int, args) -> dict:
    """Every trial at ``cpus`` and the figures over them."""
    preflight(ipi_config(cpus, args.rounds, 1, args.walk_rate))
    before = load_average()
    trials = []
    for n in range(args.trials):
        trials.append(trial(cpus, args, seed=n + 1))
        print(f"{cpus} CPUs, trial {n + 1} of {args.trials} done", file=sys.stderr)
    out = {"cpus": cpus, "trials": trials, "load_before": before, "load_after": load_average(),
           "round_floor_ratio": spread(paired_ratios([t["round_us"] for t in trials],
                                                     [t["floor_us"] for t in trials]))}
    out.update((name, spread(t[name] for t in trials)) for name in FIGURES)
    return out


#: What the columns are, printed under the table.
NOTES = ("medians of {trials} trial(s)",
         "start: construction of the Emulator to every CPU ready, idle and with walkers "
         "({walk_rate:g} walks/s per CPU)",
         "round p50: median of {rounds} ipi rounds after {warmup} warm-up, idle CPUs",
         "C floor: ipi_floor's median round", "round/floor paired by trial, median (range)",
         "MiB/CPU: fall of MemAvailable over the idle start-up / CPUs",
         "USS, PSS: median of up to {sample} CPU processes once all are up",
         "load: 1-minute load average before -> after (this benchmark's own processes "
         "included)", "?: not to be trusted (see the warnings)")


def _mib(x) -> str:
    return "n/a" if x is None else f"{x / 2**20:.2f}"


def table(points: list, hidden) -> str:
    rough = set(rough_memory(points, hidden))
    rows = [[p["cpus"], format_duration(p["start_idle_s"]["median"]),
             format_duration(p["start_walkers_s"]["median"]), us_text(p["round_us"]["median"]),
             us_text(p["floor_us"]["median"]), ratio_text(p["round_floor_ratio"]),
             _mib(p["mem_per_cpu_bytes"]["median"]) + ("?" if p["cpus"] in rough else ""),
             _mib(p["uss_bytes"]["median"]),
             _mib(p["pss_bytes"]["median"]),
             f"{load_text(p['load_before'][:1])} -> {load_text(p['load_after'][:1])}"]
            for p in points]
    return tabulate(rows, ["CPUs", "start idle", "start walkers", "round p50 us",
                           "C floor us", "round/floor", "MiB/CPU", "USS MiB", "PSS MiB",
                           "load 1 min"], tablefmt="github", disable_numparse=True)


def target_lines(points: list) -> list:
    by_cpus = {p["cpus"]: p for p in points}
    out = []
    for cpus, most in START_TARGETS.items():
        p = by_cpus.get(cpus)
        if p is None:
            out.append(f"target: {cpus} CPUs with walkers start in <= {most:g} s: not "
                       f"measured in this run")
            continue
        took = p["start_walkers_s"]["median"]
        out.append(f"target: {cpus} CPUs with walkers start in <= {most:g} s: "
                   f"{format_duration(took)}, {'met' if took <= most else 'NOT met'}")
    return out


def rough_memory(points: list, hidden) -> list:
    """The counts whose start-up's fall of MemAvailable is too small to read as MiB/CPU."""
    return [p["cpus"] for p in points if hidden and p["mem_per_cpu_bytes"]["median"] is not None
            and p["mem_per_cpu_bytes"]["median"] * p["cpus"] < TRUSTED_FALL * hidden]


def warnings(points: list, cores: int, hidden) -> list:
    out = [text for p in points
           for text in point_warnings(p, cores, {"round_floor_ratio": "round/floor"})]
    rough = rough_memory(points, hidden)
    if rough:
        out.append(f"MiB/CPU is rough at {', '.join(map(str, rough))} CPUs: there the "
                   f"start-up's fall of MemAvailable is less than {TRUSTED_FALL}x the "
                   f"{hidden / 2**20:.0f} MiB the kernel's per-CPU free page lists can hide "
                   f"from it (USS and PSS, read per process, are not affected)")
    return out


# -- the figure ----------------------------------------------------------------------------------

def plot(doc: dict, path: str) -> bool:
    """Round time, memory per CPU and start-up time against CPUs, medians with their range
    as error bars. False (nothing written) when matplotlib, the ``plot`` extra, is missing."""
    if not plot_available():
        print(f"no figure: matplotlib is not installed ({INSTALL})", file=sys.stderr)
        return False
    from matplotlib.figure import Figure
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    rounds, memory, start = fig.subplots(1, 3)
    points = doc["points"]
    _series(rounds, points, "round_us", "emulator round p50", 1.0)
    _series(rounds, points, "floor_us", "C futex floor", 1.0)
    _axes(rounds, "IPI broadcast round", "us", log_y=True)
    rough = rough_memory(points, doc["hidden_free_bytes"])
    _series(memory, points, "mem_per_cpu_bytes", "MemAvailable fall / CPU", 2**-20, rough)
    _series(memory, points, "uss_bytes", "USS of a CPU process", 2**-20)
    _series(memory, points, "pss_bytes", "PSS of a CPU process", 2**-20)
    _axes(memory, "memory per simulated CPU", "MiB", log_y=False)
    _series(start, points, "start_idle_s", "idle CPUs", 1.0)
    _series(start, points, "start_walkers_s", "with walkers", 1.0)
    for cpus, most in START_TARGETS.items():
        start.plot([cpus], [most], "rv", label=f"target: {cpus} with walkers <= {most:g} s")
    _axes(start, "start-up: construction to every CPU ready", "s", log_y=True)
    if rough:
        memory.set_xlabel("simulated CPUs (hollow: MemAvailable's fall too small to trust)")
    host = doc["host"]
    fig.suptitle(f"lpw_mp scaling, {doc['date'][:10]}: {host['usable_cores']} usable cores, "
                 f"load average {load_text(host['load_average'][:1])} at the start; medians "
                 f"of {doc['trials']} trials, bars: range")
    fig.savefig(path, dpi=100, format="png")
    return True


def _series(ax, points, name, label, scale, flagged=()) -> None:
    """Medians of ``name`` with their range; the counts in ``flagged`` hollow."""
    shown = [p for p in points if p[name]["median"] is not None]
    if not shown:
        return
    x = [p["cpus"] for p in shown]
    y = [p[name]["median"] * scale for p in shown]
    err = [[(p[name]["median"] - p[name]["low"]) * scale for p in shown],
           [(p[name]["high"] - p[name]["median"]) * scale for p in shown]]
    line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label).lines[0]
    hollow = [(cpus, v) for cpus, v in zip(x, y) if cpus in flagged]
    if hollow:
        ax.plot(*zip(*hollow), "o", color=line.get_color(), mfc="white", zorder=3)


def _axes(ax, title, unit, log_y) -> None:
    from matplotlib.ticker import ScalarFormatter
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("simulated CPUs")
    ax.set_ylabel(unit)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing measured: no empty legend box
        ax.legend(fontsize="small")


# -- the command ---------------------------------------------------------------------------------

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = options(__doc__.splitlines()[0], COUNTS, trials=3)
    p.add_argument("--walk-rate", type=float, default=Config.walk_rate,
                   help="walks/s per CPU of the machine whose start-up is timed with walkers "
                   "(default: lpw_mp's)")
    p.add_argument("--plot", metavar="PATH.png", help="draw the figure here (matplotlib)")
    args = parse(p, argv)
    doc = document("scaling", argv, args.cpus, warmup=WARMUP, rounds=args.rounds,
                   trials=args.trials, walk_rate=args.walk_rate,
                   hidden_free_bytes=hidden_free_bytes(),
                   start_targets={str(n): s for n, s in START_TARGETS.items()})
    measure_counts(doc, args, point)
    print(table(doc["points"], doc["hidden_free_bytes"]))
    print("; ".join(NOTES).format(**vars(args), warmup=WARMUP, sample=MEMORY_SAMPLE))
    finish(doc, target_lines(doc["points"]) + [
        f"warning: {text}" for text in warnings(doc["points"], doc["host"]["usable_cores"],
                                                doc["hidden_free_bytes"])], args.json)
    if args.plot and plot(doc, args.plot):
        print(f"figure written to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
