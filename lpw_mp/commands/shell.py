"""What every command shares: the one-line usage error, the parser, the options of a run and
their validation against the host, and ``finish``, the one end of every command that writes a
result, and ``load_document``, which reads back what such a command wrote. Every usage error is
one line on stderr and exit status 2, before anything is started or written."""

import argparse
import json
import os
import re
import sys

from lpw_mp.harness.config import (MAX_REPEAT, START_METHODS, TRACE_WINDOWS, Config,
                                   ConfigError)
from lpw_mp.harness.plugins import FORMS, parse_strategies, strategy_class
from lpw_mp.harness.hostinfo import usable_cores
from lpw_mp.harness.resources import preflight, sustainable_walk_rate
from lpw_mp.kernel.coordinator import OPS
from lpw_mp.kernel.cpu import WALKERS
from lpw_mp.kernel.machine import CPUMASK_MODES
from lpw_mp.kernel.memory_model import MODELS
from lpw_mp.kernel.strategies import STRATEGIES
from lpw_mp.results.formats import FORMATS, Format, FormatError
# parse_int and parse_float are imported from here by the subcommands.
from lpw_mp.units import parse_duration, parse_float, parse_int, parse_size

PROG = "lpw_mp"


def invoked_as() -> str:
    """How the user started lpw_mp, for usage lines and the recorded command: the installed
    ``lpw_mp`` script, or ``python -m lpw_mp`` (anything else, a test runner say)."""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return argv0 if argv0 == PROG else f"python -m {PROG}"


