"""Whether the host can start a run: processes, memory and open files, checked before anything
is started, so that a run too big for the host fails at once with one clear line instead of
halfway, with some of its CPUs forked."""

import os
import resource
from dataclasses import dataclass

import psutil

from lpw_mp.harness.config import ConfigError
from lpw_mp.kernel.futex import FutexUnavailable, check_available
from lpw_mp.kernel.machine import HIST_BUCKETS, NSTATS
from lpw_mp.kernel.pagetable import PageTable
from lpw_mp.kernel.trace import TraceBuffers

#: Memory one simulated CPU costs the host, with a margin: a fixed part plus a small part that
#: grows with the number of CPUs (each child inherits, and touches, the parent's records of the
#: children forked before it). The wake path is one shared array of futex words, so no process
#: maps anything per CPU. Measured with Python 3.11 as the fall of the host's MemAvailable with
#: every CPU up (private memory in brackets): 2.1 MiB per CPU at 256 CPUs (2.5), 2.4-2.7 at
#: 1024 (2.7), 2.6-3.1 at 2048 (2.9-3.1), 4.1 at 4096 (3.9). This admits 4,096 CPUs in 21.2
#: GiB and about 4,300 in 23 GiB.
CPU_PROCESS_BYTES, CPU_PROCESS_BYTES_PER_CPU = 13 << 18, 512
#: What a walk costs the host besides its IRQ-off window, once hundreds of CPU processes share
#: a core (the loop, a context switch, cold caches), and the share of the host the default
#: walk rate may ask for: the rest is the coordinator's, the parent's and the IPI handlers'.
#: Beyond it, every CPU is always runnable, each IPI round waits for a pass of the host's
#: scheduler over all of them, and a run of 4,096 CPUs at 20 walks/s did not end in 20 min.
WALK_OVERHEAD_S, WALK_SHARE = 100e-6, 0.5

#: The parent and the coordinator.
BASE_BYTES = 128 << 20
#: Files the parent holds open besides two pipe ends per child (multiprocessing's sentinels).
BASE_FILES = 64
#: Pids the kernel never hands out (``RESERVED_PIDS``).
RESERVED_PIDS = 300

_CAP_SYS_ADMIN, _CAP_SYS_RESOURCE = 21, 24


@dataclass
class Host:
    """What the host has left. ``None`` means no limit (or none that could be read)."""
    #: RLIMIT_NPROC, when the kernel enforces it on this user, and the user's tasks now.
    nproc_limit: int = None
    user_tasks: int = 0
    #: Tasks the system can still start (pid_max, threads-max) and the pids cgroup allows.
    system_tasks_free: int = None
    cgroup_tasks_free: int = None
    #: Bytes of memory available (MemAvailable, or the memory cgroup's headroom if smaller).
    memory_free: int = None
    #: The hard RLIMIT_NOFILE of this process (the soft one is raised as needed).
    files_hard: int = None
    #: Why idle CPUs cannot sleep on futex doorbells here (kernel.futex), or None: they can.
    no_futex: str = None


def per_cpu_bytes(cpus: int) -> int:
    """The memory each simulated CPU costs the host in a run of ``cpus`` CPUs."""
    return CPU_PROCESS_BYTES + CPU_PROCESS_BYTES_PER_CPU * cpus + (NSTATS + 2 * HIST_BUCKETS) * 8


def sustainable_walk_rate(cfg, cores: int) -> float:
    """The walks per second per active CPU that ``cores`` host cores sustain for ``cfg``'s
    CPUs within ``WALK_SHARE`` of the host, to two significant figures."""
    rate = WALK_SHARE * cores / (max(cfg.active_cpus, 1) * (cfg.walk_window + WALK_OVERHEAD_S))
    return float(f"{rate:.2g}")


def trace_bytes(cfg) -> int:
    """The memory of ``--trace``: the ring buffers, and the parent's copy of each leg's until
    the run folder is written (at most one per leg, at most as large as the buffers)."""
    if not cfg.trace:
        return 0
    legs = len(cfg.strategies) * cfg.repeat
    return (1 + legs) * TraceBuffers.bytes_for(cfg.cpus, cfg.trace_records)


def memory_needed(cfg) -> int:
    """A generous estimate of the memory a run of ``cfg`` takes."""
    table = cfg.npmds * 16 + PageTable.pool_bytes(cfg.thp_size, cfg.pool_pages())
    return BASE_BYTES + cfg.cpus * per_cpu_bytes(cfg.cpus) + table + trace_bytes(cfg)


def processes_needed(cfg) -> int:
    """The CPUs, the coordinator and, under spawn, multiprocessing's resource tracker and the
    janitor that unlinks the semaphores' names."""
    return cfg.cpus + 1 + (2 if cfg.start_method == "spawn" else 0)


def files_needed(cpus: int) -> int:
    return BASE_FILES + 2 * (cpus + 1)


