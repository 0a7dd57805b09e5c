"""Command line: ``python -m lpw_mp [options]`` runs the emulator and writes a report; its
subcommands reproduce the published figures, sweep parameters and compare runs."""

import importlib
import sys

from lpw_mp.commands.shell import PROG, UsageError


#: Subcommands: name -> "module:function" taking argv (after the name) and returning a status.
#: Without a subcommand, ``python -m lpw_mp [options]`` is ``run``.
COMMANDS = {
    "run": "lpw_mp.commands.run:main",
    "reproduce": "lpw_mp.commands.reproduce:main",
    "sweep": "lpw_mp.commands.sweep:main",
    "compare": "lpw_mp.commands.compare:main",
}


def _command(argv):
    if argv and argv[0] in COMMANDS:
        name, argv = argv[0], argv[1:]
    else:
        name = "run"
    module, func = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), func), argv


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, rest = _command(argv)
        return command(rest)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a run (whose runner reports it): no traceback
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
