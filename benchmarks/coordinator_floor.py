"""Benchmark: the coordinator's own cost per THP, with no walker to serialise against.

Under ``none`` (no serialisation at all) and no walks, an operation's time is the coordinator's
loop alone: the floor that every profile skipping the IPI is measured against (the kernel's
munmap: 154 ns per THP). For munmap, split and collapse under ``none`` (and, for reference,
``count`` and ``percpu``, whose check per THP finds no walker) each round runs the operation
on a fresh machine of ``--cpus`` idle CPUs and takes the coordinator's ``wall_s`` over the
THPs. The table gives the median of ``--repeats`` rounds and their range; the header the date,
the host and its load average before, the last line the load average after.

``--base PATH`` (a checkout of other code, say main before a change) runs the same rounds on
that code, alternating with this tree's (ABBA, so that a drifting host favours neither), each
round in a subprocess whose PYTHONPATH is its tree; the ratio base / this is paired by round
(median and range, ``?`` when the range exceeds a fifth of the median).

``--instructions`` adds instruction counts, which a busy host does not disturb: under
``valgrind --tool=callgrind``, one process builds an updater (no CPU process, every CPU idle)
over 4,000 and over 2,000 THPs, with and without running the operation; the difference of
the two differences over 2,000 is the operation's instructions per THP. It takes minutes
(split fills a PTE page per THP).

    python benchmarks/coordinator_floor.py [--thps 4096] [--repeats 5] [--cpus 2]
        [--ops munmap split collapse] [--strategies none count percpu]
        [--base PATH] [--instructions] [--json PATH]

For example, this tree against main:

    git worktree add --detach /tmp/lpw-base main
    python benchmarks/coordinator_floor.py --base /tmp/lpw-base --instructions

Target: munmap under ``none`` at most 500 ns per THP on a quiet host (load average below the
number of cores).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The region sizes of the instruction count: their difference is what is counted.
BIG, SMALL = 4000, 2000
#: munmap under none, in ns per THP on a quiet host.
TARGET_NS = 500.0


# -- in a subprocess, on the lpw_mp of its PYTHONPATH ------------------------------------------

def wall_round(ops, strategies, thps: int, cpus: int) -> dict:
    """ns per THP of each operation under each strategy, on a fresh machine each."""
    from lpw_mp.harness.config import Config
    from lpw_mp.harness.emulator import Emulator
    samples = {}
    for op in ops:
        for name in strategies:
            cfg = Config(cpus=cpus, memory=thps * (2 << 20), strategies=[name], op=op,
                         walk_rate=0.0, pte_fraction=0.0, seed=1, runs_dir="/tmp").validate()
            with Emulator(cfg, name) as emu:
                emu.start_coordinator()
                stats = emu.wait_coordinator()["stats"]
            samples[f"{op} {name}"] = stats["wall_s"] / cfg.npmds * 1e9
    return samples


def updater_alone(op: str, name: str, thps: int, run: bool) -> None:
    """An updater in this process over ``thps`` THPs whose CPUs are idle and out of the
    cpumask (nothing to IPI, RCU reports for them); it runs ``op`` only if ``run``."""
    import multiprocessing
    from lpw_mp.kernel.coordinator import Updater
    from lpw_mp.kernel.machine import SLOT_STRIDE, Machine
    from lpw_mp.kernel.pagetable import PageTable
    from lpw_mp.kernel.strategies import STRATEGIES
    ctx = multiprocessing.get_context("fork")
    table = PageTable(thps, 2 << 20, 0 if op == "munmap" else thps)
    table.populate(1.0 if op == "collapse" else 0.0, 1)
    machine = Machine(ctx, 2, "accurate", active=[False, False])
    strategy = STRATEGIES[name](ctx, machine)
    for cpu in range(machine.ncpus):
        strategy.rcu.idle[cpu * SLOT_STRIDE] = 1
    if run:
        Updater(machine, table, strategy, timeout=1.0).run(op)


# -- in the parent -----------------------------------------------------------------------------

def in_tree(tree: str, argv, valgrind: bool = False) -> str:
    """This script run with ``argv`` on ``tree``'s lpw_mp: its stdout (valgrind's stderr)."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv]
    if valgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
    env = dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise SystemExit(f"{tree}: {' '.join(argv)} failed:\n{out.stderr}")
    return out.stderr if valgrind else out.stdout


def rounds_of(tree: str, opts) -> dict:
    """One round on ``tree``, refused if PYTHONPATH did not make it the lpw_mp that ran."""
    out = json.loads(in_tree(tree, ["--round", *opts]))
    if os.path.dirname(out["lpw_mp"]) != tree:
        raise SystemExit(f"PYTHONPATH={tree} ran the lpw_mp of {out['lpw_mp']}: is {tree} a "
                         f"checkout?")
    return out["samples"]


def instructions(tree: str, op: str, name: str) -> float:
    """Instructions per THP of ``op`` under ``name`` on ``tree``'s code."""
    def counted(thps, run):
        err = in_tree(tree, ["--alone", op, name, str(thps), str(int(run))], valgrind=True)
        return int(re.search(r"Collected : (\d+)", err).group(1))
    return ((counted(BIG, True) - counted(SMALL, True))
            - (counted(BIG, False) - counted(SMALL, False))) / (BIG - SMALL)


