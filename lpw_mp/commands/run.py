"""``python -m lpw_mp [run] [options]``: every strategy on the same workload, a report."""

import argparse

from lpw_mp import __version__
from lpw_mp.commands.shell import (PROG, Parser, add_run_options, add_trace_options, finish,
                                   invoked_as, parse_config, written)
from lpw_mp.harness.progress import terminal_progress
from lpw_mp.harness.runner import run
from lpw_mp.harness.signals import deferred_signals
from lpw_mp.results.folders import write_run
from lpw_mp.results.tables import format_terminal
from lpw_mp.results.verdicts import annotate, exit_status

SUMMARY = "run every strategy on one workload and write a report (the default)"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"{invoked_as()} run",
               description="Emulate powerpc lockless page-table walks on real processes and "
                           "measure what each serialisation strategy costs.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_run_options(p)
    add_trace_options(p)
    return p


def main(argv) -> int:
    args, cfg = parse_config(build_parser(), argv)
    show_progress = not (args.quiet or args.json)
    # Signals during the run are the runner's (they end it with an interrupted result); any
    # that arrive after it are held back until the result is written and printed.
    with deferred_signals():
        traces = []
        result = run(cfg, argv=[invoked_as(), *argv],
                     progress=terminal_progress(cfg) if show_progress else None, traces=traces)
        annotate(result)
        files = {trace.info["file"]: trace.write for trace in traces}
        return finish(args, result, lambda doc: write_run(doc, cfg.runs_dir, files=files),
                      lambda folder: format_terminal(result) + "\n\n" + written(
                          folder, "report.md", "result.json", *files),
                      exit_status)
