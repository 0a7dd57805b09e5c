"""What a result must say about the host it was measured on."""

import os
import platform
import socket
import sys

import psutil


def usable_cores() -> list:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


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
    }