def problems(cfg, host: Host) -> list:
    """Why ``host`` cannot run ``cfg``, one line each; empty if it can."""
    cpus, procs = cfg.cpus, processes_needed(cfg)
    out = [f"simulated CPUs cannot run here: {host.no_futex}"] if host.no_futex else []
    if host.nproc_limit is not None and host.user_tasks + procs > host.nproc_limit:
        out.append(f"--cpus {cpus} needs {procs} more processes, but this user already runs "
                   f"{host.user_tasks} of the {host.nproc_limit} allowed (ulimit -u)")
    for free, what in ((host.system_tasks_free, "the system (pid_max, threads-max)"),
                       (host.cgroup_tasks_free, "the pids cgroup (pids.max)")):
        if free is not None and procs > free:
            out.append(f"--cpus {cpus} needs {procs} more processes, but {what} allows only "
                       f"{max(free, 0)} more")
    need = memory_needed(cfg)
    if host.memory_free is not None and need > host.memory_free:
        traced = trace_bytes(cfg)
        also = (f"; the trace takes {traced / 2**30:.1f} GiB of it: lower --trace-buffer"
                if traced > need / 4 else "")
        out.append(f"--cpus {cpus} needs about {need / 2**30:.1f} GiB of memory "
                   f"({per_cpu_bytes(cpus) / 2**20:.1f} MiB per CPU at this count), but only "
                   f"{max(host.memory_free, 0) / 2**30:.1f} GiB is available{also}")
    files = files_needed(cpus)
    if host.files_hard is not None and files > host.files_hard:
        out.append(f"--cpus {cpus} needs about {files} open files in this process, but the "
                   f"limit is {host.files_hard} (ulimit -Hn)")
    return out


def probe() -> Host:
    """Read the host's limits and what is in use now."""
    host = Host(files_hard=_finite(resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
                memory_free=psutil.virtual_memory().available)
    try:
        check_available()
    except FutexUnavailable as exc:
        host.no_futex = str(exc)
    nproc = _finite(resource.getrlimit(resource.RLIMIT_NPROC)[0])
    if nproc is not None and _nproc_enforced():
        host.nproc_limit = nproc
        host.user_tasks = _user_tasks(os.getuid())
    host.system_tasks_free = _system_tasks_free()
    host.cgroup_tasks_free = _cgroup_headroom("pids", ("pids.max", "pids.current"))
    cgroup_memory = _cgroup_headroom("memory", ("memory.max", "memory.current"),
                                     ("memory.limit_in_bytes", "memory.usage_in_bytes"))
    if cgroup_memory is not None:
        host.memory_free = min(host.memory_free, cgroup_memory)
    return host


def preflight(cfg, host: Host = None) -> None:
    """Raise ``ConfigError`` (one line) if the host cannot start ``cfg``; raise this process's
    soft limit of open files up to what the run needs (the hard limit allows it)."""
    host = host or probe()
    found = problems(cfg, host)
    if found:
        raise ConfigError(found[0])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = files_needed(cfg.cpus)
    if soft != resource.RLIM_INFINITY and files > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (files if hard == resource.RLIM_INFINITY else min(files, hard), hard))


# -- reading the host --------------------------------------------------------------------------

def _finite(limit: int):
    return None if limit == resource.RLIM_INFINITY else limit


def _nproc_enforced() -> bool:
    """The kernel exempts root and holders of CAP_SYS_ADMIN or CAP_SYS_RESOURCE."""
    if os.getuid() == 0:
        return False
    try:
        with open("/proc/self/status") as f:
            caps = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return True
    return not caps & (1 << _CAP_SYS_ADMIN | 1 << _CAP_SYS_RESOURCE)


def _user_tasks(uid: int) -> int:
    """Tasks (threads) whose real user is ``uid``: what RLIMIT_NPROC counts."""
    total = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        uids, threads = proc.info["uids"], proc.info["num_threads"]
        if uids is not None and uids.real == uid:
            total += threads or 1
    return total


def _read_int(path: str):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):  # absent, or "max": no limit
        return None


def _system_tasks_free():
    try:
        with open("/proc/loadavg") as f:
            tasks = int(f.read().split()[3].split("/")[1])
    except (OSError, IndexError, ValueError):
        return None
    limits = [_read_int("/proc/sys/kernel/threads-max")]
    pid_max = _read_int("/proc/sys/kernel/pid_max")
    if pid_max is not None:
        limits.append(pid_max - RESERVED_PIDS)
    limits = [n for n in limits if n is not None]
    return min(limits) - tasks if limits else None


def _cgroup_headroom(controller: str, v2_files, v1_files=None, proc_cgroup="/proc/self/cgroup",
                     root="/sys/fs/cgroup"):
    """The smallest ``limit - usage`` from this process's cgroup up to the root, or None.

    ``v2_files`` and ``v1_files`` name the (limit, usage) files of the controller."""
    try:
        with open(proc_cgroup) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    for _, controllers, path in lines:
        if controllers == "":
            base, files = root, v2_files
        elif controller in controllers.split(","):
            base, files = os.path.join(root, controllers), v1_files or v2_files
        else:
            continue
        room = None
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):
            folder = os.path.join(base, *parts[:depth])
            limit, used = (_read_int(os.path.join(folder, name)) for name in files)
            if limit is not None and used is not None:
                room = limit - used if room is None else min(room, limit - used)
        if room is not None:
            return room
    return None
