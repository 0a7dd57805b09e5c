"""The configuration of a run, and its validation (every bad value is a ``ConfigError``)."""

import errno
import math
import os
from dataclasses import asdict, dataclass, field

from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel.coordinator import OPS
from lpw_mp.kernel.cpu import WALKERS
from lpw_mp.kernel.machine import CPUMASK_MODES
from lpw_mp.kernel.memory_model import MODELS
from lpw_mp.kernel.trace import RECORD_BYTES
from lpw_mp.units import format_duration, format_size, parse_duration

# Every numeric option's range (README, Options): counts and sizes bound what a run allocates
# and how long it can take; durations and rates bound what the host can honour.
# NR_CPUS goes up to 8192 on the machines where the broadcast hurts most; the preflight says
# whether this host has the memory.
MAX_CPUS = 8192
MIN_MEMORY, MAX_MEMORY = ptm.BASE_PAGE, 64 << 40
#: --ops for --op mixed: ten million operations of a few ms each under ipi take half a day.
MAX_OPS = 10_000_000
#: The seed feeds random.Random; 32 bits is every layout anyone will ask for.
MAX_SEED = 2**32 - 1
#: --repeat: each repeat runs every strategy again; a hundred is hours at the seed's scale.
MAX_REPEAT = 100
MAX_WALK_RATE = 1e6
MAX_WALK_WINDOW = 1.0
MAX_WALKER_TIME = 600.0
#: Below 10 ms a descheduled CPU (a time slice is milliseconds) looks like a dead one; above an
#: hour a stalled run looks like a hang.
MIN_IPI_TIMEOUT, MAX_IPI_TIMEOUT = 0.01, 3600.0

#: --trace-buffer: a few dozen records at least; a GiB per CPU is more than any host has.
MIN_TRACE_BUFFER, MAX_TRACE_BUFFER = 64 * RECORD_BYTES, 1 << 30
#: --trace-window's forms: every record the buffers hold, the first or last seconds of each
#: leg, or the N slowest IPI rounds (and what ran during them).
TRACE_WINDOWS = ("all", "first:DURATION", "last:DURATION", "slowest:N")
#: --trace-window slowest:N keeps at most this many rounds; first: and last: a day.
MAX_TRACE_ROUNDS, MAX_TRACE_SECONDS = 1000, 86400

#: Start methods whose children are our own (so PR_SET_PDEATHSIG ties them to this process).
START_METHODS = ("fork", "spawn")


class ConfigError(ValueError):
    """A bad value or combination; the CLI prints it on one line and exits with status 2."""


