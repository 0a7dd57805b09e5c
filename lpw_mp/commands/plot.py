"""``python -m lpw_mp plot SWEEP``: draw a sweep's figure again from its ``sweep.json``.

    python -m lpw_mp plot sweep-20261125-231500-1a2b3c
    python -m lpw_mp plot runs/sweep-20261125-231500-1a2b3c/sweep.json -o cpus.png

For a sweep that ran without matplotlib, or to redraw one with a newer lpw_mp: nothing is run.
SWEEP is a sweep folder, its ``sweep.json`` or a sweep id under ``--runs-dir``. The figure
replaces the folder's ``sweep.png`` (or goes to ``-o FILE``) and its path is printed."""

import os

from lpw_mp.commands.shell import Parser, UsageError, invoked_as, load_document
from lpw_mp.results import plot
from lpw_mp.results.formats import SWEEP
from lpw_mp.results.sweeps import problem

SUMMARY = "draw a sweep's figure (sweep.png) again from its sweep.json"


def build_parser() -> Parser:
    p = Parser(prog=f"{invoked_as()} plot",
               description="Draw a sweep's figure again from its sweep.json, without running "
                           "anything: the operation time against the first varied parameter, "
                           "one line per strategy, one panel per value of the second. Needs "
                           f"matplotlib ({plot.INSTALL}).")
    p.add_argument("sweep", metavar="SWEEP",
                   help="a sweep folder, its sweep.json, or a sweep id under --runs-dir")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the PNG to FILE (default: sweep.png in the sweep's folder)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR",
                   help="where sweep ids are looked up (default runs)")
    return p


def draw(sweep: dict, out: str) -> bool:
    """Write the figure to ``out`` through a temporary file beside it, so that a failed or
    interrupted drawing never leaves a truncated PNG in place of a good one. False (nothing
    written) when matplotlib cannot be imported."""
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.{os.getpid()}.tmp")
    try:
        drawn = plot.write_plot(sweep, tmp)
        if drawn:
            os.replace(tmp, out)
        return drawn
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv) -> int:
    args = build_parser().parse_args(argv)
    if not plot.available():
        raise UsageError(f"plot needs matplotlib, which is not installed: {plot.INSTALL}")
    sweep, path = load_document(args.sweep, args.runs_dir, SWEEP)
    wrong = problem(sweep)
    if wrong:
        raise UsageError(f"{path} cannot be drawn: {wrong}")
    out = args.output or os.path.join(os.path.dirname(path), "sweep.png")
    try:
        drawn = draw(sweep, out)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not drawn:  # found, yet it would not import: a broken installation
        raise UsageError(f"plot needs matplotlib, which would not import: {plot.INSTALL}")
    print(out)
    return 0
