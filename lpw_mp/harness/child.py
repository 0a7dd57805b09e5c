"""What runs first in every child process of a machine: its name in ``ps``, death with the
parent, signal dispositions, and the entry points of a simulated CPU and of the coordinator.
The kernel layer's ``SimulatedCPU`` and ``Updater`` run inside them. A strategy from outside
the package that raises there is reported in one line, not a traceback (``plugin_failure``)."""

import ctypes
import gc
import os
import pickle
import signal
import sys
from dataclasses import asdict, dataclass

from lpw_mp.harness.plugins import exception_text, spec_of
from lpw_mp.kernel.coordinator import Updater
from lpw_mp.kernel.cpu import SimulatedCPU
from lpw_mp.kernel.machine import Aborted, WaitTimeout, count_resumes
from lpw_mp.kernel.memory_model import Setting

PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True)

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``)."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: fall back on the parent-pid check below
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def become_child(parent_pid: int) -> None:
    """Common start of every process the emulator forks."""
    die_with_parent(parent_pid)
    # Ctrl-C goes to the whole process group; only the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    count_resumes()


def run_named(comm: str, target, *args) -> None:
    """Entry point of every child: set its ``comm`` (at most 15 bytes), then run ``target``."""
    _libc.prctl(PR_SET_NAME, comm.encode()[:15], 0, 0, 0)
    target(*args)


@dataclass(frozen=True, kw_only=True)
class CPUArgs:
    """What a CPU process is given across the fork: one record, by name, so that two figures
    of one type (``walk_rate``, ``walk_window``) cannot trade places unseen."""
    cpu: int
    machine: object
    table: object
    strategy: object
    checker: object
    walk_rate: float
    walk_window: float
    seed: int
    hooks: tuple = ()
    walker: str = ""
    #: The memory model every process of the machine runs (``memory_model.Setting``).
    memory: object = Setting()


@dataclass(frozen=True, kw_only=True)
class CoordinatorArgs:
    """What the coordinator process is given across the fork."""
    conn: object      # the write end of its result pipe
    go: object        # posted by the parent once it has recorded the process
    machine: object
    table: object
    strategy: object
    timeout: float
    progress: object
    op: str
    slots: object     # a list of slots, or None for the whole region
    mixed_ops: int
    seed: int
    batch_fail_rate: float = 0.0
    memory: object = Setting()
    #: ``check``'s schedules (``harness.checking.Script``), run instead of ``op``.
    script: object = None


def cpu_main(parent_pid: int, args: CPUArgs) -> None:
    """Entry point of a CPU process."""
    become_child(parent_pid)
    # The loop makes no reference cycles; a collection would only dirty copy-on-write pages.
    gc.disable()
    fields = dict(vars(args))
    fields.pop("memory").install(cpu=args.cpu, seed=args.seed)
    try:
        SimulatedCPU(**fields).run()
    except Exception as exc:
        if plugin_failure(args.strategy, exc, f"CPU {args.cpu}") is None:
            raise
        sys.exit(1)  # the parent names the CPU that died, and stops the run


def plugin_failure(strategy, exc: Exception, where: str):
    """The line that says a strategy from outside the package raised ``exc`` ``where`` (``CPU
    3``, ``the coordinator``), printed on stderr: its author needs the strategy, the exception
    and the place, not lpw_mp's frames. None, and nothing printed, for a built-in strategy
    and for lpw_mp's own exceptions (a wait that timed out, an abort), whose traceback or
    handling is ours."""
    spec = spec_of(strategy)
    if spec is None or type(exc).__module__.partition(".")[0] == "lpw_mp":
        return None
    line = (f"strategy {strategy.name} (plugin {spec}) raised {exception_text(exc)} "
            f"in {where}")
    print(f"lpw_mp: error: {line}", file=sys.stderr, flush=True)
    return line


def send_result(conn, outcome: dict) -> None:
    """Write ``outcome`` to the parent as raw pickled bytes and close: the parent reads them
    without ever blocking, so a coordinator stopped halfway through cannot hang it."""
    data = memoryview(pickle.dumps(outcome))
    fd = conn.fileno()
    while data:
        data = data[os.write(fd, data):]
    conn.close()


def coordinator_main(parent_pid: int, args: CoordinatorArgs) -> None:
    """Entry point of the coordinator process: waits for ``go``, runs, sends its result."""
    become_child(parent_pid)
    on_step = args.script.on_step if args.script is not None else None
    args.memory.install(seed=args.seed, on_step=on_step)
    up = Updater(args.machine, args.table, args.strategy, args.timeout, args.progress,
                 args.batch_fail_rate, args.seed)
    args.go.acquire()
    conn = args.conn
    try:
        if args.script is not None:
            outcome = {"status": "ok", "script": args.script.run(up)}
        else:
            stats = up.run(args.op, args.slots, args.mixed_ops, args.seed)
            outcome = {"status": "ok", "stats": asdict(stats)}
    except (WaitTimeout, Aborted) as exc:
        outcome = _failed(up, str(exc), getattr(exc, "cpus", None))
    except Exception as exc:
        error = plugin_failure(args.strategy, exc, "the coordinator")
        if error is None:
            raise
        outcome = _failed(up, error)
    send_result(conn, outcome)


def _failed(up, error: str, cpus=None) -> dict:
    """The outcome of an operation cut short by ``error``, with the counts so far."""
    up.stats.wall_s = 0.0
    return {"status": "error", "error": error, "stats": asdict(up.stats), "cpus": cpus}