class UsageError(Exception):
    """Bad command line: reported on one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse takes "-inf" (and "-1e3") for an option unless it looks like a negative
        # number; let every signed number reach the option's own check and message.
        self._negative_number_matcher = re.compile(
            r"^-(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?$|^-(?:inf|infinity|nan)$",
            re.IGNORECASE)

    def error(self, message):
        raise UsageError(message)


def typed(fn, what):
    """An argparse type from a parser of ours: its ValueError becomes the usage error."""
    def convert(text):
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = what
    return convert


def add_run_options(p: argparse.ArgumentParser) -> None:
    d = Config()
    p.add_argument("--cpus", type=typed(parse_int, "cpus"), default=d.cpus,
                   help=f"simulated CPUs, one OS process each (default {d.cpus})")
    p.add_argument("--memory", type=typed(parse_size, "size"), default=d.memory,
                   help="size of the THP-mapped region, K/M/G/T suffixes (default 8G)")
    p.add_argument("--thp-size", type=typed(parse_size, "size"), default=d.thp_size,
                   help="THP (PMD) size, a power of two (default 2M)")
    p.add_argument("--strategy", type=typed(parse_strategies, "strategy"),
                   default=d.strategies, dest="strategies",
                   help=f"comma-separated kernel profiles from {', '.join(STRATEGIES)}, or "
                        f"all (the built-ins only); rcu is an alias of v5.8; mixed with them, "
                        f"strategies of your own: {FORMS} (README, 'Bring your own "
                        f"strategy') (default {','.join(d.strategies)})")
    p.add_argument("--op", choices=OPS, default=d.op,
                   help="operation the coordinator performs over the region (default munmap)")
    p.add_argument("--ops", type=typed(parse_int, "ops"), default=d.mixed_ops, dest="mixed_ops",
                   help="operations for --op mixed (default: one per THP)")
    p.add_argument("--walk-rate", type=typed(parse_float, "rate"), default=None,
                   help=f"lockless walks per second per active CPU (default {d.walk_rate:g}: "
                        f"a lightly loaded guest; lower when the host's cores cannot sustain "
                        f"it for so many CPUs, which the run then says)")
    p.add_argument("--walk-window", type=typed(parse_duration, "duration"),
                   default=d.walk_window,
                   help="how long IRQs stay off per walk, e.g. 20us, 1ms (default 20us)")
    p.add_argument("--pte-fraction", type=typed(parse_float, "fraction"), default=d.pte_fraction,
                   help=f"fraction of THP slots mapped by a PTE page (default {d.pte_fraction})")
    p.add_argument("--cpumask", choices=CPUMASK_MODES, default=d.cpumask,
                   help="mm_cpumask maintenance: sticky (powerpc < v5.12), trim (v5.12), "
                        "accurate (x86) (default sticky)")
    p.add_argument("--walker", choices=WALKERS, default=d.walker,
                   help="walker discipline for every strategy: hold, read-once or recheck "
                        "(default: each strategy's own, as its kernel era walks)")
    p.add_argument("--active-fraction", type=typed(parse_float, "fraction"),
                   default=d.active_fraction,
                   help="fraction of CPUs running the process; the rest are idle (default 1)")
    p.add_argument("--batch-fail-rate", type=typed(parse_float, "fraction"),
                   default=d.batch_fail_rate,
                   help="probability that tlb_remove_table cannot allocate its batch page and "
                        "frees the table at once after an IPI to every other CPU "
                        "(tlb_remove_table_one; default 0)")
    p.add_argument("--walker-time", type=typed(parse_duration, "duration"),
                   default=d.walker_time,
                   help="per strategy, how long the CPUs walk with no updater running to "
                        "measure the walker-side cost (default 1s; 0 skips it)")
    p.add_argument("--repeat", type=typed(parse_int, "repeat"), default=d.repeat,
                   help="run every strategy this many times, interleaved (ABCABC), each on a "
                        "fresh machine; the tables show medians with intervals "
                        f"(default {d.repeat}; 1 to {MAX_REPEAT})")
    p.add_argument("--memory-model", choices=MODELS, default=d.memory_model,
                   help="how the strategies' shared-memory accesses are ordered: sc (in "
                        "program order), tso (x86: stores wait in a store buffer), weak "
                        "(POWER: stores and loads reorder unless a barrier forbids it); "
                        "default sc, the one measured")
    p.add_argument("--seed", type=typed(parse_int, "seed"), default=d.seed,
                   help="seed of the page-table layout and the walk addresses")
    p.add_argument("--ipi-timeout", type=typed(parse_duration, "duration"),
                   default=d.ipi_timeout,
                   help="bound on every wait: a CPU that does not acknowledge an IPI or pass "
                        "a quiescent state, a lock not released, or a coordinator that makes "
                        "no progress within this ends the run, naming the culprit "
                        "(default 10s, 10ms to 1h)")
    p.add_argument("--start-method", choices=START_METHODS, default=d.start_method,
                   help="multiprocessing start method (default fork)")
    p.add_argument("--runs-dir", default=d.runs_dir,
                   help="where run folders are written (default runs/)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--quiet", "-q", action="store_true",
                     help="print only the path of the run folder")
    out.add_argument("--json", action="store_true",
                     help="print the result as JSON instead of a table")


def add_trace_options(p: argparse.ArgumentParser) -> None:
    """``run``'s tracing options (README, "Traces")."""
    d = Config()
    p.add_argument("--trace", action="store_true",
                   help="write a trace of every leg into the run folder (trace-STRATEGY.json, "
                        "Chrome trace-event JSON: open it in ui.perfetto.dev; draw it with "
                        "`timeline`)")
    p.add_argument("--trace-buffer", type=typed(parse_size, "size"), default=None,
                   help=f"ring buffer per simulated CPU, K/M/G suffixes (default "
                        f"{d.trace_buffer >> 20}M, 48 bytes a record; the coordinator's is 4 "
                        f"times that); when full, the oldest records go, and the report says "
                        f"how many")
    p.add_argument("--trace-window", default=None, metavar="WINDOW",
                   help=f"what the trace keeps of each leg: {', '.join(TRACE_WINDOWS)} (the "
                        f"first or last seconds, or the N slowest IPI rounds and what ran "
                        f"during them; default all)")


