"""Command line: ``python -m lpw_mp [COMMAND] [options]``. Without a command it runs the
emulator (``run``); the others reproduce the published figures, sweep parameters and compare
runs. Each command parses its own options; this module only names and dispatches them."""

import argparse
import difflib
import sys

from lpw_mp import __version__
from lpw_mp.commands import check, compare, plot, reproduce, run, sweep, timeline
from lpw_mp.commands.shell import PROG, Parser, UsageError, invoked_as

#: Subcommands, in the order --help lists them: name -> module with ``SUMMARY`` and ``main``.
COMMANDS = {"run": run, "reproduce": reproduce, "sweep": sweep, "plot": plot,
            "timeline": timeline, "compare": compare, "check": check}
#: What may come first without naming a command (the rest go to ``run``).
TOP_LEVEL = ("-h", "--help", "--version")


def build_parser() -> Parser:
    p = Parser(prog=invoked_as(),
               description="Emulate powerpc lockless page-table walks on real processes and "
                           "measure what each serialisation strategy costs. Without a "
                           "command, runs `run`; COMMAND --help gives a command's options.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, module in COMMANDS.items():
        # Each command parses its own options: here it only takes them along.
        sub.add_parser(name, help=module.SUMMARY, add_help=False,
                       prefix_chars="\0").add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _command(argv):
    """``(module, rest)``: the command ``argv`` names, ``run`` if it names none."""
    if not argv or (argv[0].startswith("-") and argv[0] not in TOP_LEVEL):
        return COMMANDS["run"], argv
    if argv[0] not in COMMANDS and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else \
            f" (choose from {', '.join(COMMANDS)})"
        raise UsageError(f"unknown command {argv[0]!r}{hint}")
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command], args.rest


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, rest = _command(argv)
        return command.main(rest)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a run (whose runner reports it): no traceback
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
