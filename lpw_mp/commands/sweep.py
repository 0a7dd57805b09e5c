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
import os
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
from lpw_mp.results.folders import start_sweep, write_sweep
from lpw_mp.results.manifests import Manifest, ManifestError
from lpw_mp.results.formats import SWEEP
from lpw_mp.results.repeats import figure_key
from lpw_mp.results.sweeps import (NUMERIC, PARAMETERS, WALKER_SIDE, fit_sweep, format_terminal,
                                   metric_problem, metrics_of, point_label)
from lpw_mp.results.verdicts import annotate, exit_status
from lpw_mp.harness.cluster import ClusterError
from lpw_mp.harness.runner import leg_not_run, now, run
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
    p.add_argument("--resume", metavar="DIR",
                   help="complete the sweep of folder DIR, cut short: run the points its "
                        "manifest.json has not done, then write its documents (with no other "
                        "option but -q, --json and the cluster's)")
    add_run_options(p)
    add_cluster_options(p)
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


#: What a point keeps of the host it ran on: enough to tell hosts apart (``sweep --cluster``
#: spreads points over hosts) and to read its figures (oversubscription, load).
HOST_KEYS = ("hostname", "cpu_model", "usable_cores", "memory_bytes", "oversubscription",
             "load_average")


def _point_record(values: dict, result: dict) -> dict:
    """What sweep.json keeps of one run: its legs and their samples, without the violation
    examples, and where it ran."""
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
            "host": {key: host.get(key) for key in HOST_KEYS},
            "legs": legs}


def _lost_record(values: dict, strategies: list, error: str) -> dict:
    """The record of a point that never returned a result (its host was lost twice): its
    legs not run."""
    return {"values": values, "status": "failed", "errors": [error], "warnings": [],
            "unsafe_violations": 0, "host": None,
            "legs": [leg_not_run(spec) for spec in strategies]}


#: A point's state in the manifest, from its run's status.
STATE_OF = {"complete": "done", "failed": "failed", "interrupted": "interrupted"}


class Points:
    """The sweep's points as they end, in the manifest and in the sweep document: records
    are written as they come (in any order, from a cluster), and the document lists them in
    the plan's order. A manifest that can no longer be written (the folder went away) is
    said once; the sweep goes on, and its document is printed at the end."""

    def __init__(self, sweep: dict, manifest, points: list):
        self.sweep, self.manifest, self.points = sweep, manifest, points
        self.unsaved = None

    def ended(self, index: int, result=None, error=None) -> str:
        """Point ``index`` ended with ``result`` (a run's, annotated), or lost with ``error``;
        its state."""
        values, cfg = self.points[index]
        if result is not None:
            record = _point_record(values, result)
            state = STATE_OF[result["status"]]
            errors = result["errors"]
        else:
            record = _lost_record(values, cfg.strategies, error)
            state, errors = "failed", [error]
        if state == "failed":
            self.sweep["status"] = "failed"
            self.sweep["errors"] += [f"{point_label(values)}: {e}" for e in errors]
        try:
            self.manifest.ended(index, state, record, error)
        except OSError as exc:
            if self.unsaved is None:
                self.unsaved = str(exc)
                print(f"{PROG}: warning: cannot update the sweep's manifest ({exc}): the sweep "
                      f"goes on, but cannot be resumed", file=sys.stderr)
        return state

    def records(self) -> list:
        return [p["record"] for p in self.manifest.points if p["record"] is not None]


