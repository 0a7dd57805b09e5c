"""``python -m lpw_mp sweep``: run every strategy over one or two varied parameters.

    python -m lpw_mp sweep --vary cpus=2..128 --memory 1G --strategy all
    python -m lpw_mp sweep --vary memory=64M,256M,1G --vary cpumask=sticky,trim,accurate

Writes ``runs/sweep-<id>/`` with ``sweep.md`` (the table and the fits), ``sweep.json``
(``format: lpw_mp-sweep``) and ``sweep.png`` (the figure against the first varied parameter,
one line per strategy; needs the ``plot`` extra). The figure is the operation time unless
``--metric`` names another; with ``--repeat`` each is the median of the repeats, with its
interval. For every numeric parameter it fits a power law per strategy over every sample: the
exponent, with its interval, says how the figure grows (1: linearly).

This module parses, plans and runs the sweep; the fits and tables are ``results/sweeps.py``'s,
the figure ``results/plot.py``'s and the folder ``results/folders.py``'s."""

import dataclasses
import itertools
import math
import signal
import sys

from tqdm import tqdm

from lpw_mp import __version__

from lpw_mp.harness import resources
from lpw_mp.commands.shell import (PROG, Parser, UsageError, add_run_options, finish,
                                  invoked_as, parse_config, parse_float, parse_int,
                                  written)
from lpw_mp.harness.signals import Interrupted, deferred_signals, interruptible
from lpw_mp.harness.config import ConfigError
from lpw_mp.harness.hostinfo import host_metadata
from lpw_mp.kernel.machine import CPUMASK_MODES
from lpw_mp.harness.progress import terminal_progress
from lpw_mp.results import plot
from lpw_mp.results.folders import write_sweep
from lpw_mp.results.formats import SWEEP
from lpw_mp.results.repeats import figure_key
from lpw_mp.results.sweeps import (NUMERIC, PARAMETERS, WALKER_SIDE, fit_sweep, format_terminal,
                                   metric_problem, metrics_of, point_label)
from lpw_mp.results.verdicts import annotate, exit_status
from lpw_mp.harness.runner import now, run
from lpw_mp.units import parse_duration, parse_size

SUMMARY = "run the strategies over one or two varied parameters, with fits and a plot"

MAX_VARY = 2
#: A plan is bounded before anything runs: values per --vary, and points in all (README,
#: Options). 64 points of a few strategies each is already hours on a small host.
MAX_VALUES = 32
MAX_POINTS = 64


def _cpumask(text):
    if text not in CPUMASK_MODES:
        raise ValueError(f"unknown cpumask {text!r} (choose from {', '.join(CPUMASK_MODES)})")
    return text


#: How one value of each parameter a sweep can vary (``results.sweeps.PARAMETERS``) is parsed.
PARSERS = {
    "cpus": parse_int,
    "memory": parse_size,
    "thp_size": parse_size,
    "walk_rate": parse_float,
    "walk_window": parse_duration,
    "pte_fraction": parse_float,
    "active_fraction": parse_float,
    "cpumask": _cpumask,
}


# -- the command line ------------------------------------------------------------------------

