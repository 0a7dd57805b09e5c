"""What a result must say about the host it was measured on.

The CPU, frequency and commit figures follow pyperf's ``pyperf/_collect_metadata.py`` (the
metadata ``pyperf collect-metadata`` prints), whose names they mirror where one fits:
``cpu_model`` is pyperf's ``cpu_model_name``, ``cpu_freq_governor`` the ``governor:`` part of
its ``cpu_config``, ``cpu_freq_mhz`` its ``cpu_freq``, ``isolated_cpus`` what its
``get_isolated_cpus`` reads, ``boot_time`` its ``boot_time`` (in UTC here), and ``kernel`` the
release its ``platform`` embeds. ``lpw_mp_commit`` is ours: pyperf records its own version only.
Each of them is None where the host does not say (no ``/sys`` file, not Linux, no git), and
collecting them never raises: a run is not refused for want of its metadata."""

import datetime
import os
import pathlib
import platform
import socket
import subprocess
import sys

import psutil

#: Where Linux describes its CPUs (pyperf: ``sysfs_path("devices/system/cpu")``).
SYS_CPU = "/sys/devices/system/cpu"
PROC_CPUINFO = "/proc/cpuinfo"
#: The lpw_mp package whose commit a result records; its parent is the checkout, if any.
PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
#: Seconds each git command may take: a run does not wait on a slow file system for this.
GIT_TIMEOUT = 2.0


def usable_cores() -> list:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def read_first_line(path):
    """The first line of ``path``, stripped; None if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip()
    except (OSError, ValueError):
        return None


def parse_cpu_list(text: str) -> list:
    """``"0-3,8"`` -> ``[0, 1, 2, 3, 8]`` (the kernel's cpulist format); ``""`` -> ``[]``."""
    cpus = set()
    for part in text.split(","):
        if part.strip():
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return sorted(cpus)


def cpu_model():
    """The ``model name`` of ``/proc/cpuinfo`` (x86, and arm64 kernels that give one), else
    its ``cpu`` line (powerpc: ``POWER9 (architected), altivec supported``), else
    ``platform.processor()``; None when none of them names it."""
    try:
        with open(PROC_CPUINFO, encoding="utf-8", errors="replace") as f:
            fields = {}
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        fields = {}
    return fields.get("model name") or fields.get("cpu") or platform.processor() or None


def cpu_freq_governor(cores):
    """The ``scaling_governor`` of ``cores``: the one value, or the distinct values sorted and
    joined by ``", "``; None when no core has one (no cpufreq driver, as in most VMs)."""
    governors = {read_first_line(f"{SYS_CPU}/cpu{cpu}/cpufreq/scaling_governor")
                 for cpu in cores}
    governors.discard(None)
    governors.discard("")
    return ", ".join(sorted(governors)) or None


def cpu_freq_mhz():
    """psutil's ``cpu_freq()``: ``{"current", "min", "max"}`` in MHz, each None where psutil
    gives 0 (it does for what it cannot tell); None when psutil has no figure."""
    freq = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None
    if not freq:
        return None
    return {key: float(getattr(freq, key)) or None for key in ("current", "min", "max")}


def isolated_cpus():
    """The CPUs the kernel keeps the scheduler off (``isolcpus=``), from
    ``/sys/devices/system/cpu/isolated`` (Linux 4.2+): ``[]`` when none are; None when the file
    is absent or unreadable."""
    text = read_first_line(f"{SYS_CPU}/isolated")
    return None if text is None else parse_cpu_list(text)


def boot_time():
    """When the host booted, ISO 8601 in UTC to the second, like the result's ``started``."""
    stamp = datetime.datetime.fromtimestamp(psutil.boot_time(), datetime.timezone.utc)
    return stamp.isoformat(timespec="seconds")


def run_git(args, cwd):
    """``git <args>`` in ``cwd``: its stdout, or None if git is missing, fails or takes more
    than ``GIT_TIMEOUT``. No shell; no optional locks, so that a run never blocks (nor is
    blocked by) a git command of its user."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=GIT_TIMEOUT,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}, check=False)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def lpw_mp_commit(package_dir=None):
    """``{"commit": <HEAD>, "dirty": <bool>}`` when lpw_mp is imported from a git checkout
    (its package tracked in the repository of its parent directory); ``dirty`` when ``git
    status --porcelain`` lists anything, untracked files included (None if that failed).
    None when it is not a checkout (an installed copy) or git is missing."""
    package_dir = pathlib.Path(package_dir or PACKAGE_DIR)
    checkout = package_dir.parent
    head = run_git(["rev-parse", "--verify", "HEAD"], checkout)
    # A venv's site-packages may sit inside some other repository: then lpw_mp is not in it.
    tracked = run_git(["ls-files", "--", f"{package_dir.name}/__init__.py"], checkout)
    if not head or not head.strip() or not tracked or not tracked.strip():
        return None
    status = run_git(["status", "--porcelain"], checkout)
    return {"commit": head.strip(), "dirty": None if status is None else bool(status.strip())}


def _or_none(collect, *args):
    """``collect(*args)``, or None if it raised: metadata is never why a run fails."""
    try:
        return collect(*args)
    except Exception:
        return None


def host_metadata(simulated_cpus: int, start_method: str) -> dict:
    cores = usable_cores()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "host_cpus": os.cpu_count(),
        "usable_cores": len(cores),
        "affinity": cores,
        # The coordinator is one more process competing for the same cores.
        "oversubscription": round((simulated_cpus + 1) / len(cores), 2),
        "memory_bytes": psutil.virtual_memory().total,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "start_method": start_method,
        "psutil": psutil.__version__,
        "cpu_model": _or_none(cpu_model),
        "cpu_freq_governor": _or_none(cpu_freq_governor, cores),
        "cpu_freq_mhz": _or_none(cpu_freq_mhz),
        "isolated_cpus": _or_none(isolated_cpus),
        "boot_time": _or_none(boot_time),
        "kernel": _or_none(lambda: platform.release() or None),
        "lpw_mp_commit": _or_none(lpw_mp_commit),
    }
