"""``python -m lpw_mp timeline TRACE``: draw a time window of a trace to a PNG.

    python -m lpw_mp timeline runs/20261127-101500-1a2b3c --leg ipi
    python -m lpw_mp timeline trace-ipi.json --round 1234 -o round.png
    python -m lpw_mp timeline counterexample.json --violation

One row per simulated CPU under the coordinator's: IRQ-off windows, IPIs handled, idle
periods, the coordinator's operations, IPI rounds and grace-period waits, violations. By
default the window is the slowest IPI round (else the first violation, else the whole trace).
TRACE is a trace file or a run folder holding ``trace-*.json``. Nothing is run."""

import glob
import os

from lpw_mp.commands.shell import Parser, UsageError, invoked_as, parse_int, typed
from lpw_mp.results import plot, timeline, traces
from lpw_mp.results.folders import write_through_temp
from lpw_mp.units import parse_duration

SUMMARY = "draw a time window of a trace (IPI rounds, IRQ-off windows, violations) to a PNG"


def build_parser() -> Parser:
    p = Parser(prog=f"{invoked_as()} timeline",
               description="Draw a time window of a trace (run --trace, or a check "
                           "counterexample) to a PNG: the coordinator's operations, IPI rounds "
                           "and grace-period waits on top, then one row per CPU with its "
                           "IRQ-off windows, IPIs handled, idle periods and violations. "
                           f"Needs matplotlib ({plot.INSTALL}).")
    p.add_argument("trace", metavar="TRACE",
                   help="a trace file, or a run folder holding trace-*.json")
    p.add_argument("--leg", metavar="NAME",
                   help="in a run folder with several traces, draw trace-NAME.json")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--round", type=typed(parse_int, "round"), metavar="N",
                       help="the IPI round numbered N")
    which.add_argument("--slowest", action="store_true",
                       help="the longest IPI round (the default when the trace has rounds)")
    which.add_argument("--violation", type=typed(parse_int, "violation"), nargs="?", const=1,
                       metavar="K",
                       help="the K-th violation, from 1 (default 1; the default window of a "
                            "trace with violations and no round)")
    p.add_argument("--start", type=typed(parse_duration, "duration"), metavar="TIME",
                   help="window start, from the trace's origin, e.g. 1.5ms (default: its "
                        "first event)")
    p.add_argument("--end", type=typed(parse_duration, "duration"), metavar="TIME",
                   help="window end, from the trace's origin (default: its last event's end)")
    p.add_argument("--margin", type=typed(parse_duration, "duration"), metavar="TIME",
                   help="time shown before and after a round or a violation's walk (default: "
                        "a quarter of the round, at least 50us; for a violation, from its "
                        "walk's start, or 200us before it, to 100us after)")
    p.add_argument("--cpus", type=typed(timeline.parse_cpus, "cpus"), metavar="LIST",
                   help="the CPUs to draw, e.g. 0-15,40 (default: all)")
    p.add_argument("--max-rows", type=typed(parse_int, "rows"), default=timeline.MAX_ROWS,
                   metavar="N",
                   help="at most N CPU rows; past it the round's last responder, the CPUs "
                        "with a violation or an IRQ-off window in the window come first "
                        f"(default {timeline.MAX_ROWS})")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the PNG to FILE (default: timeline-LEG-WHAT.png here, e.g. "
                        "timeline-ipi-round1234.png)")
    return p


def trace_path(spec: str, leg: str = None) -> str:
    """The trace file ``spec`` names: itself, or in a run folder its ``trace-*.json`` (the
    one ``leg`` names when there are several)."""
    if os.path.isfile(spec):
        if leg is not None:
            raise UsageError(f"--leg picks a trace in a run folder; {spec} is a file")
        return spec
    if not os.path.isdir(spec):
        raise UsageError(f"no trace {spec!r} (not a file, nor a run folder)")
    found = sorted(glob.glob(os.path.join(glob.escape(spec), "trace-*.json")))
    legs = [os.path.basename(f)[len("trace-"):-len(".json")] for f in found]
    if not legs:
        raise UsageError(f"{spec} holds no trace (no trace-*.json; run --trace writes them)")
    if leg is None and len(legs) == 1:
        return found[0]
    if leg in legs:
        return found[legs.index(leg)]
    ask = f"no trace of leg {leg!r}" if leg is not None else f"{len(legs)} traces"
    raise UsageError(f"{spec} holds {ask}: choose one with --leg from {', '.join(legs)}")


def choose_window(trace, args):
    """The window the options ask for (the default one when they ask for none)."""
    spans = args.start is not None or args.end is not None
    chosen = [name for name, given in (("--round", args.round is not None),
                                       ("--slowest", args.slowest),
                                       ("--violation", args.violation is not None)) if given]
    if spans and chosen:
        raise UsageError(f"--start/--end and {chosen[0]} choose the window both; give one")
    if spans and args.margin is not None:
        raise UsageError("--margin widens a round or a violation, not --start/--end")
    margin = None if args.margin is None else args.margin * 1e6
    if args.round is not None:
        return timeline.round_window(trace, args.round, margin)
    if args.slowest:
        return timeline.slowest_window(trace, margin)
    if args.violation is not None:
        if args.violation < 1:
            raise UsageError(f"--violation {args.violation}: violations count from 1")
        return timeline.violation_window(trace, args.violation, margin)
    if spans:
        return timeline.span_window(trace, *(None if t is None else t * 1e6
                                             for t in (args.start, args.end)))
    if margin is None:
        return timeline.default_window(trace)
    if timeline.rounds(trace):
        return timeline.slowest_window(trace, margin)
    if timeline.violations(trace):
        return timeline.violation_window(trace, 1, margin)
    raise UsageError("--margin widens a round or a violation; the trace has neither")


def default_output(path: str, window) -> str:
    """``timeline-<stem without trace->-<what>.png``, in the current directory."""
    stem = os.path.splitext(os.path.basename(path))[0]
    stem = stem.removeprefix("trace-") or stem
    return f"timeline-{stem}-{window.what}.png"


def draw(trace, window, rows, left_out, out: str) -> bool:
    """Write the PNG through a temporary file beside ``out``, so that a failed drawing never
    leaves a truncated PNG. False (nothing written) when matplotlib cannot be imported."""
    return write_through_temp(out, lambda tmp: timeline.write_png(trace, window, rows,
                                                                   left_out, tmp))


def main(argv) -> int:
    args = build_parser().parse_args(argv)
    if not plot.available():
        raise UsageError(f"timeline needs matplotlib, which is not installed: {plot.INSTALL}")
    if args.max_rows < 1:
        raise UsageError(f"--max-rows {args.max_rows}: draw at least 1 row")
    path = trace_path(args.trace, args.leg)
    try:
        trace = timeline.index(traces.load(path))
        if not trace.cpus and not trace.coordinator:
            raise timeline.TimelineError(f"{path} has no CPU or coordinator track to draw")
        window = choose_window(trace, args)
        timeline.check_not_empty(trace, window)
        rows, left_out = timeline.choose_rows(trace, window, args.max_rows, args.cpus)
    except (traces.TraceError, timeline.TimelineError) as exc:
        raise UsageError(str(exc)) from None
    out = args.output or default_output(path, window)
    try:
        drawn = draw(trace, window, rows, left_out, out)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not drawn:  # found, yet it would not import: a broken installation
        raise UsageError(f"timeline needs matplotlib, which would not import: {plot.INSTALL}")
    print(out)
    return 0
