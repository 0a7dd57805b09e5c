"""``python -m lpw_mp sweep``: run every strategy over one or two varied parameters.

    python -m lpw_mp sweep --vary cpus=2..128 --memory 1G --strategy all
    python -m lpw_mp sweep --vary memory=64M,256M,1G --vary cpumask=sticky,trim,accurate

Writes ``runs/sweep-<id>/`` with ``sweep.md`` (the table and the fits), ``sweep.json``
(``format: lpw_mp-sweep``) and ``sweep.png`` (the munmap time against the first varied
parameter, one line per strategy; needs the ``plot`` extra). For every numeric parameter it fits
a power law per strategy: the exponent says how the cost grows (1: linearly)."""

import dataclasses
import itertools
import json
import math
import os
import signal
import sys

from tabulate import tabulate
from tqdm import tqdm

from lpw_mp import __version__

from lpw_mp.harness import resources
from lpw_mp.commands.shell import (PROG, Parser, UsageError, add_run_options, finish,
                                  invoked_as, parse_config, parse_float, parse_int)
from lpw_mp.harness.signals import Interrupted, deferred_signals, interruptible
from lpw_mp.harness.config import ConfigError
from lpw_mp.results.fit import format_exponent, power_law
from lpw_mp.harness.hostinfo import host_metadata
from lpw_mp.kernel.machine import CPUMASK_MODES
from lpw_mp.harness.progress import terminal_progress
from lpw_mp.results.folders import write_file, write_folder
from lpw_mp.results.verdicts import annotate, exit_status
from lpw_mp.harness.runner import now, run
from lpw_mp.units import format_duration, format_size, parse_duration, parse_size

SUMMARY = "run the strategies over one or two varied parameters, with fits and a plot"

FORMAT = "lpw_mp-sweep"
FORMAT_VERSION = 1
MAX_VARY = 2
#: A plan is bounded before anything runs: values per --vary, and points in all (README,
#: Options). 64 points of a few strategies each is already hours on a small host.
MAX_VALUES = 32
MAX_POINTS = 64


def _cpumask(text):
    if text not in CPUMASK_MODES:
        raise ValueError(f"unknown cpumask {text!r} (choose from {', '.join(CPUMASK_MODES)})")
    return text


def _rate(x):
    return f"{x:g}/s"


#: Parameters a sweep can vary: Config attribute -> (parse one value, print one value).
PARAMETERS = {
    "cpus": (parse_int, str),
    "memory": (parse_size, format_size),
    "thp_size": (parse_size, format_size),
    "walk_rate": (parse_float, _rate),
    "walk_window": (parse_duration, format_duration),
    "pte_fraction": (parse_float, "{:g}".format),
    "active_fraction": (parse_float, "{:g}".format),
    "cpumask": (_cpumask, str),
}
#: The others are categories: no power law, no log axis.
NUMERIC = {name for name in PARAMETERS if name != "cpumask"}


#: How to print every configuration value that is not just ``str``.
FORMATS = {name: show for name, (_, show) in PARAMETERS.items()}
FORMATS.update(walker_time=format_duration, ipi_timeout=format_duration)


def format_value(name: str, value) -> str:
    """A configuration value as a person would type it (``memory`` 33554432 -> ``32M``)."""
    return FORMATS.get(name, str)(value)


# -- the command line ------------------------------------------------------------------------