def parse_vary(text: str):
    """``NAME=V1,V2,...`` or, for a numeric parameter, ``NAME=LO..HI`` (LO doubled up to HI).

    Returns ``(name, values)`` with ``name`` the Config attribute; UsageError when malformed,
    or when it gives more than ``MAX_VALUES`` values."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not spec.strip():
        raise UsageError(f"--vary {text!r}: expected NAME=V1,V2,... or NAME=LO..HI")
    if name not in PARSERS:
        raise UsageError(f"--vary: cannot vary {name!r} (choose from "
                         f"{', '.join(n.replace('_', '-') for n in PARAMETERS)})")
    parse = PARSERS[name]
    try:
        if ".." in spec and name in NUMERIC:
            values = _doubling(parse, spec)
        else:
            parts = [part.strip() for part in spec.split(",")]
            # Counted before parsing: a plan's size is bounded before any work on it.
            if len(parts) > MAX_VALUES:
                raise ValueError(f"{len(parts)} values, more than the {MAX_VALUES} a --vary "
                                 f"takes")
            if "" in parts:
                raise ValueError(f"{spec!r} has an empty value")
            values = [parse(part) for part in parts]
    except ValueError as exc:
        raise UsageError(f"--vary {name.replace('_', '-')}: {exc}") from None
    if len(set(values)) != len(values):
        raise UsageError(f"--vary {name.replace('_', '-')}: a value is repeated")
    return name, values


def _doubling(parse, spec: str) -> list:
    """LO, 2 LO, 4 LO... up to HI; ValueError past ``MAX_VALUES`` values, found as they are
    made (``1e-300..1`` would be a thousand)."""
    lo, hi = (parse(part.strip()) for part in spec.split("..", 1))
    if not 0 < lo <= hi:  # parse refuses inf and nan, so the range is finite
        raise ValueError(f"range {spec!r} must run from a positive value up")
    values = []
    while lo <= hi:
        if len(values) == MAX_VALUES:
            raise ValueError(f"range {spec!r} doubles to more than the {MAX_VALUES} values a "
                             f"--vary takes")
        values.append(lo)
        lo *= 2
    return values


def build_parser() -> Parser:
    p = Parser(prog=f"{invoked_as()} sweep",
               description="Run the strategies over one or two varied parameters; write a "
                           "table, a JSON and a plot (the plot needs matplotlib: "
                           f"{plot.INSTALL}), and fit how each strategy's cost grows.")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=VALUES",
                   help="a parameter and its values, e.g. cpus=2,4,8 or cpus=2..128 (doubling) "
                        f"or memory=64M..1G. At most {MAX_VARY} --vary of at most {MAX_VALUES} "
                        f"values each (a range counts its doublings), and at most {MAX_POINTS} "
                        "points in all (the product of the counts). Names: "
                        + ", ".join(n.replace("_", "-") for n in PARAMETERS))
    p.add_argument("--metric", type=figure_key, default="time", metavar="FIGURE",
                   help="the figure the table, the fits and the plot show: "
                        + ", ".join(metrics_of(["ipi"]))
                        + " (the last three, ratios to ipi, need ipi among the strategies; "
                          "default time)")
    add_run_options(p)
    return p


def plan(argv):
    """Parse and check everything before anything runs: ``(args, base config, varied, points)``.

    ``varied`` is ``[(name, values), ...]``; ``points`` is ``[(values dict, Config), ...]``,
    at most ``MAX_POINTS``, each validated and preflighted against the host's limits."""
    args, base = parse_config(build_parser(), argv)
    if not args.vary:
        raise UsageError("sweep needs --vary NAME=V1,V2,... (for example --vary cpus=2..128)")
    wrong = metric_problem(args.metric, base.strategies)
    if wrong:
        raise UsageError(wrong)
    if args.metric in WALKER_SIDE and not base.walker_time:
        raise UsageError(f"--metric {args.metric} is a figure of the walker phase, which "
                         f"--walker-time 0 skips")
    if len(args.vary) > MAX_VARY:
        raise UsageError(f"sweep varies at most {MAX_VARY} parameters, not {len(args.vary)}")
    varied = [parse_vary(text) for text in args.vary]
    if len({name for name, _ in varied}) != len(varied):
        raise UsageError(f"--vary {varied[0][0].replace('_', '-')} is given twice")
    npoints = math.prod(len(values) for _, values in varied)
    if npoints > MAX_POINTS:
        raise UsageError(f"sweep of {' x '.join(str(len(v)) for _, v in varied)} = {npoints} "
                         f"points: more than the {MAX_POINTS} a sweep takes")
    host = resources.probe()
    points = []
    for combo in itertools.product(*(values for _, values in varied)):
        values = dict(zip((name for name, _ in varied), combo))
        try:
            cfg = dataclasses.replace(base, **values).validate()
            # The base passed the preflight; a point with more CPUs or memory may not.
            resources.preflight(cfg, host)
        except ConfigError as exc:
            raise UsageError(f"sweep point {point_label(values)}: {exc}") from None
        points.append((values, cfg))
    return args, base, varied, points


# -- running ---------------------------------------------------------------------------------

