"""Benchmark: the emulator's IPI broadcast round and its ``ipi`` leg against the C/futex floor.

For each CPU count, trial by trial, alternating so that both see the same host conditions:

- the C floor, ``benchmarks/calibrate/ipi_floor.sh``: N forked processes asleep on futexes;
  one round wakes every one and waits until all have acknowledged. Its figure is its own
  median of 5 trials, each the mean of 200 rounds;
- the emulator's product path: N idle simulated CPUs (walk rate 0) and a coordinator that
  unmaps WARMUP + ``--rounds`` THPs under ``ipi``, every slot a huge leaf, so one broadcast
  round per THP.

Of each emulator trial it keeps the **round median** (rounds after the warm-up) and the **leg
per THP**: the coordinator's whole munmap time (``wall_s``) per THP, the WARMUP first THPs
left out. Their rounds are timed one by one and drop out exactly; the coordinator's own time
between rounds is known only in total, so each THP is charged its average over all of them
(if the first THPs' own time is longer, that overstates the rest, never understates). The
leg per THP is thus the mean measured round plus the own time per THP: a mean, like the
floor's, so leg/floor is the ratio the targets are about. round/floor sets the median round
against the floor's mean round (a round's usual cost, without the coordinator's own work).
Ratios are paired by trial; the table gives their median and range over trials, with the
load average before and after each count. ``--json`` writes every trial's figures with the
date and the host's metadata, from which the README's table can be regenerated.

Targets: the leg within 1.15x of the floor at 128 idle CPUs, within 1.5x at 1024.

    python benchmarks/ipi_round.py [--cpus 2 16 128] [--rounds 200] [--trials 5]
                                   [--floor PATH] [--json PATH]
"""

import os
import sys

from tabulate import tabulate

from lpw_mp.harness.emulator import Emulator
from lpw_mp.harness.resources import preflight

from _measure import (WARMUP, document, finish, floor_round_us, ipi_config, load_average,
                      load_text, measure_counts, options, paired_ratios, parse, point_warnings,
                      ratio_text, run_ipi_leg, spread, us_text)

#: Idle CPUs -> the most the leg per THP may be over the floor's round.
TARGETS = {128: 1.15, 1024: 1.5}


def emulator_trial(cpus: int, rounds: int, seed: int) -> dict:
    with Emulator(ipi_config(cpus, rounds, seed), "ipi") as emu:
        return run_ipi_leg(emu)


def point(cpus: int, args) -> dict:
    """Every trial at ``cpus``, the floor first in each, and the figures over them."""
    preflight(ipi_config(cpus, args.rounds, 1))
    before = load_average()
    floors, legs = [], []
    for trial in range(args.trials):
        floors.append(floor_round_us(args.floor, cpus))
        legs.append(emulator_trial(cpus, args.rounds, seed=trial + 1))
        print(f"{cpus} CPUs, trial {trial + 1} of {args.trials} done", file=sys.stderr)
    leg_us = [leg["leg_us_per_thp"] for leg in legs]
    round_us = [leg["round_us"] for leg in legs]
    ratio = spread(paired_ratios(leg_us, floors))
    target = TARGETS.get(cpus)
    return {"cpus": cpus, "procs_per_core": (cpus + 1) / len(os.sched_getaffinity(0)),
            "floor_us": floors, "round_us": round_us, "leg_us_per_thp": leg_us,
            "own_us_per_thp": [leg["own_us_per_thp"] for leg in legs],
            "floor_us_median": spread(floors)["median"],
            "round_us_median": spread(round_us)["median"],
            "leg_us_per_thp_median": spread(leg_us)["median"],
            "leg_floor_ratio": ratio, "round_floor_ratio": spread(paired_ratios(round_us, floors)),
            "target": target,
            "target_met": None if target is None or not ratio["n"] else ratio["median"] <= target,
            "load_before": before, "load_after": load_average()}


#: What the figures are, printed under the table.
NOTES = ("medians of {trials} alternating trials",
         "C floor: its own median of 5 trials of 200 rounds' mean",
         "round p50: the emulator's median round of {rounds} after {warmup} warm-up",
         "leg us/THP: the ipi leg's munmap time per THP without the warm-up (mean round + "
         "the coordinator's own time per THP)",
         "ratios paired by trial, median (range)",
         "load averages (1/5/15 min, which the kernel refreshes every 5 s; this benchmark's "
         "own processes included) before and after each count",
         "?: not to be trusted (see the warnings)")


def unmeasured_targets(points: list) -> list:
    run = {p["cpus"] for p in points}
    return [f"target at {cpus} idle CPUs (leg <= {most:g}x the floor): not measured in this "
            f"run" for cpus, most in TARGETS.items() if cpus not in run]


def target_text(p: dict) -> str:
    if p["target"] is None:
        return "-"
    verdict = {True: "met", False: "NOT met", None: "no floor"}[p["target_met"]]
    return f"<= {p['target']:g}x: {verdict}"


def table(points: list) -> str:
    rows = [[p["cpus"], f"{p['procs_per_core']:.1f}", us_text(p["floor_us_median"]),
             us_text(p["round_us_median"]), us_text(p["leg_us_per_thp_median"]),
             ratio_text(p["leg_floor_ratio"]), ratio_text(p["round_floor_ratio"]),
             target_text(p), load_text(p["load_before"]), load_text(p["load_after"])]
            for p in points]
    return tabulate(rows, ["idle CPUs", "procs/core", "C floor us/round", "round p50 us",
                           "leg us/THP", "leg/floor", "round/floor", "target", "load before",
                           "load after"], tablefmt="github", disable_numparse=True)


def warnings(points: list, cores: int) -> list:
    return [text for p in points for text in point_warnings(
        p, cores, {"leg_floor_ratio": "leg/floor", "round_floor_ratio": "round/floor"})]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(options(__doc__.splitlines()[0], [2, 16, 128], trials=5), argv)
    doc = document("ipi_round", argv, args.cpus, warmup=WARMUP, rounds=args.rounds,
                   trials=args.trials, targets={str(n): x for n, x in TARGETS.items()})
    measure_counts(doc, args, point)
    print(table(doc["points"]))
    print("; ".join(NOTES).format(**vars(args), warmup=WARMUP))
    lines = unmeasured_targets(doc["points"])
    if not os.path.exists(args.floor):
        lines.append(f"warning: no C floor: {args.floor} not found")
    lines += [f"warning: {text}" for text in warnings(doc["points"], doc["host"]["usable_cores"])]
    finish(doc, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