@dataclass
class Config:
    cpus: int = 128
    memory: int = 8 << 30
    thp_size: int = 2 << 20
    strategies: list = field(default_factory=lambda: ["ipi", "count"])
    op: str = "munmap"
    #: Lookups per second per active CPU: a lightly loaded guest, most CPUs idle most of the time.
    walk_rate: float = 20.0
    #: How long IRQs stay off per walk (the lockless walk plus the use of its result).
    walk_window: float = 20e-6
    #: Fraction of slots mapped through a PTE page rather than as a huge leaf.
    pte_fraction: float = 0.0625
    cpumask: str = "sticky"
    #: The walker discipline (``--walker``); empty: each profile's own.
    walker: str = ""
    #: Fraction of CPUs running the process (the others are idle, lazy CPUs).
    active_fraction: float = 1.0
    #: Probability that tlb_remove_table finds no batch page and syncs with an IPI instead.
    batch_fail_rate: float = 0.0
    #: Operations performed by --op mixed (0: one per slot).
    mixed_ops: int = 0
    #: Seconds the CPUs walk, with no updater, to measure each strategy's walker side.
    walker_time: float = 1.0
    #: Times every strategy is run, interleaved (ABCABC), for medians and intervals.
    repeat: int = 1
    #: How the strategies' shared-memory accesses are ordered (``kernel.memory_model``).
    memory_model: str = "sc"
    seed: int = 1
    ipi_timeout: float = 10.0
    #: Write a trace of every leg (``--trace``) into the run folder; its ring buffer per CPU,
    #: in bytes, and the part of each leg it keeps (``TRACE_WINDOWS``).
    trace: bool = False
    trace_buffer: int = 1 << 20
    trace_window: str = "all"
    start_method: str = "fork"
    runs_dir: str = "runs"

    @property
    def npmds(self) -> int:
        return self.memory // self.thp_size

    @property
    def trace_records(self) -> int:
        """Records of a CPU's trace buffer."""
        return self.trace_buffer // RECORD_BYTES

    def trace_window_parts(self) -> tuple:
        """``("all", None)``, ``("first", seconds)``, ``("last", seconds)`` or
        ``("slowest", rounds)``; ConfigError for anything else."""
        kind, _, value = self.trace_window.partition(":")
        if kind == "all" and not value:
            return "all", None
        if kind in ("first", "last") and value:
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                raise ConfigError(f"--trace-window {self.trace_window}: {exc}") from None
            if not 0 < seconds <= MAX_TRACE_SECONDS:
                raise ConfigError(f"--trace-window {self.trace_window}: the duration must be "
                                  f"above 0 and at most {MAX_TRACE_SECONDS // 3600} h")
            return kind, seconds
        if kind == "slowest" and value.isdigit() and 1 <= int(value) <= MAX_TRACE_ROUNDS:
            return kind, int(value)
        raise ConfigError(f"--trace-window {self.trace_window!r} is not one of "
                          f"{', '.join(TRACE_WINDOWS)} (N from 1 to {MAX_TRACE_ROUNDS})")

    @property
    def active_cpus(self) -> int:
        return max(1, math.ceil(self.cpus * self.active_fraction)) if self.active_fraction else 0

    def pool_pages(self) -> int:
        """PTE pages to allocate: enough for every table the operation can need."""
        if self.op == "munmap":
            return max(1, math.ceil(self.npmds * self.pte_fraction * 1.1) + 16)
        return self.npmds

    def effective_pte_fraction(self) -> float:
        return {"split": 0.0, "collapse": 1.0}.get(self.op, self.pte_fraction)

    #: The keys ``to_dict`` adds, derived from the others (a reader compares the others).
    DERIVED_KEYS = ("npmds", "memory_h", "thp_size_h", "active_cpus")

    def to_dict(self) -> dict:
        d = asdict(self)
        derived = (self.npmds, format_size(self.memory), format_size(self.thp_size),
                   self.active_cpus)
        d.update(zip(self.DERIVED_KEYS, derived))
        return d

    def validate(self) -> "Config":
        _whole(self.cpus, "--cpus", 1, MAX_CPUS)
        _check(self.memory, "--memory", MIN_MEMORY, MAX_MEMORY, format_size, whole=True)
        _whole(self.thp_size, "--thp-size", ptm.BASE_PAGE, MAX_MEMORY, format_size,
               why="at least the base page")
        if self.thp_size & (self.thp_size - 1):
            raise ConfigError(f"--thp-size {format_size(self.thp_size)} is not a power of two")
        if self.thp_size > self.memory:
            raise ConfigError(f"--thp-size {format_size(self.thp_size)} is larger than --memory "
                              f"{format_size(self.memory)}")
        if self.memory % self.thp_size:
            raise ConfigError(f"--memory {format_size(self.memory)} is not a whole number of "
                              f"--thp-size {format_size(self.thp_size)} pages")
        if self.npmds > ptm.INDEX_MASK:
            raise ConfigError(f"--memory {format_size(self.memory)} needs {self.npmds} PMDs, "
                              f"more than the {ptm.INDEX_MASK} supported")
        _check(self.pte_fraction, "--pte-fraction", 0.0, 1.0)
        pool = ptm.PageTable.pool_bytes(self.thp_size, self.pool_pages())
        if pool > ptm.MAX_POOL_BYTES:
            raise ConfigError(f"the PTE page pool would need {format_size(pool)} "
                              f"(more than {format_size(ptm.MAX_POOL_BYTES)}): lower --memory, "
                              f"--pte-fraction or --thp-size")
        if not self.strategies:
            raise ConfigError("no strategy given")
        # Not at the top: the plugins' error is this module's ConfigError.
        from lpw_mp.harness.plugins import resolve
        self.strategies = resolve(self.strategies)
        if self.op not in OPS:
            raise ConfigError(f"unknown --op {self.op!r} (choose from {', '.join(OPS)})")
        _check(self.walk_rate, "--walk-rate", 0.0, MAX_WALK_RATE,
               why="a process cannot start walks faster")
        _check(self.walk_window, "--walk-window", 0.0, MAX_WALK_WINDOW, _duration)
        duty = self.walk_rate * self.walk_window
        if duty >= 1:
            raise ConfigError(f"--walk-window {format_duration(self.walk_window)} x --walk-rate "
                              f"{self.walk_rate:g} = {duty:.3g}: each CPU would keep IRQs off "
                              f"{duty:.3g} s of every second; the product must be below 1")
        if self.cpumask not in CPUMASK_MODES:
            raise ConfigError(f"unknown --cpumask {self.cpumask!r} "
                              f"(choose from {', '.join(CPUMASK_MODES)})")
        if self.walker and self.walker not in WALKERS:
            raise ConfigError(f"unknown --walker {self.walker!r} "
                              f"(choose from {', '.join(WALKERS)})")
        _check(self.active_fraction, "--active-fraction", 0.0, 1.0)
        _check(self.batch_fail_rate, "--batch-fail-rate", 0.0, 1.0)
        _whole(self.mixed_ops, "--ops", 0, MAX_OPS)
        if self.mixed_ops and self.op != "mixed":
            raise ConfigError("--ops only applies to --op mixed")
        _check(self.walker_time, "--walker-time", 0.0, MAX_WALKER_TIME, _duration)
        _check(self.ipi_timeout, "--ipi-timeout", -math.inf, math.inf)  # finite
        if self.ipi_timeout < MIN_IPI_TIMEOUT:
            raise ConfigError(f"--ipi-timeout {_duration(self.ipi_timeout)} is below "
                              f"{_duration(MIN_IPI_TIMEOUT)}: below that, the host's scheduler "
                              f"cannot tell a late CPU from a descheduled one")
        if self.ipi_timeout > MAX_IPI_TIMEOUT:
            raise ConfigError(f"--ipi-timeout {_duration(self.ipi_timeout)} is above "
                              f"{MAX_IPI_TIMEOUT / 3600:g} h: a run that stalls would wait that "
                              f"long before saying so")
        _whole(self.repeat, "--repeat", 1, MAX_REPEAT)
        if self.memory_model not in MODELS:
            raise ConfigError(f"unknown --memory-model {self.memory_model!r} "
                              f"(choose from {', '.join(MODELS)})")
        _whole(self.seed, "--seed", 0, MAX_SEED)
        _whole(self.trace_buffer, "--trace-buffer", MIN_TRACE_BUFFER, MAX_TRACE_BUFFER,
               format_size)
        if not isinstance(self.trace_window, str):
            raise ConfigError(f"--trace-window must be text, not {self.trace_window!r}")
        self.trace_window_parts()
        if not self.trace and (self.trace_buffer != Config.trace_buffer
                               or self.trace_window != Config.trace_window):
            raise ConfigError("--trace-buffer and --trace-window only apply with --trace")
        if self.start_method not in START_METHODS:
            raise ConfigError(f"unknown --start-method {self.start_method!r}")
        check_writable_dir(self.runs_dir, "--runs-dir")
        return self