def sweep_bar(npoints: int, stream=None):
    """The outer progress bar (one step per sweep point), or None when not on a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    return tqdm(total=npoints, desc="  sweep", unit="point", file=stream, leave=False,
                dynamic_ncols=True)


def _without_examples(row: dict) -> dict:
    row = dict(row)
    if "violations" in row:
        row["violations"] = {k: v for k, v in row["violations"].items() if k != "examples"}
    return row


def _point_record(values: dict, result: dict) -> dict:
    """What sweep.json keeps of one run: its legs and their samples, without the violation
    examples."""
    legs = []
    for leg in result["legs"]:
        leg = _without_examples(leg)
        if "samples" in leg:
            leg["samples"] = [_without_examples(sample) for sample in leg["samples"]]
        legs.append(leg)
    host = result["host"]
    return {"values": values, "status": result["status"], "errors": result["errors"],
            "warnings": result.get("warnings", []),
            "unsafe_violations": result.get("unsafe_violations", 0),
            "host": {"oversubscription": host["oversubscription"],
                     "load_average": host["load_average"]},
            "legs": legs}


def run_sweep(base, varied, points, argv, show_progress: bool, metric: str = "time") -> dict:
    """Run every point in turn; the table and fits are of figure ``metric``. An interrupt
    stops the sweep; what ran is kept."""
    sweep = {
        **SWEEP.header(), "lpw_mp_version": __version__,
        "command": [f"{invoked_as()} sweep", *argv],
        "started": now(), "finished": None, "status": "complete",
        "config": base.to_dict(),
        "vary": [{"name": name, "values": values} for name, values in varied],
        "host": host_metadata(max(cfg.cpus for _, cfg in points), base.start_method),
        "metric": metric, "points": [], "fits": [], "errors": [],
    }

    # runner.run handles signals during a point; interruptible catches one between points.
    outer = sweep_bar(len(points)) if show_progress else None
    try:
        with interruptible():
            for values, cfg in points:
                if outer is not None:
                    outer.set_postfix_str(point_label(values))
                result = run(cfg, argv=sweep["command"],
                             progress=terminal_progress(cfg) if show_progress else None)
                annotate(result)
                sweep["points"].append(_point_record(values, result))
                if outer is not None:
                    outer.update(1)
                if result["status"] == "interrupted":
                    sweep["status"], sweep["signal"] = "interrupted", result["signal"]
                    break
                if result["status"] == "failed":
                    sweep["status"] = "failed"
                    sweep["errors"] += [f"{point_label(values)}: {e}" for e in result["errors"]]
    except Interrupted as exc:
        sweep["status"], sweep["signal"] = "interrupted", signal.Signals(exc.signum).name
    finally:
        if outer is not None:
            outer.close()
    if sweep["status"] == "interrupted":
        sweep["errors"].append(f"interrupted by {sweep['signal']}: the sweep stopped at point "
                               f"{max(1, len(sweep['points']))} of {len(points)}")
    sweep["unsafe_violations"] = sum(p["unsafe_violations"] for p in sweep["points"])
    sweep["fits"] = fit_sweep(sweep, sweep["metric"])
    sweep["finished"] = now()
    return sweep


def _no_plot(what: str) -> str:
    """The one line that says a sweep has no figure, how to get matplotlib and how to draw
    the figure afterwards."""
    return (f"{PROG}: {what} no sweep.png ({plot.INSTALL} adds matplotlib; "
            f"`{invoked_as()} plot SWEEP` then draws it from sweep.json)")


def main(argv) -> int:
    args, base, varied, points = plan(argv)
    show_progress = not (args.quiet or args.json)
    # Said before the points run, which can take hours, not found out at the end; the table
    # and sweep.json do not need matplotlib, so the sweep runs all the same.
    can_plot = plot.available()
    if not can_plot:
        print(_no_plot("matplotlib is not installed: this sweep will write"), file=sys.stderr)
    plotted = None  # None: no folder was written, so there is no plot to speak of

    def write(document):
        nonlocal plotted
        folder, plotted = write_sweep(document, base.runs_dir, draw=can_plot)
        return folder

    def render(folder):
        return format_terminal(sweep) + "\n\n" + written(
            folder, "sweep.md", "sweep.json", *(["sweep.png"] if plotted else []))

    with deferred_signals():
        sweep = run_sweep(base, varied, points, argv, show_progress, args.metric)
        status = finish(args, sweep, write, render, exit_status)
    # Found, yet it would not import (a broken installation); a missing one was said above.
    if can_plot and plotted is False:
        print(_no_plot("matplotlib would not import: this sweep wrote"), file=sys.stderr)
    return status
