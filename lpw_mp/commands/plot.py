"""``python -m lpw_mp plot SWEEP``: draw a sweep's figure again from its ``sweep.json``.

    python -m lpw_mp plot sweep-20261125-231500-1a2b3c
    python -m lpw_mp plot runs/sweep-20261125-231500-1a2b3c/sweep.json -o cpus.png

For a sweep that ran without matplotlib, to redraw one with a newer lpw_mp, or to draw another
figure of its legs (``--metric walker_p50``): nothing is run. SWEEP is a sweep folder, its
``sweep.json`` or a sweep id under ``--runs-dir``. The figure replaces the folder's
``sweep.png`` (or goes to ``-o FILE``) and its path is printed."""

import os

from lpw_mp.commands.shell import Parser, UsageError, invoked_as, load_document
from lpw_mp.results import plot
from lpw_mp.results.folders import write_through_temp
from lpw_mp.results.formats import SWEEP
from lpw_mp.results.repeats import figure_key
from lpw_mp.results.sweeps import (WALKER_SIDE, has_values, metric_problem, metrics_of, problem,
                                   strategies_of)

SUMMARY = "draw a sweep's figure (sweep.png) again from its sweep.json"


def build_parser() -> Parser:
    p = Parser(prog=f"{invoked_as()} plot",
               description="Draw a sweep's figure again from its sweep.json, without running "
                           "anything: a figure (the operation time unless --metric says) "
                           "against the first varied parameter, medians with the interval of "
                           "the repeats, one line per strategy with its fitted power law, one "
                           f"panel per value of the second. Needs matplotlib ({plot.INSTALL}).")
    p.add_argument("sweep", metavar="SWEEP",
                   help="a sweep folder, its sweep.json, or a sweep id under --runs-dir")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the PNG to FILE (default: in the sweep's folder, sweep.png, or "
                        "sweep-FIGURE.png for a --metric other than the sweep's own)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR",
                   help="where sweep ids are looked up (default runs)")
    p.add_argument("--metric", type=figure_key, metavar="FIGURE",
                   help="the figure to draw: " + ", ".join(metrics_of(["ipi"]))
                        + " (the last three, ratios to ipi, need ipi in the sweep; default: "
                          "the sweep's own, time unless it ran with --metric)")
    return p


def draw(sweep: dict, out: str, metric: str = None) -> bool:
    """Write the figure to ``out`` through a temporary file beside it, so that a failed or
    interrupted drawing never leaves a truncated PNG in place of a good one. False (nothing
    written) when matplotlib cannot be imported."""
    return write_through_temp(out, lambda tmp: plot.write_plot(sweep, tmp, metric))


def main(argv) -> int:
    args = build_parser().parse_args(argv)
    if not plot.available():
        raise UsageError(f"plot needs matplotlib, which is not installed: {plot.INSTALL}")
    sweep, path = load_document(args.sweep, args.runs_dir, SWEEP)
    wrong = problem(sweep)
    if wrong:
        raise UsageError(f"{path} cannot be drawn: {wrong}")
    metric = args.metric or sweep["metric"]
    wrong = metric_problem(metric, strategies_of(sweep))
    if wrong:
        raise UsageError(wrong)
    if not has_values(sweep, metric):
        raise UsageError(f"{path} has no value of {metric} to draw"
                         + (" (it ran with --walker-time 0)"
                            if metric in WALKER_SIDE and not sweep["config"]["walker_time"]
                            else ""))
    # Another figure than the sweep's own goes beside its sweep.png, not over it.
    name = "sweep.png" if metric == sweep["metric"] else f"sweep-{metric}.png"
    out = args.output or os.path.join(os.path.dirname(path), name)
    try:
        drawn = draw(sweep, out, metric)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not drawn:  # found, yet it would not import: a broken installation
        raise UsageError(f"plot needs matplotlib, which would not import: {plot.INSTALL}")
    print(out)
    return 0
