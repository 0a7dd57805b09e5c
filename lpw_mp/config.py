"""The configuration of a run, and its validation (every bad value is a ``ConfigError``)."""

import math
import os
from dataclasses import asdict, dataclass, field

from lpw_mp import pagetable as ptm
from lpw_mp.coordinator import OPS
from lpw_mp.machine import CPUMASK_MODES
from lpw_mp.strategies import STRATEGIES
from lpw_mp.units import format_size

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
    #: Fraction of CPUs running the process (the others are idle, lazy CPUs).
    active_fraction: float = 1.0
    #: Operations performed by --op mixed (0: one per slot).
    mixed_ops: int = 0
    #: Seconds the CPUs walk, with no updater, to measure each strategy's walker side.
    walker_time: float = 1.0
    seed: int = 1
    ipi_timeout: float = 10.0
    start_method: str = "fork"
    runs_dir: str = "runs"

    @property
    def npmds(self) -> int:
        return self.memory // self.thp_size

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["npmds"] = self.npmds
        d["memory_h"] = format_size(self.memory)
        d["thp_size_h"] = format_size(self.thp_size)
        d["active_cpus"] = self.active_cpus
        return d

    def validate(self) -> "Config":
        if not isinstance(self.cpus, int) or self.cpus < 1:
            raise ConfigError(f"--cpus must be a positive whole number, not {self.cpus!r}")
        if self.cpus > 4096:
            raise ConfigError(f"--cpus {self.cpus} is more than the 4096 this emulator supports")
        if self.memory <= 0:
            raise ConfigError("--memory must be larger than zero")
        if self.thp_size <= 0 or self.thp_size & (self.thp_size - 1):
            raise ConfigError(f"--thp-size {format_size(self.thp_size)} is not a power of two")
        if self.thp_size < ptm.BASE_PAGE:
            raise ConfigError(f"--thp-size must be at least the {ptm.BASE_PAGE}-byte base page")
        if self.thp_size > self.memory:
            raise ConfigError(f"--thp-size {format_size(self.thp_size)} is larger than --memory "
                              f"{format_size(self.memory)}")
        if self.memory % self.thp_size:
            raise ConfigError(f"--memory {format_size(self.memory)} is not a whole number of "
                              f"--thp-size {format_size(self.thp_size)} pages")
        if self.npmds > ptm.INDEX_MASK:
            raise ConfigError(f"--memory {format_size(self.memory)} needs {self.npmds} PMDs, "
                              f"more than the {ptm.INDEX_MASK} supported")
        pool = ptm.PageTable.pool_bytes(self.thp_size, self.pool_pages())
        if pool > ptm.MAX_POOL_BYTES:
            raise ConfigError(f"the PTE page pool would need {format_size(pool)} "
                              f"(more than {format_size(ptm.MAX_POOL_BYTES)}): lower --memory, "
                              f"--pte-fraction or --thp-size")
        if not self.strategies:
            raise ConfigError("no strategy given")
        for name in self.strategies:
            if name not in STRATEGIES:
                raise ConfigError(f"unknown strategy {name!r}")
        if self.op not in OPS:
            raise ConfigError(f"unknown --op {self.op!r} (choose from {', '.join(OPS)})")
        if not (math.isfinite(self.walk_rate) and self.walk_rate >= 0):
            raise ConfigError(f"--walk-rate must be zero or a positive number, not {self.walk_rate}")
        if self.walk_rate > 1e6:
            raise ConfigError(f"--walk-rate {self.walk_rate:g} per CPU per second is beyond what "
                              f"a process can do (at most 1e6)")
        if not (math.isfinite(self.walk_window) and 0 <= self.walk_window <= 1.0):
            raise ConfigError("--walk-window must be between 0 and 1 s")
        if not 0.0 <= self.pte_fraction <= 1.0:
            raise ConfigError(f"--pte-fraction must be between 0 and 1, not {self.pte_fraction}")
        if self.cpumask not in CPUMASK_MODES:
            raise ConfigError(f"unknown --cpumask {self.cpumask!r} "
                              f"(choose from {', '.join(CPUMASK_MODES)})")
        if not 0.0 <= self.active_fraction <= 1.0:
            raise ConfigError(f"--active-fraction must be between 0 and 1, "
                              f"not {self.active_fraction}")
        if self.mixed_ops < 0:
            raise ConfigError("--ops must be zero or positive")
        if self.mixed_ops and self.op != "mixed":
            raise ConfigError("--ops only applies to --op mixed")
        if not (math.isfinite(self.walker_time) and 0 <= self.walker_time <= 600):
            raise ConfigError("--walker-time must be between 0 and 600 s")
        if not (math.isfinite(self.ipi_timeout) and self.ipi_timeout > 0):
            raise ConfigError("--ipi-timeout must be a positive duration")
        if self.start_method not in START_METHODS:
            raise ConfigError(f"unknown --start-method {self.start_method!r}")
        check_writable_dir(self.runs_dir, "--runs-dir")
        return self


def check_writable_dir(path: str, what: str) -> None:
    """Fail now, before any work, if ``path`` cannot become a writable folder."""
    path = os.path.abspath(path)
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError(f"{what} {path} is not a folder ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path} is not writable")