def run_sweep(base, varied, points, manifest, argv, show_progress: bool, metric: str = "time",
              cluster=None, held=()) -> dict:
    """Run every point the manifest has not done, here one after another or on ``cluster``
    (a ``harness.cluster.Cluster``), recording each in the manifest as it ends; the table and
    fits are of figure ``metric``. An interrupt stops the sweep; what ran is kept, and the
    manifest says what ``--resume`` must still run. A signal already ``held`` runs none."""
    sweep = {
        **SWEEP.header(), "lpw_mp_version": __version__,
        "command": [f"{invoked_as()} sweep", *argv],
        "started": now(), "finished": None, "status": "complete",
        "config": base.to_dict(),
        "vary": [{"name": name, "values": values} for name, values in varied],
        "host": host_metadata(max(cfg.cpus for _, cfg in points), base.start_method),
        "metric": metric, "points": [], "fits": [], "errors": [],
    }
    done = Points(sweep, manifest, points)
    todo = manifest.todo()
    outer = sweep_bar(len(todo)) if show_progress else None
    try:
        with interruptible():
            if held:
                raise Interrupted(held[0])
            if cluster is not None:
                _on_cluster(cluster, done, todo, sweep["command"], outer)
            else:
                _here(done, todo, sweep["command"], outer, show_progress)
    except Interrupted as exc:
        sweep["status"], sweep["signal"] = "interrupted", signal.Signals(exc.signum).name
    except ClusterError as exc:  # the scheduler went away: what ended is kept
        sweep["status"] = "failed"
        sweep["errors"].append(str(exc))
    finally:
        if outer is not None:
            outer.close()
    left = len(manifest.todo())
    if sweep["status"] == "interrupted":
        sweep["errors"].append(f"interrupted by {sweep['signal']}: {left} of {len(points)} "
                               f"points left to run (sweep --resume runs them)")
    sweep["points"] = done.records()
    sweep["unsafe_violations"] = sum(p["unsafe_violations"] for p in sweep["points"])
    sweep["fits"] = fit_sweep(sweep, sweep["metric"])
    sweep["finished"] = now()
    return sweep


def _here(done: Points, todo: list, command: list, outer, show_progress: bool) -> None:
    """The points one after another in this process (the default)."""
    for index in todo:
        values, cfg = done.points[index]
        if outer is not None:
            outer.set_postfix_str(point_label(values))
        result = run(cfg, argv=command,
                     progress=terminal_progress(cfg) if show_progress else None)
        annotate(result)
        state = done.ended(index, result)
        if outer is not None:
            outer.update(1)
        if state == "interrupted":
            done.sweep["status"] = "interrupted"
            done.sweep["signal"] = result["signal"]
            return


def _on_cluster(cluster, done: Points, todo: list, command: list, outer) -> None:
    """The points on the cluster's hosts, one per host at a time (``harness.cluster``)."""
    def ended(index, outcome):
        if outcome["status"] == "ok":
            done.ended(index, outcome["result"])
        else:
            done.ended(index, error=outcome["error"])
        if outer is not None:
            outer.update(1)
    cluster.run_points([(index, done.points[index][1].to_dict(), command) for index in todo],
                       ended)


def _no_plot(what: str) -> str:
    """The one line that says a sweep has no figure, how to get matplotlib and how to draw
    the figure afterwards."""
    return (f"{PROG}: {what} no sweep.png ({plot.INSTALL} adds matplotlib; "
            f"`{invoked_as()} plot SWEEP` then draws it from sweep.json)")


def main(argv) -> int:
    if any(arg == "--resume" or arg.startswith("--resume=") for arg in argv):
        return resume(argv)
    args, base, varied, points = plan(argv)
    cluster = connect_cluster(args)
    manifest = Manifest.new(argv, points, [f"{invoked_as()} sweep", *argv])
    # A signal while the folder is made waits for it, then ends the sweep before its first
    # point: the folder is there to --resume, and the sweep says where it is.
    with deferred_signals() as held:
        try:
            start_sweep(manifest, base.runs_dir)
        except OSError as exc:
            if cluster is not None:
                cluster.close()
            raise UsageError(f"cannot make a sweep folder in {base.runs_dir}: "
                             f"{exc.strerror or exc}") from None
        return execute(args, base, varied, points, manifest, argv, cluster, held)