def _duration(seconds) -> str:
    """Enough digits that a value just past a bound does not print as the bound."""
    return "0" if seconds == 0 else format_duration(seconds, digits=6)


def _check(value, option: str, lo, hi, show="{:g}".format, whole=False, why="") -> None:
    """ConfigError unless ``value`` is a finite number (a whole one if ``whole``) from ``lo``
    to ``hi``. Configurations are also built in code, so the type is checked too."""
    kinds = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite {'whole ' if whole else ''}number, "
                          f"not {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{option} {show(value)} is out of range: {show(lo)} to {show(hi)}"
                          + (f" ({why})" if why else ""))


def _whole(value, option: str, lo: int, hi: int, show=str, why="") -> None:
    _check(value, option, lo, hi, show, whole=True, why=why)


def check_writable_dir(path: str, what: str) -> None:
    """Fail now, before any work, if ``path`` cannot become a writable folder: the run would
    otherwise happen in full and only then fail to write its report."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{what} is empty: name a folder")
    if "\0" in path:
        raise ConfigError(f"{what} {path!r} contains a NUL byte")
    path = os.path.abspath(path)
    # The deepest part of the path that is there (os.path.exists is False for a dangling
    # link, which cannot be made a folder: lexists stops on it).
    probe, missing = path, []
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        missing.append(os.path.basename(probe))
        probe = parent
    # Name the part of the path at fault, and the path given when that is another part.
    at = "" if probe == path else f" cannot be made: {probe}"
    if os.path.islink(probe) and not os.path.exists(probe):
        raise ConfigError(f"{what} {path}{at} {_broken_link(probe)}")
    if not os.path.isdir(probe):
        kind = "a file, not a folder" if os.path.isfile(probe) else "not a folder"
        raise ConfigError(f"{what} {path}{at} is {kind}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}{at} is not writable")
    name_max = _pathconf(probe, "PC_NAME_MAX", 255)
    for name in missing:
        if len(os.fsencode(name)) > name_max:
            raise ConfigError(f"{what} {path}: the name {name[:40]!r}... is longer than the "
                              f"{name_max} bytes a file name may have")
    # Room for the run folder's own name (a staging name of about 40 bytes) inside it.
    path_max = _pathconf(probe, "PC_PATH_MAX", 4096)
    if len(os.fsencode(path)) + 64 > path_max:
        raise ConfigError(f"{what} is too long a path ({len(os.fsencode(path))} bytes; at "
                          f"most {path_max - 64})")


def _pathconf(path: str, name: str, default: int) -> int:
    """A file system limit: Linux's usual one where it cannot be read, none where it is -1."""
    try:
        limit = os.pathconf(path, name)
    except (OSError, ValueError):
        return default
    return limit if limit > 0 else math.inf


def _broken_link(path: str) -> str:
    """Why the symbolic link ``path`` leads to nothing."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.ENOENT:
            return f"is a dangling symbolic link (to {os.readlink(path)}, which does not exist)"
        return f"is a symbolic link that cannot be followed ({exc.strerror})"
    return "is a symbolic link that cannot be followed"
