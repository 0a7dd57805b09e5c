"""Benchmark: the largest --cpus this host runs, end to end through the command line.

For each CPU count, runs ``python -m lpw_mp --cpus N`` (plus the options given) as a real
process and reports: whether it completed, its wall time, how long the CPUs took to start
(first child to the last one up), the host memory it took at its peak (fall of MemAvailable, so
the kernel side of each process counts), the private memory (USS) of its CPU processes, the
leaked processes after it exits (must be 0), and each strategy's operation time and median
IPI round.

    python benchmarks/max_cpus.py [--cpus 1024 2048] [--memory 1G] [--strategy ipi,count]
                                  [-- more lpw_mp options]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from tabulate import tabulate

from lpw_mp.harness.hostinfo import host_metadata
from lpw_mp.units import format_duration

from _measure import alive, uss_pss

#: How often the host memory and the process count are sampled.
SAMPLE_S = 0.2


class Watch(threading.Thread):
    """Samples a run from outside: host memory, its processes, and once, when every CPU is
    up, the USS of each CPU process."""

    def __init__(self, pid: int, cpus: int):
        super().__init__(daemon=True)
        self.root, self.cpus = psutil.Process(pid), cpus
        self.base_available = psutil.virtual_memory().available
        self.peak_bytes = 0
        self.first_child = self.all_up = None
        self.uss = []
        self.seen = {}
        self.done = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.done.wait(SAMPLE_S):
            used = self.base_available - psutil.virtual_memory().available
            self.peak_bytes = max(self.peak_bytes, used)
            try:
                kids = self.root.children()
            except psutil.NoSuchProcess:
                return
            self.seen.update((p.pid, p) for p in kids)
            if kids and self.first_child is None:
                self.first_child = time.monotonic() - start
            if len(kids) >= self.cpus and self.all_up is None:
                self.all_up = time.monotonic() - start
                self.uss = [m[0] for m in (uss_pss(p.pid) for p in kids) if m]


def measure(cpus: int, args, extra) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "lpw_mp", "--cpus", str(cpus), "--memory", args.memory,
               "--strategy", args.strategy, "--json", "--runs-dir", runs, *extra]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watch = Watch(proc.pid, cpus)
        watch.start()
        out, err = proc.communicate()
        wall = time.monotonic() - start
        watch.done.set()
        watch.join()
        time.sleep(1.0)  # time for PR_SET_PDEATHSIG victims to be reaped by whoever owns them
        leaked = [p.pid for p in watch.seen.values() if alive(p)]
    row = {"cpus": cpus, "exit": proc.returncode, "wall_s": wall,
           "start_s": (watch.all_up - watch.first_child) if watch.all_up else None,
           "peak_bytes": watch.peak_bytes,
           "uss_mean": sum(watch.uss) / len(watch.uss) if watch.uss else None,
           "uss_max": max(watch.uss) if watch.uss else None,
           "leaked": len(leaked), "legs": [], "error": err.strip().splitlines()[-1:]}
    if out.strip():
        result = json.loads(out)
        row["status"] = result["status"]
        row["legs"] = [(leg["strategy"], leg.get("wall_s"),
                        (leg.get("ipi_round_s") or {}).get("median"), leg["status"])
                       for leg in result["legs"]]
    return row


def _mib(n):
    return "-" if n is None else f"{n / 2**20:.1f}"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpus", type=int, nargs="+", default=[1024])
    p.add_argument("--memory", default="1G")
    p.add_argument("--strategy", default="ipi,count")
    args = p.parse_args(argv)
    host = host_metadata(max(args.cpus), "fork")
    print(f"host: {host['usable_cores']} usable cores, {host['memory_bytes'] / 2**30:.1f} GiB, "
          f"Python {host['python']}, load average {host['load_average'][0]:.1f}; "
          f"lpw_mp --memory {args.memory} --strategy {args.strategy} {' '.join(extra)}")
    rows = []
    for cpus in args.cpus:
        r = measure(cpus, args, extra)
        legs = "; ".join(f"{name} {status}: {format_duration(wall)}, IPI round p50 "
                         f"{format_duration(p50)}" for name, wall, p50, status in r["legs"])
        rows.append([cpus, r.get("status", "-"), r["exit"], format_duration(r["wall_s"]),
                     format_duration(r["start_s"]), f"{r['peak_bytes'] / 2**30:.2f}",
                     f"{r['peak_bytes'] / cpus / 2**20:.1f}", _mib(r["uss_mean"]),
                     _mib(r["uss_max"]), r["leaked"], legs or " ".join(r["error"])])
        print(tabulate(rows[-1:], tablefmt="plain", disable_numparse=True), flush=True)
    print()
    print(tabulate(rows, ["cpus", "status", "exit", "wall", "CPU start", "peak GiB",
                          "MiB/CPU", "USS MiB mean", "max", "leaked", "legs"],
                   tablefmt="github", disable_numparse=True))
    print("peak: fall of the host's available memory during the run; MiB/CPU: that over "
          "--cpus; USS: private memory of each CPU process once all are up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