def parse_vary(text: str):
    """``NAME=V1,V2,...`` or, for a numeric parameter, ``NAME=LO..HI`` (LO doubled up to HI).

    Returns ``(name, values)`` with ``name`` the Config attribute; UsageError when malformed,
    or when it gives more than ``MAX_VALUES`` values."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not spec.strip():
        raise UsageError(f"--vary {text!r}: expected NAME=V1,V2,... or NAME=LO..HI")
    if name not in PARAMETERS:
        raise UsageError(f"--vary: cannot vary {name!r} (choose from "
                         f"{', '.join(n.replace('_', '-') for n in PARAMETERS)})")
    parse = PARAMETERS[name][0]
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
                           "table, a JSON and a plot, and fit how each strategy's cost grows.")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=VALUES",
                   help="a parameter and its values, e.g. cpus=2,4,8 or cpus=2..128 (doubling) "
                        "or memory=64M..1G; at most two. Names: "
                        + ", ".join(n.replace("_", "-") for n in PARAMETERS))
    add_run_options(p)
    return p


def plan(argv):
    """Parse and check everything before anything runs: ``(args, base config, varied, points)``.

    ``varied`` is ``[(name, values), ...]``; ``points`` is ``[(values dict, Config), ...]``,
    at most ``MAX_POINTS``, each validated and preflighted against the host's limits."""
    args, base = parse_config(build_parser(), argv)
    if not args.vary:
        raise UsageError("sweep needs --vary NAME=V1,V2,... (for example --vary cpus=2..128)")
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


def point_label(values: dict) -> str:
    return " ".join(f"{k.replace('_', '-')}={format_value(k, v)}" for k, v in values.items())


# -- running ---------------------------------------------------------------------------------

def sweep_bar(npoints: int, stream=None):
    """The outer progress bar (one step per sweep point), or None when not on a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    return tqdm(total=npoints, desc="  sweep", unit="point", file=stream, leave=False,
                dynamic_ncols=True)


def _point_record(values: dict, result: dict) -> dict:
    """What sweep.json keeps of one run: its legs without the violation examples."""
    legs = []
    for leg in result["legs"]:
        leg = dict(leg)
        if "violations" in leg:
            leg["violations"] = {k: v for k, v in leg["violations"].items() if k != "examples"}
        legs.append(leg)
    host = result["host"]
    return {"values": values, "status": result["status"], "errors": result["errors"],
            "warnings": result.get("warnings", []),
            "unsafe_violations": result.get("unsafe_violations", 0),
            "host": {"oversubscription": host["oversubscription"],
                     "load_average": host["load_average"]},
            "legs": legs}


def run_sweep(base, varied, points, argv, show_progress: bool) -> dict:
    """Run every point in turn. An interrupt stops the sweep; what ran is kept."""
    sweep = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lpw_mp_version": __version__,
        "command": [f"{invoked_as()} sweep", *argv],
        "started": now(), "finished": None, "status": "complete",
        "config": base.to_dict(),
        "vary": [{"name": name, "values": values} for name, values in varied],
        "host": host_metadata(max(cfg.cpus for _, cfg in points), base.start_method),
        "points": [], "fits": [], "errors": [],
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
    sweep["fits"] = fit_sweep(sweep)
    sweep["finished"] = now()
    return sweep


# -- analysis --------------------------------------------------------------------------------

def strategies_of(sweep: dict) -> list:
    return list(sweep["config"]["strategies"])


def munmap_time(point: dict, strategy: str):
    """The operation time of ``strategy`` at ``point``; None if that leg did not finish."""
    for leg in point["legs"]:
        if leg["strategy"] == strategy and leg.get("status") == "ok":
            return leg["wall_s"]
    return None


def series(sweep: dict, name: str, strategy: str, fixed: dict):
    """``(xs, ys)``: the time of ``strategy`` against parameter ``name`` at the ``fixed``
    values of the other parameter, in the order the sweep ran them."""
    xs, ys = [], []
    for point in sweep["points"]:
        if all(point["values"][k] == v for k, v in fixed.items()):
            xs.append(point["values"][name])
            ys.append(munmap_time(point, strategy))
    return xs, ys


def _groups(sweep: dict, name: str) -> list:
    """Every combination of the other varied parameter's values (``[{}]`` if there is none)."""
    others = [v for v in sweep["vary"] if v["name"] != name]
    return [{o["name"]: value} for o in others for value in o["values"]] or [{}]


