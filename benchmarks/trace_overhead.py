"""Benchmark: what ``--trace`` costs the walkers and the IPI round, traced against untraced.

For each CPU count, trial by trial, a machine untraced and one traced (which goes first
alternates from trial to trial, so that both see the same host conditions), each:

- a walker phase of ``--seconds``, as a run's: every CPU walks back to back, no updater. Of it
  the walker's figures: the median IRQ-off window, the median begin+end cost (the strategy's
  walker side), and the **host time per walk**, the usable cores over the walks per second of
  all CPUs: what one walk costs the host in all, the loop and the trace record written after
  the window included (the two medians cannot see that record: it is written once IRQs are
  enabled again);
- then the coordinator unmaps WARMUP + ``--rounds`` THPs under ``ipi`` with the CPUs idle:
  the median round, each target's handler traced.

Ratios are traced over untraced, paired by trial: their median and range over trials.
Target: tracing raises the walker's median (the IRQ-off window) and its host time per walk
by at most 10%.

    python benchmarks/trace_overhead.py [--cpus 8 128] [--seconds 2] [--rounds 200]
                                        [--trials 5] [--json PATH]
"""

import os
import sys
import tempfile

from tabulate import tabulate

from lpw_mp.harness.config import Config
from lpw_mp.harness.emulator import Emulator
from lpw_mp.harness.resources import preflight
from lpw_mp.harness.walkers import measure_walkers

from _measure import (THP, WARMUP, busy_warning, document, finish, leg_figures, load_average,
                      load_text, measure_counts, options, paired_ratios, parse, ratio_text,
                      spread, unstable)

#: Most a traced figure may be over the untraced one.
TARGET = 1.10
#: The figures, their label, and whether the target applies.
FIGURES = (("irq_off_p50_ns", "IRQ-off window p50 (ns)", True),
           ("host_ns_per_walk", "host time per walk (ns)", True),
           ("begin_end_p50_ns", "begin+end p50 (ns)", False),
           ("round_us", "IPI round p50 (us)", False))


def config(cpus: int, rounds: int, seed: int, traced: bool) -> Config:
    return Config(cpus=cpus, memory=(WARMUP + rounds) * THP, thp_size=THP, strategies=["ipi"],
                  walk_rate=0.0, pte_fraction=0.0, seed=seed, trace=traced,
                  runs_dir=tempfile.gettempdir()).validate()


def trial(cpus: int, args, seed: int, traced: bool) -> dict:
    cores = len(os.sched_getaffinity(0))
    with Emulator(config(cpus, args.rounds, seed, traced), "ipi") as emu:
        side = measure_walkers(emu, args.seconds)
        emu.start_coordinator()
        leg = leg_figures(emu.wait_coordinator()["stats"])
        dropped = 0
        if traced:
            buffers = emu.machine.trace
            dropped = sum(max(0, buffers.records(t)[1] - cap)
                          for t, cap in enumerate(buffers.caps))
    return {"irq_off_p50_ns": side["irq_off_median_ns"],
            "begin_end_p50_ns": side["begin_end_median_ns"],
            "host_ns_per_walk": cores / side["walks_per_s"] * 1e9 if side["walks"] else None,
            "walks_per_s": side["walks_per_s"], "round_us": leg["round_us"],
            "dropped": dropped}


def point(cpus: int, args) -> dict:
    """Every trial at ``cpus``, untraced and traced in alternating order, and the ratios."""
    preflight(config(cpus, args.rounds, 1, True))
    before = load_average()
    plain, traced = [], []
    for n in range(args.trials):
        for on in ((False, True) if n % 2 == 0 else (True, False)):
            (traced if on else plain).append(trial(cpus, args, n + 1, on))
        print(f"{cpus} CPUs, trial {n + 1} of {args.trials} done", file=sys.stderr)
    out = {"cpus": cpus, "untraced": plain, "traced": traced, "load_before": before,
           "load_after": load_average(), "dropped": sum(t["dropped"] for t in traced)}
    for key, _, target in FIGURES:
        ratio = spread(paired_ratios([t[key] for t in traced], [p[key] for p in plain]))
        out[key] = {"untraced": spread([p[key] for p in plain])["median"],
                    "traced": spread([t[key] for t in traced])["median"], "ratio": ratio,
                    "target_met": (ratio["median"] <= TARGET if target and ratio["n"]
                                   else None)}
    return out


def table(points: list) -> str:
    rows = []
    for p in points:
        for key, label, target in FIGURES:
            f = p[key]
            verdict = "-" if f["target_met"] is None else \
                f"<= {TARGET:.2f}x: {'met' if f['target_met'] else 'NOT met'}"
            rows.append([p["cpus"], label, _figure(f["untraced"]), _figure(f["traced"]),
                         ratio_text(f["ratio"]), verdict, load_text(p["load_before"])])
    return tabulate(rows, ["CPUs", "figure", "untraced", "traced", "traced/untraced",
                           "target", "load before"], tablefmt="github", disable_numparse=True)


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = options(__doc__.splitlines()[0], [8, 128], trials=5)
    p.add_argument("--seconds", type=float, default=2.0,
                   help="each walker phase's length (default 2)")
    args = parse(p, argv)
    if args.seconds <= 0:
        p.error("--seconds must be above 0")
    doc = document("trace_overhead", argv, args.cpus, warmup=WARMUP, rounds=args.rounds,
                   trials=args.trials, seconds=args.seconds, target=TARGET)
    measure_counts(doc, args, point)
    print(table(doc["points"]))
    print(f"medians of {args.trials} trials, untraced and traced alternating; walker figures "
          f"from a {args.seconds:g} s walker phase (every CPU back to back); host time per "
          f"walk: usable cores / walks per second; IPI round: median of {args.rounds} after "
          f"{WARMUP} warm-up, CPUs idle; ratios paired by trial, median (range)")
    lines = [f"warning: {p['cpus']} CPUs: {p['dropped']:,} trace records lost to full buffers "
             f"(the figures still count their writes)" for p in doc["points"] if p["dropped"]]
    for p in doc["points"]:
        busy = busy_warning(p["load_before"], doc["host"]["usable_cores"])
        lines += [f"warning: {p['cpus']} CPUs: {busy}"] if busy else []
        lines += [f"warning: {p['cpus']} CPUs: {label}: traced/untraced unstable across "
                  f"trials ({ratio_text(p[key]['ratio']).rstrip('?')}): rerun on a quieter "
                  f"host" for key, label, _ in FIGURES if unstable(p[key]["ratio"])]
    finish(doc, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
