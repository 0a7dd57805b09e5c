"""``python -m lpw_mp check STRATEGY``: is this scheme safe? Every hazard of every path forced
schedule by schedule (``harness.checking``) under each memory model, then a stress run under
each; a verdict per path, and for a path that fails, a counterexample and exit status 1.

    python -m lpw_mp check percpu
    python -m lpw_mp check examples/lance_yang.py:SyncMMv4 --memory-model tso
    python -m lpw_mp check none --trace traces/   # each counterexample as a Perfetto trace

Exit status: 0 when no schedule and no stress run let a walker use freed memory, 1 when one
did, 2 for a bad command line (nothing is started)."""

import json
import os
import sys

from tabulate import tabulate

from lpw_mp.commands.shell import (PROG, Parser, UsageError, invoked_as, parse_duration, parse_int,
                                   resolve_strategy, typed)
from lpw_mp.harness.check_traces import write_counterexample_trace
from lpw_mp.harness.checking import (PATH_TEXT, PATHS, STRESS, check_schedules, stress)
from lpw_mp.harness.config import Config, ConfigError, check_writable_dir
from lpw_mp.harness.emulator import EmulatorError
from lpw_mp.harness.resources import preflight
from lpw_mp.harness.signals import Interrupted, deferred_signals, interruptible
from lpw_mp.kernel.hooks import WALK_POINTS
from lpw_mp.kernel.memory_model import MODELS
from lpw_mp.results.traces import us

SUMMARY = "prove or refute one strategy path by path, with a counterexample"

#: Operations of each stress run (0 skips it): about a second per model on 2 cores.
DEFAULT_STRESS_OPS = 1500
#: The machine of the schedules: one CPU at a time walks under command, the others stay idle
#: (an IPI to them is answered at once), 8 slots of 2M.
SCHEDULE_CONFIG = dict(cpus=3, memory=16 << 20, op="mixed", walk_rate=0.0, pte_fraction=0.5,
                       walker_time=0.0)


def _names(choices, noun: str, every: bool = False):
    """A parser of a comma-separated list of ``choices`` (``every``: or ``all``), in the order
    given, without repeats; ValueError naming a wrong one."""
    also = ", all" if every else ""

    def parse(text: str) -> list:
        names = [part.strip() for part in text.split(",") if part.strip()]
        if every and names == ["all"]:
            return list(choices)
        for name in names:
            if name not in choices:
                raise ValueError(f"unknown {noun} {name!r} (choose from "
                                 f"{', '.join(choices)}{also})")
        if not names:
            raise ValueError(f"no {noun} given")
        return list(dict.fromkeys(names))
    return parse


def build_parser() -> Parser:
    p = Parser(prog=f"{invoked_as()} check",
               description="Force every hazard of every path (munmap of a THP, free of a PTE "
                           "table, split, collapse) with a walker stopped at each point of "
                           "its window and the updater stopped before each of its steps, "
                           "under each memory model; then stress each model. Exit status 1 "
                           "with a counterexample when a walker used freed memory.")
    p.add_argument("strategy", metavar="STRATEGY",
                   help="a built-in profile, path/to/file.py:Class, package.module:Class, or "
                        "an installed plugin's name")
    p.add_argument("--memory-model", type=typed(_names(MODELS, "memory model", every=True),
                                                 "models"),
                   default=list(MODELS), dest="models",
                   help=f"comma-separated memory models to check under (default all: "
                        f"{', '.join(MODELS)})")
    p.add_argument("--path", type=typed(_names(PATHS, "path"), "paths"), default=list(PATHS),
                   dest="paths",
                   help=f"comma-separated paths (default all: {', '.join(PATHS)})")
    p.add_argument("--stress-ops", type=typed(parse_int, "ops"), default=DEFAULT_STRESS_OPS,
                   help=f"operations of the stress run under each model (default "
                        f"{DEFAULT_STRESS_OPS}; 0 skips it)")
    p.add_argument("--stress-cpus", type=typed(parse_int, "cpus"), default=STRESS["cpus"],
                   help=f"CPUs of the stress run (default {STRESS['cpus']})")
    p.add_argument("--ipi-timeout", type=typed(parse_duration, "duration"), default=5.0,
                   help="bound on every wait, e.g. 5s, 500ms (default 5s)")
    p.add_argument("--seed", type=typed(parse_int, "seed"), default=1)
    p.add_argument("--start-method", choices=("fork", "spawn"), default="fork")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p.add_argument("--trace", metavar="DIR",
                   help="write each counterexample as a trace (Chrome trace-event JSON, which "
                        "Perfetto opens) into DIR, made if missing: "
                        "<strategy>-<path>-<model>.json")
    return p