def fit_sweep(sweep: dict) -> list:
    """A power law per strategy, per numeric varied parameter, per value of the other one."""
    fits = []
    for v in sweep["vary"]:
        if v["name"] not in NUMERIC:
            continue
        for fixed in _groups(sweep, v["name"]):
            for strategy in strategies_of(sweep):
                xs, ys = series(sweep, v["name"], strategy, fixed)
                fits.append({"strategy": strategy, "parameter": v["name"], "fixed": fixed,
                             **power_law(xs, ys)})
    return fits


# -- output ----------------------------------------------------------------------------------

def _cell(point: dict, strategy: str) -> str:
    for leg in point["legs"]:
        if leg["strategy"] != strategy:
            continue
        if leg.get("status") != "ok":
            return leg.get("status", "?").upper()
        text = format_duration(leg["wall_s"])
        return text + " VIOLATED" if leg.get("safety") == "VIOLATED" else text
    return "-"


def table(sweep: dict, fmt: str) -> str:
    names = [v["name"] for v in sweep["vary"]]
    op = sweep["config"]["op"]
    headers = [n.replace("_", "-") for n in names] + [f"{s} {op}" for s in strategies_of(sweep)]
    rows = [[format_value(n, p["values"][n]) for n in names]
            + [_cell(p, s) for s in strategies_of(sweep)] for p in sweep["points"]]
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True)


def fit_table(sweep: dict, fmt: str) -> str:
    headers = ["strategy", "grows with", "at", "time ~", "points"]
    rows = [[f["strategy"], f["parameter"].replace("_", "-"), point_label(f["fixed"]) or "-",
             format_exponent(f), f["n"]] for f in sweep["fits"]]
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True) if rows else ""


def describe(sweep: dict) -> list:
    c, h = sweep["config"], sweep["host"]
    names = [v["name"] for v in sweep["vary"]]
    fixed = ", ".join(f"{k.replace('_', '-')} {format_value(k, c[k])}"
                      for k in PARAMETERS if k not in names)
    load = h.get("load_average")
    return [" x ".join(f"{v['name'].replace('_', '-')} in "
                       f"{', '.join(format_value(v['name'], x) for x in v['values'])}"
                       for v in sweep["vary"])
            + f": {math.prod(len(v['values']) for v in sweep['vary'])} points",
            f"{c['op']} under {', '.join(c['strategies'])}; fixed: {fixed}, seed {c['seed']}",
            f"host: {h['usable_cores']} usable cores of {h['host_cpus']}, "
            f"Python {h['python']}, up to {h['oversubscription']:g} processes per core"
            + (f", load average {load[0]:.1f} at the start" if load else "")]


def _notes(sweep: dict) -> list:
    out = [f"error: {e}" for e in sweep["errors"]]
    if sweep["unsafe_violations"]:
        out.append(f"SAFETY VIOLATION: safe strategies let walkers use freed memory "
                   f"{sweep['unsafe_violations']} times. This is a bug in lpw_mp.")
    return out


def format_terminal(sweep: dict) -> str:
    parts = describe(sweep) + ["", table(sweep, "simple")]
    fits = fit_table(sweep, "simple")
    if fits:
        parts += ["", "power-law fit of the time (least squares on log-log):", fits]
    notes = _notes(sweep)
    return "\n".join(parts + ([""] + notes if notes else []))


def format_markdown(sweep: dict, plot: str = None) -> str:
    parts = [f"# lpw_mp sweep {sweep.get('sweep_id', '')}".rstrip(), "",
             f"Status: **{sweep['status']}**, started {sweep['started']}, "
             f"finished {sweep['finished']}.", "",
             f"Command: `{' '.join(sweep['command'])}`", ""]
    parts += [f"- {line}" for line in describe(sweep)]
    parts += ["", table(sweep, "github")]
    fits = fit_table(sweep, "github")
    if fits:
        parts += ["", "Power-law fit of the time (least squares on log-log):", "", fits]
    if plot:
        parts += ["", f"![{sweep['config']['op']} time]({plot})"]
    notes = _notes(sweep)
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def _axis_values(name: str, values: list):
    """Plot positions for a parameter's values and whether a log axis fits them."""
    if name not in NUMERIC:
        return list(range(len(values))), False
    positive = all(v > 0 for v in values)
    return list(values), positive and len(values) > 1 and max(values) >= 4 * min(values)