def resume(argv) -> int:
    """``sweep --resume DIR``: plan the sweep of DIR's manifest again, run the points it has
    not done, and write its documents."""
    p = Parser(prog=f"{invoked_as()} sweep --resume",
               description="Complete a sweep cut short: run the points its manifest has not "
                           "done, then write its sweep.json, sweep.md and sweep.png.")
    p.add_argument("--resume", required=True, metavar="DIR", help="the sweep's folder")
    add_cluster_options(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--quiet", "-q", action="store_true")
    out.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        manifest = Manifest.load(args.resume)
    except ManifestError as exc:
        raise UsageError(str(exc)) from None
    plan_args, base, varied, points = plan(manifest.doc["argv"])
    if [pt["values"] for pt in manifest.points] != [values for values, _ in points]:
        raise UsageError(f"--resume {args.resume}: its points are not the ones its command "
                         f"plans now (written by another lpw_mp?)")
    if not manifest.todo():
        print(f"{PROG}: every point of {args.resume} is done; writing its documents again",
              file=sys.stderr)
    base.runs_dir = os.path.dirname(os.path.abspath(args.resume))
    plan_args.quiet, plan_args.json = args.quiet, args.json
    plan_args.cluster = args.cluster
    for name in ("tls_ca_file", "tls_cert", "tls_key"):
        setattr(plan_args, name, getattr(args, name))
    cluster = connect_cluster(plan_args)
    return execute(plan_args, base, varied, points, manifest, manifest.doc["argv"], cluster)


def execute(args, base, varied, points, manifest, argv, cluster, held=()) -> int:
    """Run the sweep's points, write its documents into its folder and print the outcome;
    none if a signal is already ``held`` (it ends the process once the folder is written)."""
    show_progress = not (args.quiet or args.json)
    # Said before the points run, which can take hours, not found out at the end; the table
    # and sweep.json do not need matplotlib, so the sweep runs all the same.
    can_plot = plot.available()
    if not can_plot:
        print(_no_plot("matplotlib is not installed: this sweep will write"), file=sys.stderr)
    plotted = None  # None: no folder was written, so there is no plot to speak of
    if cluster is not None:
        _say_hosts(cluster, len(manifest.todo()), quiet=args.quiet or args.json)

    def write(document):
        nonlocal plotted
        plotted = write_sweep(document, manifest.folder, draw=can_plot)
        return manifest.folder

    def render(folder):
        text = format_terminal(sweep) + "\n\n" + written(
            folder, "sweep.md", "sweep.json", *(["sweep.png"] if plotted else []))
        if manifest.todo():
            text += (f"\n{len(manifest.todo())} points not done: `{invoked_as()} sweep "
                     f"--resume {folder}` runs them")
        return text

    try:
        with deferred_signals():
            sweep = run_sweep(base, varied, points, manifest, argv, show_progress, args.metric,
                              cluster, held)
            status = finish(args, sweep, write, render, exit_status)
    finally:
        if cluster is not None:
            cluster.close()
    # Found, yet it would not import (a broken installation); a missing one was said above.
    if can_plot and plotted is False:
        print(_no_plot("matplotlib would not import: this sweep wrote"), file=sys.stderr)
    return status


def _say_hosts(cluster, npoints: int, quiet: bool) -> None:
    """Where the points go; and, always, a warning when a host has more than one worker:
    each declares host=1, so that host may run two points at once, which spoils both."""
    hosts = cluster.describe()
    if not quiet:
        print(f"{PROG}: {npoints} point{'s' if npoints != 1 else ''} on {len(hosts)} "
              f"host{'s' if len(hosts) != 1 else ''}: {', '.join(hosts)}", file=sys.stderr)
    for host in hosts:
        workers = sum(1 for name in cluster.hosts.values() if name == host)
        if workers > 1:
            print(f"{PROG}: warning: {workers} workers on host {host}, each declaring host=1: "
                  f"it may run {workers} points at once, each timing the other (start one "
                  f"worker per host)", file=sys.stderr)


def add_cluster_options(p) -> None:
    """``--cluster`` and the TLS files of the engine (README, "Sweeps on a cluster")."""
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the points on an existing dask.distributed scheduler, e.g. "
                        "tcp://10.0.0.5:8786 or tls://...: one point per worker at a time, "
                        "each worker declaring the resource host=1 (needs "
                        "pip install 'lpw_mp[cluster]')")
    p.add_argument("--tls-ca-file", metavar="FILE",
                   help="with --cluster: the CA that signed the scheduler's certificate")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="with --cluster: this client's certificate")
    p.add_argument("--tls-key", metavar="FILE",
                   help="with --cluster: this client's private key")


def connect_cluster(args):
    """The cluster ``--cluster`` names, connected and checked, or None; a UsageError (one
    line, exit 2) before anything runs if it cannot be used."""
    tls = [args.tls_ca_file, args.tls_cert, args.tls_key]
    if args.cluster is None:
        if any(tls):
            raise UsageError("--tls-ca-file, --tls-cert and --tls-key only apply with "
                             "--cluster")
        return None
    from lpw_mp.harness import cluster  # only with --cluster: the extra may be missing
    try:
        return cluster.connect(args.cluster, cluster.security_from(*tls))
    except cluster.ClusterError as exc:
        raise UsageError(str(exc)) from None