def _config(args, **values) -> Config:
    cfg = Config(seed=args.seed, ipi_timeout=args.ipi_timeout, start_method=args.start_method,
                 **values)
    return cfg.validate()


def main(argv) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.stress_ops <= 1_000_000:
        raise UsageError(f"--stress-ops {args.stress_ops} is out of range: 0 to 1000000")
    cls, spec = resolve_strategy(args.strategy)
    try:
        if args.trace is not None:
            check_writable_dir(args.trace, "--trace")
        schedule_cfg = _config(args, strategies=[spec], **SCHEDULE_CONFIG)
        stress_cfg = _config(args, strategies=[spec], **dict(
            STRESS, cpus=args.stress_cpus, mixed_ops=max(args.stress_ops, 1)))
        preflight(stress_cfg)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    # A signal that arrives once the schedules are over waits until the traces are written
    # and the report printed: an interrupted check writes nothing, a finished one all.
    with deferred_signals():
        try:
            with interruptible():
                report, schedules = run_check(cls, spec, args, schedule_cfg, stress_cfg)
        except EmulatorError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        except Interrupted:
            print(f"{PROG}: interrupted (check writes nothing)", file=sys.stderr)
            return 130
        if args.trace is not None:
            write_traces(report, schedules, args.trace)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(format_report(report))
        return 0 if report["safe"] else 1


def write_traces(report: dict, schedules: list, folder: str) -> None:
    """Each counterexample's trace into ``folder``; its path in the counterexample's
    ``trace``. One that cannot be written costs that file, not the report (one line on
    stderr, ``trace`` stays null; check exits 1 anyway: it has a counterexample)."""
    report["trace_dir"] = folder
    for ce, schedule in zip(report["counterexamples"], schedules):
        try:
            ce["trace"] = write_counterexample_trace(schedule, folder)
        except OSError as exc:
            print(f"{PROG}: error: could not write the trace of the {ce['path']} "
                  f"counterexample under {ce['model']} in {folder}: "
                  f"{exc.strerror or exc}", file=sys.stderr)


def run_check(cls, spec, args, schedule_cfg, stress_cfg) -> tuple:
    """Every model's schedules and stress run: the report as a document, and the
    ``checking.Schedule`` of each of its counterexamples, in the same order (a trace is
    made from one)."""
    paths = {path: {} for path in args.paths}
    stresses = {}
    counterexamples, schedules = [], []
    for model in args.models:
        verdicts = check_schedules(schedule_cfg, cls, model, paths=args.paths)
        for path, v in verdicts.items():
            paths[path][model] = {"schedules": v.schedules, "violations": v.violations}
            if v.first is not None:
                counterexamples.append({
                    "path": path, "model": model, "schedule": v.first.number,
                    "walker_point": WALK_POINTS[v.first.point],
                    "coordinator_step": v.first.step + 1, "before": v.first.label,
                    "summary": v.first.describe(), "violations": v.first.violations,
                    "steps": _steps(v.first), "trace": None})
                schedules.append(v.first)
        if args.stress_ops:
            s = stress(stress_cfg, cls, model, args.stress_ops)
            stresses[model] = {"ops": s.ops, "violations": s.violations,
                               "by_kind": s.by_kind, "walks_held": s.walks_held}
    safe = not counterexamples and not any(s["violations"] for s in stresses.values())
    return {"strategy": cls.name, "spec": spec, "kernel": cls.kernel,
            "walker": cls.walker, "declared_safe": cls.safe, "builtin": spec == cls.name,
            "models": args.models, "paths": paths, "stress": stresses, "safe": safe,
            "counterexamples": counterexamples, "trace_dir": None}, schedules