def _leading(y: float) -> int:
    """The leading digit of a positive number (0.0005 -> 5)."""
    return int(round(y / 10 ** math.floor(math.log10(y))))


def write_plot(sweep: dict, path: str) -> bool:
    """Write the PNG: time against the first varied parameter, one panel per value of the
    second. False (nothing written) when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return False
    first = sweep["vary"][0]
    name, values = first["name"], first["values"]
    groups = _groups(sweep, name)
    xpos, logx = _axis_values(name, values)
    where = dict(zip(values, xpos))
    fig = Figure(figsize=(6.4 * min(len(groups), 3), 4.8), layout="constrained")
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    fits = {(f["strategy"], json.dumps(f["fixed"])): f for f in sweep["fits"]
            if f["parameter"] == name}
    for ax, fixed in zip(axes, groups):
        ys_all = []
        for strategy in strategies_of(sweep):
            xs, ys = series(sweep, name, strategy, fixed)
            pts = [(where[x], y) for x, y in zip(xs, ys) if y is not None and y > 0]
            if not pts:
                continue
            ys_all += [y for _, y in pts]
            fit = fits.get((strategy, json.dumps(fixed)))
            label = strategy
            if fit and fit["exponent"] is not None:
                label += f" (x^{fit['exponent']:.2f})"
            ax.plot(*zip(*pts), marker="o", label=label)
        if logx:
            ax.set_xscale("log", base=2 if name == "cpus" else 10)
        if ys_all:
            ax.set_yscale("log")
            # Durations as people read them; of the minor ticks matplotlib would label (on a
            # short axis), only the 2s and 5s, which do not crowd.
            minor = ax.yaxis.get_minor_formatter()
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: format_duration(y)))
            ax.yaxis.set_minor_formatter(FuncFormatter(
                lambda y, pos: format_duration(y) if minor(y, pos) and _leading(y) in (2, 5)
                else ""))
        # Ticks at the swept values, spelt as typed (64M, not 6.7e7).
        ax.set_xticks(xpos, [format_value(name, v) for v in values])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name.replace("_", "-"))
        ax.set_title(point_label(fixed) or f"{sweep['config']['op']} time vs "
                                            f"{name.replace('_', '-')}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel(f"{sweep['config']['op']} time")
    fig.savefig(path, dpi=100)
    return True


def write_sweep(sweep: dict, runs_dir: str) -> tuple:
    """Write ``sweep.json``, ``sweep.md`` and (with matplotlib) ``sweep.png`` into a new
    sweep folder. Returns ``(folder, plotted)``."""
    plotted = False

    def write(stage, folder_id):
        nonlocal plotted
        sweep["sweep_id"] = folder_id
        plotted = write_plot(sweep, os.path.join(stage, "sweep.png"))
        write_file(os.path.join(stage, "sweep.json"), json.dumps(sweep, indent=2) + "\n")
        write_file(os.path.join(stage, "sweep.md"),
                   format_markdown(sweep, "sweep.png" if plotted else None))

    folder = write_folder(runs_dir, "sweep-", write)
    return folder, plotted


def main(argv) -> int:
    args, base, varied, points = plan(argv)
    show_progress = not (args.quiet or args.json)
    plotted = None  # None: no folder was written, so there is no plot to speak of

    def write(document):
        nonlocal plotted
        folder, plotted = write_sweep(document, base.runs_dir)
        return folder

    def render(folder):
        return format_terminal(sweep) + (
            f"\n\nsweep: {folder}/sweep.md  json: {folder}/sweep.json"
            + (f"  plot: {folder}/sweep.png" if plotted else ""))

    with deferred_signals():
        sweep = run_sweep(base, varied, points, argv, show_progress)
        status = finish(args, sweep, write, render, exit_status)
    if plotted is False:
        print(f"{PROG}: the plot needs matplotlib: pip install '.[plot]'", file=sys.stderr)
    return status