def resolve_strategy(spec: str) -> tuple:
    """``(class, spec)`` of one strategy named on the command line; UsageError if unknown."""
    try:
        names = parse_strategies(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len(names) != 1:
        raise UsageError(f"name one strategy, not {len(names)}")
    return strategy_class(names[0]), names[0]


def config_from_args(args) -> Config:
    """The run options of ``args`` over Config's defaults; an option left at None (the
    --walk-rate not given) keeps the default."""
    cfg = Config()
    for name in vars(cfg):
        if getattr(args, name, None) is not None:
            setattr(cfg, name, getattr(args, name))
    return cfg.validate()


def parse_config(parser, argv):
    """``(args, Config)`` from ``argv``, validated and checked against the host's limits: a
    bad value, or a run the host cannot start, is a UsageError before anything runs."""
    args = parser.parse_args(argv)
    try:
        default_rate = getattr(args, "walk_rate", 0) is None
        cfg = config_from_args(args)
        note = lower_default_walk_rate(cfg) if default_rate else None
        preflight(cfg)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if note:  # only for a run that starts: bad input gets its one line alone
        print(note, file=sys.stderr)
    return args, cfg


def lower_default_walk_rate(cfg):
    """Lower the default --walk-rate when the host's cores cannot sustain it for ``cfg``'s
    CPUs, and return the line that says so (None if kept): 4,096 CPUs at 20 walks/s each keep
    every CPU process of a 2-core host runnable, and the run crawls. A rate given on the
    command line is never lowered."""
    cores = len(usable_cores())
    rate = sustainable_walk_rate(cfg, cores)
    if rate >= cfg.walk_rate:
        return None
    note = (f"note: --walk-rate {rate:g}, not the default {cfg.walk_rate:g}: {cores} host "
            f"cores sustain no more for {cfg.active_cpus:,} walking CPUs (--walk-rate sets it)")
    cfg.walk_rate = rate
    cfg.validate()
    return note


def print_outcome(args, document: dict, folder: str, text: str) -> None:
    """Print what --json, --quiet or neither asks for: the document, the folder or ``text``."""
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(folder if args.quiet else text)


def written(folder: str, *names: str) -> str:
    """The last line of a command's output: where its result is, the folder once and then its
    files, so that a long runs path is not printed three times over."""
    return f"written to {folder}/: {', '.join(names)}"


def finish(args, document: dict, write, render, status) -> int:
    """The end of every command that produces a result: write its folder with ``write(document)``
    (returning the folder), print what ``args`` asks for (``render(folder)`` is the text), and
    return the exit status ``status(document)``.

    Run it inside ``deferred_signals()``: a Ctrl-C or SIGTERM that arrives now is delivered
    only once the folder is written and its path printed, so an interrupted command always
    says where its result is. A folder that cannot be written (disk full, folder removed)
    costs the folder, not the result: the document is printed as JSON and the status is 1."""
    try:
        folder = write(document)
    except OSError as exc:
        folder = None
        print(f"{PROG}: error: could not write a run folder in {args.runs_dir}: {exc}",
              file=sys.stderr)
    if folder is None:
        print(json.dumps(document, indent=2))
    else:
        print_outcome(args, document, folder, render(folder))
    sys.stdout.flush()
    return status(document) if folder else max(status(document), 1)




def load_document(spec: str, runs_dir: str, fmt: Format) -> tuple:
    """``(document, path)``: the document of format ``fmt`` in ``spec``, which is its folder,
    the file itself or a folder id under ``runs_dir``.

    UsageError naming the problem when it is missing, another format's folder, or not a valid
    document of ``fmt`` (``Format.load``)."""
    candidates = [spec, os.path.join(runs_dir, spec)]
    path = next((p for p in candidates if os.path.exists(p)), None)
    if path is None:
        raise UsageError(f"no {fmt.folder} {spec!r} (not a folder, nor a {fmt.folder} id under "
                         f"{runs_dir})")
    if os.path.isdir(path):
        for other in FORMATS:
            if other is not fmt and os.path.isfile(os.path.join(path, other.filename)):
                raise UsageError(f"{spec} is a {other.folder} folder, not a {fmt.folder} "
                                 f"({other.contents})")
        folder, path = path, os.path.join(path, fmt.filename)
        if not os.path.isfile(path) and os.path.isfile(os.path.join(folder, "manifest.json")):
            raise UsageError(f"{spec} is a sweep that has not ended (no {fmt.filename} yet): "
                             f"`{invoked_as()} sweep --resume {folder}` completes it")
        if not os.path.isfile(path):
            raise UsageError(f"{spec} is not an lpw_mp {fmt.folder} folder (it has no "
                             f"{fmt.filename})")
    try:
        return fmt.load(path), path
    except FormatError as exc:
        raise UsageError(str(exc)) from None