def _steps(schedule) -> list:
    """A counterexample's steps with their times, microseconds from the schedule's start
    (null for a step without one: every step is kept)."""
    stamps = schedule.stamps

    def t_us(i):
        return us(stamps[i] - schedule.began_ns) if i < len(stamps) else None
    return [{"who": who, "step": text, "t_us": t_us(i)}
            for i, (who, text) in enumerate(schedule.steps)]


def format_report(report: dict) -> str:
    models = report["models"]
    rows = []
    for path, by_model in report["paths"].items():
        rows.append([PATH_TEXT[path], *(_cell(by_model[m]) for m in models)])
    if report["stress"]:
        rows.append(["stress (mixed, random schedule)",
                     *(_stress_cell(report["stress"].get(m)) for m in models)])
    lines = [f"check {report['strategy']} ({report['kernel'] or report['spec']}); walker "
             f"discipline {report['walker']}",
             "", tabulate(rows, headers=["path", *models], tablefmt="simple"), ""]
    lines.append(_verdict(report))
    shown = _shown(report["counterexamples"])
    for ce in shown:
        lines += ["", f"Counterexample ({ce['path']}, {ce['model']}, schedule "
                      f"{ce['schedule']}): {ce['summary']}",
                  "  the steps, in the order they happened:"]
        for n, step in enumerate(ce["steps"], 1):
            lines.append(f"  {n:3d}  {step['who']:<11}  {step['step']}")
        for v in ce["violations"][:2]:
            lines.append(f"  violation: {v['kind']} by CPU {v['cpu']} on slot {v['slot']} "
                         f"(generation {v['generation_taken']} taken, "
                         f"{v['generation_seen']} when used)")
        if ce["trace"]:
            lines.append(f"  trace: {ce['trace']}")
    lines += _traces_line(report, shown)
    lines.append("")
    lines.append("A testing aid, not a proof: it runs the schedules above on this emulator's "
                 "models; for a proof, herd7 with the Linux-kernel memory model.")
    return "\n".join(lines)


def _shown(counterexamples: list) -> list:
    """The counterexamples the text report prints: the first, and the first of up to two
    other paths."""
    first = counterexamples[:1]
    others = [c for c in counterexamples[1:] if c["path"] != first[0]["path"]]
    return first + others[:2]


def _traces_line(report: dict, shown: list) -> list:
    """With ``--trace``: that none was written (no counterexample), or where the traces of
    the counterexamples not printed are."""
    if report["trace_dir"] is None:
        return []
    if not report["counterexamples"]:
        return ["", "no counterexample, no trace written"]
    more = [c for c in report["counterexamples"] if c not in shown and c["trace"]]
    if more:
        return ["", f"{len(more)} more trace(s), one per counterexample not shown above, in "
                    f"{report['trace_dir']}: "
                    f"{', '.join(os.path.basename(c['trace']) for c in more)}"]
    return []


def _cell(v: dict) -> str:
    if v["violations"]:
        return f"UNSAFE ({v['violations']} of {v['schedules']} schedules)"
    return f"safe ({v['schedules']} schedules)"


def _stress_cell(s) -> str:
    if s is None:
        return "-"
    if s["violations"]:
        return f"UNSAFE ({s['violations']} violations)"
    return f"safe ({s['ops']:,} ops, {s['walks_held']:,} walks)"


def _verdict(report: dict) -> str:
    name = report["strategy"]
    if report["safe"]:
        return (f"verdict: {name} is safe on every path checked, under "
                f"{', '.join(report['models'])}.")
    where = {}
    for c in report["counterexamples"]:
        where.setdefault(c["path"], []).append(c["model"])
    for model, s in report["stress"].items():
        if s["violations"]:
            where.setdefault("stress", []).append(model)
    places = "; ".join(f"{path} under {', '.join(models)}" for path, models in where.items())
    if not report["declared_safe"]:
        blame = f"{name} is the unsafe control: caught, as it must be."
    elif report["builtin"]:
        blame = "This is a bug in lpw_mp: a built-in profile must be safe."
    else:
        blame = (f"The strategy {name} ({report['spec']}) is unsafe as written; not a bug "
                 f"in lpw_mp.")
    return f"verdict: UNSAFE: a walker used freed memory ({places}). {blame}"
