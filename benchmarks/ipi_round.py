"""Benchmark: the emulator's IPI broadcast round against the C/futex floor, side by side.

For each CPU count, times one ``smp_call_function_many(wait=1)`` round to that many idle
simulated CPUs (the product path: a coordinator process running munmap under ``ipi``), and
runs ``benchmarks/calibrate/ipi_floor.sh`` for the same count in the same run. Floor and emulator
trials alternate; the table gives medians over trials and the ratio's range.

    python benchmarks/ipi_round.py [--cpus 2 16 128] [--rounds 200] [--trials 5]

Target: the emulator's round at 128 idle CPUs within 2x of the floor.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

from tabulate import tabulate

from lpw_mp.harness.config import Config
from lpw_mp.harness.emulator import Emulator
from lpw_mp.harness.hostinfo import host_metadata

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FLOOR = os.path.join(HERE, "calibrate", "ipi_floor.sh")


#: Rounds run and discarded first: freshly forked CPUs take copy-on-write faults on their
#: first pass through the loop (ipi_floor.c likewise sleeps 200 ms before it measures).
WARMUP = 50


def emulator_round_us(cpus: int, rounds: int, seed: int) -> float:
    """Mean microseconds per round over ``rounds`` rounds after the warm-up."""
    cfg = Config(cpus=cpus, memory=(WARMUP + rounds) * (2 << 20), strategies=["ipi"],
                 walk_rate=0.0, pte_fraction=0.0, seed=seed, runs_dir="/tmp").validate()
    with Emulator(cfg, "ipi") as emu:
        emu.start_coordinator()
        out = emu.wait_coordinator()
    return statistics.fmean(out["stats"]["rounds"][WARMUP:]) * 1e6


def floor_round_us(script: str, cpus: int):
    if not os.path.exists(script):
        return None
    out = subprocess.run(["sh", script, str(cpus)], capture_output=True, text=True,
                         timeout=600, check=True).stdout
    m = re.search(r"median_us_per_round=([\d.]+)", out)
    return float(m.group(1)) if m else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpus", type=int, nargs="+", default=[2, 16, 128])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--floor", default=DEFAULT_FLOOR, help="path of ipi_floor.sh")
    args = p.parse_args(argv)
    host = host_metadata(max(args.cpus), "fork")
    print(f"host: {host['usable_cores']} usable cores, Python {host['python']}, "
          f"{host['platform']}")
    rows = []
    for n in args.cpus:
        # Alternate floor and emulator so that both see the same host conditions.
        floors, emus = [], []
        for trial in range(args.trials):
            floor = floor_round_us(args.floor, n)
            if floor:
                floors.append(floor)
            emus.append(emulator_round_us(n, args.rounds, trial))
        emu = statistics.median(emus)
        ratios = [e / f for e, f in zip(emus, floors)]
        spread = (f"{min(ratios):.2f}-{max(ratios):.2f}x" if ratios else "n/a")
        floor = statistics.median(floors) if floors else None
        rows.append([n, f"{(n + 1) / host['usable_cores']:.1f}",
                     f"{floor:.1f}" if floor else "n/a", f"{emu:.1f}",
                     f"{statistics.median(ratios):.2f}x" if ratios else "n/a", spread])
    print(tabulate(rows, ["idle CPUs", "procs/core", "C floor us/round", "lpw_mp us/round",
                          "ratio (median)", "ratio range"], tablefmt="github",
                   disable_numparse=True))
    print(f"medians of {args.trials} alternating trials; each trial: the floor's own median of "
          f"5x200 rounds, the emulator's mean of {args.rounds} rounds after {WARMUP} warm-up")
    if not os.path.exists(args.floor):
        print(f"(no C floor: {args.floor} not found)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