def ns_text(s: dict) -> str:
    return f"{s['median']:,.0f} ({s['low']:,.0f}-{s['high']:,.0f})"


def table(rows: list, based: bool) -> str:
    from tabulate import tabulate

    from _measure import ratio_text
    lines = []
    for r in rows:
        line = [r["op"], r["strategy"], ns_text(r["this"])]
        if based:
            line += [ns_text(r["base"]), ratio_text(r["ratio"])]
        if "instructions" in r:
            line += [f"{n:,.0f}" for n in r["instructions"]]
            line += [f"{r['instructions'][1] / r['instructions'][0]:.2f}x"] if based else []
        lines.append(line)
    heads = ["op", "strategy", "ns/THP"] + (["base ns/THP", "base/this"] if based else [])
    if rows and "instructions" in rows[0]:
        heads += ["instr/THP"] + (["base instr/THP", "base/this"] if based else [])
    return tabulate(lines, heads, tablefmt="github", disable_numparse=True)


def target_line(rows: list, load_before: float, cores: int) -> str:
    row = next((r for r in rows if (r["op"], r["strategy"]) == ("munmap", "none")), None)
    if row is None:
        return f"target: munmap under none <= {TARGET_NS:.0f} ns/THP: not measured"
    met = "met" if row["this"]["median"] <= TARGET_NS else "not met"
    quiet = "" if load_before < cores else " (the host was busy: rerun when it is quiet)"
    return (f"target: munmap under none <= {TARGET_NS:.0f} ns/THP on a quiet host: {met}, "
            f"median {row['this']['median']:,.0f} ns{quiet}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--thps", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--ops", nargs="+", default=["munmap", "split", "collapse"])
    p.add_argument("--strategies", nargs="+", default=["none", "count", "percpu"])
    p.add_argument("--base", metavar="PATH", help="a checkout of the code to compare with")
    p.add_argument("--instructions", action="store_true",
                   help="also count instructions per THP under callgrind (minutes)")
    p.add_argument("--json", metavar="PATH", help="write the figures and host metadata here")
    p.add_argument("--round", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--alone", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.round:
        import lpw_mp
        print(json.dumps({"lpw_mp": os.path.dirname(lpw_mp.__file__),
                          "samples": wall_round(args.ops, args.strategies, args.thps,
                                                args.cpus)}))
        return 0
    if args.alone:
        op, name, thps, run = args.alone
        updater_alone(op, name, int(thps), run == "1")
        return 0
    if args.repeats < 1 or args.thps < 1:
        p.error("--repeats and --thps must be at least 1")
    # Here, not at the top: a round runs this file on another tree's lpw_mp. The header
    # names this tree's commit: its lpw_mp, not whichever is installed, is imported.
    sys.path.insert(1, TREE)
    from _measure import document, finish, header, load_average, paired_ratios, spread
    trees = {"this": TREE, **({"base": os.path.abspath(args.base)} if args.base else {})}
    doc = document("coordinator_floor", sys.argv[1:] if argv is None else argv, [args.cpus],
                   thps=args.thps, repeats=args.repeats, idle_cpus=args.cpus, trees=trees,
                   limit=None)
    print(header(doc), flush=True)
    opts = ["--thps", str(args.thps), "--cpus", str(args.cpus), "--ops", *args.ops,
            "--strategies", *args.strategies]
    samples = {label: [] for label in trees}
    for r in range(args.repeats):
        for label in (list(trees) if r % 2 == 0 else list(reversed(trees))):
            samples[label].append(rounds_of(trees[label], opts))
        print(f"round {r + 1} of {args.repeats} done", file=sys.stderr)
    rows = []
    for key in samples["this"][0]:
        op, name = key.split()
        runs = {label: [s[key] for s in samples[label]] for label in trees}
        row = {"op": op, "strategy": name, "ns_per_thp": runs, "this": spread(runs["this"])}
        if args.base:
            row["base"] = spread(runs["base"])
            row["ratio"] = spread(paired_ratios(runs["base"], runs["this"]))
        rows.append(row)
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("(no instruction counts: valgrind not found)", file=sys.stderr)
        else:
            for row in rows:
                row["instructions"] = [instructions(tree, row["op"], row["strategy"])
                                       for tree in trees.values()]
    doc["rows"] = rows
    doc["load_average_end"] = load_average()
    print(table(rows, bool(args.base)))
    lines = [f"median (range) of {args.repeats} rounds of {args.thps:,} THPs, {args.cpus} "
             f"idle CPUs, wall_s over THPs; this: {trees['this']}"
             + (f"; base: {trees['base']}" if args.base else "")]
    if args.instructions:
        lines.append(f"instr/THP: callgrind, one process and no CPU process, ({BIG:,} THPs - "
                     f"{SMALL:,}) less the same without the operation, over {BIG - SMALL:,}")
    lines.append(target_line(rows, doc["host"]["load_average"][0],
                             doc["host"]["usable_cores"]))
    finish(doc, lines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
