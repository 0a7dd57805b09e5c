"""The mutation score of ``lpw_mp check``: every mutant of tests/mutants.py must be rejected,
every built-in safe profile accepted. Runs ``python -m lpw_mp check SPEC --json`` for each
(the product path, as a user would) and prints one row per strategy and the score.

    python benchmarks/mutation_score.py               # deterministic schedules + stress
    python benchmarks/mutation_score.py --stress-ops 0  # the deterministic schedules only
"""

import argparse
import json
import os
import subprocess
import sys
import time

from tabulate import tabulate

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from mutants import MUTANTS  # noqa: E402

BUILTINS = ["ipi", "count", "percpu", "v5.8", "sync-one", "sync-mm"]


def check(spec: str, stress_ops: int) -> tuple:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lpw_mp", "check", spec, "--json",
                           "--stress-ops", str(stress_ops)], capture_output=True, text=True,
                          cwd=REPO)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"check {spec} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout), took


def caught_where(report: dict) -> str:
    where = {}
    for ce in report["counterexamples"]:
        where.setdefault(ce["model"], []).append(ce["path"])
    for model, s in report["stress"].items():
        if s["violations"]:
            where.setdefault(model, []).append("stress")
    return "; ".join(f"{m}: {', '.join(p)}" for m, p in where.items()) or "-"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stress-ops", type=int, default=1500)
    args = p.parse_args()
    load = os.getloadavg()[0]  # before check's own processes add to it
    rows, killed, accepted = [], 0, 0
    for cls, models in MUTANTS.items():
        report, took = check(f"tests/mutants.py:{cls.__name__}", args.stress_ops)
        dead = not report["safe"]
        killed += dead
        rows.append([cls.name, (cls.__doc__ or "").split(":")[0], "killed" if dead else
                     "SURVIVED", caught_where(report), f"{took:.1f} s"])
    for name in BUILTINS:
        report, took = check(name, args.stress_ops)
        accepted += report["safe"]
        rows.append([name, "built-in", "accepted" if report["safe"] else "REJECTED",
                     caught_where(report), f"{took:.1f} s"])
    print(tabulate(rows, headers=["strategy", "mistake", "check", "caught (model: paths)",
                                  "time"]))
    print(f"\nmutation score: {killed}/{len(MUTANTS)} mutants killed; built-in safe "
          f"profiles accepted: {accepted}/{len(BUILTINS)}; load average {load:.2f} at the "
          f"start, --stress-ops {args.stress_ops}")
    return 0 if killed == len(MUTANTS) and accepted == len(BUILTINS) else 1


if __name__ == "__main__":
    sys.exit(main())
