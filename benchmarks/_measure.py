"""What the benchmarks measure the same way: the C floor of a broadcast round, the ``ipi``
leg of an idle machine, a CPU process's memory, the counts a host can run, and the header and
JSON document every figure is published with.

Imported by the scripts beside it (``python benchmarks/X.py`` puts this folder on sys.path).
"""

import argparse
import datetime
import gc
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

import psutil

from lpw_mp.harness.config import Config, ConfigError
from lpw_mp.harness.emulator import EmulatorError
from lpw_mp.harness.hostinfo import host_metadata

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FLOOR = os.path.join(HERE, "calibrate", "ipi_floor.sh")

#: Rounds run and discarded first: freshly forked CPUs take copy-on-write faults on their
#: first pass through the loop (ipi_floor.c likewise sleeps 200 ms before it measures).
WARMUP = 50
THP = 2 << 20
#: A trial whose ratio ranges over more than this share of its median is not to be trusted.
UNSTABLE_SPREAD = 0.2
#: CPU processes whose USS and PSS are read: the smaps of 4096 processes would take longer to
#: read than the start-up they describe.
MEMORY_SAMPLE = 32


class FloorError(RuntimeError):
    """The C floor could not run at this count (a host limit, as the emulator's are)."""


# -- the C floor ---------------------------------------------------------------------------------

def floor_round_us(script: str, cpus: int):
    """The C floor's microseconds per round at ``cpus``: its own median of 5 trials, each the
    mean of 200 rounds. None when ``script`` does not exist."""
    if not os.path.exists(script):
        return None
    try:
        out = subprocess.run(["sh", script, str(cpus)], capture_output=True, text=True,
                             timeout=600, check=True).stdout
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or "").strip().splitlines()[-1:] or [f"status {exc.returncode}"]
        raise FloorError(f"the C floor failed at {cpus} CPUs: {last[0]}") from None
    except subprocess.TimeoutExpired:
        raise FloorError(f"the C floor did not finish at {cpus} CPUs within 600 s") from None
    m = re.search(r"median_us_per_round=([\d.]+)", out)
    if not m:
        raise FloorError(f"the C floor printed no median_us_per_round at {cpus} CPUs")
    return float(m.group(1))


# -- the emulator's ipi leg ----------------------------------------------------------------------

def ipi_config(cpus: int, rounds: int, seed: int, walk_rate: float = 0.0) -> Config:
    """``WARMUP + rounds`` THPs, every one a huge leaf (no PTE tables), so that munmap under
    ``ipi`` sends exactly one broadcast round per THP; CPUs idle unless ``walk_rate``."""
    return Config(cpus=cpus, memory=(WARMUP + rounds) * THP, thp_size=THP,
                  strategies=["ipi"], walk_rate=walk_rate, pte_fraction=0.0, seed=seed,
                  runs_dir=tempfile.gettempdir()).validate()


def run_ipi_leg(emu) -> dict:
    """The coordinator's munmap on the started machine ``emu``: ``leg_figures`` of its stats."""
    emu.start_coordinator()
    return leg_figures(emu.wait_coordinator()["stats"])


def leg_figures(stats: dict, warmup: int = WARMUP) -> dict:
    """Per-THP figures of an ``ipi`` munmap, the first ``warmup`` THPs left out.

    The rounds are timed one by one, so the warm-up's are dropped exactly; the coordinator's
    own time between rounds (``wall_s`` less every round) is only known in total, so each THP
    is charged its average over all of them. The leg per THP is then the mean measured round
    plus that average: what ``wall_s`` over the THPs would be with warm CPUs (slightly high if
    the coordinator's own first THPs are slower, never low)."""
    rounds = stats["rounds"]
    if len(rounds) <= warmup:
        raise ValueError(f"{len(rounds)} rounds: none left after {warmup} of warm-up")
    measured = rounds[warmup:]
    own = max(0.0, stats["wall_s"] - sum(rounds)) / len(rounds)
    mean = statistics.fmean(measured)
    return {"round_us": statistics.median(measured) * 1e6, "round_mean_us": mean * 1e6,
            "own_us_per_thp": own * 1e6, "leg_us_per_thp": (mean + own) * 1e6,
            "thps": len(rounds), "wall_s": stats["wall_s"]}


# -- memory --------------------------------------------------------------------------------------

def available_bytes() -> int:
    """The host's MemAvailable: its fall counts what the kernel spends on a process too. The
    previous machine's shared arrays are collected first, so that they are not freed during
    the next measurement."""
    gc.collect()
    return psutil.virtual_memory().available


def hidden_free_bytes(zoneinfo: str = "/proc/zoneinfo"):
    """The most that the kernel's per-CPU free page lists can hold (the sum of every
    pageset's ``high``): pages taken from or given back to them do not move MemAvailable, so
    a fall smaller than this says little. None if it cannot be read."""
    try:
        with open(zoneinfo) as f:
            highs = [int(line.split()[1]) for line in f if line.split()[:1] == ["high:"]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(highs) * os.sysconf("SC_PAGE_SIZE") if highs else None


def uss_pss(pid: int):
    """``(uss, pss)`` in bytes of process ``pid``; None if it cannot be read (gone, denied)."""
    try:
        info = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return None
    return info.uss, getattr(info, "pss", None)


def median_uss_pss(pids: list) -> tuple:
    """Median USS and PSS over at most ``MEMORY_SAMPLE`` of ``pids``, evenly spaced."""
    step = max(1, len(pids) // MEMORY_SAMPLE)
    read = [m for m in map(uss_pss, pids[::step][:MEMORY_SAMPLE]) if m]
    pss = [p for _, p in read if p is not None]
    return (statistics.median(u for u, _ in read) if read else None,
            statistics.median(pss) if pss else None)


def alive(proc) -> bool:
    """Whether a psutil process still runs (a zombie does not)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- figures over trials -------------------------------------------------------------------------

def spread(values) -> dict:
    """``{"median", "low", "high", "n"}`` of the values that are not None (all None: n 0)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "low": None, "high": None, "n": 0}
    return {"median": statistics.median(values), "low": min(values), "high": max(values),
            "n": len(values)}


def paired_ratios(tops, bottoms) -> list:
    """Trial by trial ``top / bottom``, where both were measured: the pairing cancels what
    the host did to both in the same trial."""
    return [t / b for t, b in zip(tops, bottoms) if t is not None and b]


def unstable(ratio: dict) -> bool:
    return ratio["n"] > 1 and (ratio["high"] - ratio["low"]) > UNSTABLE_SPREAD * ratio["median"]


def us_text(us) -> str:
    return "n/a" if us is None else f"{us:,.1f}"


def ratio_text(ratio: dict) -> str:
    """``1.08x (1.02-1.21x)``, the range only when there are two trials or more; ``?`` after
    it when it is ``unstable``, as lpw_mp's own tables mark a figure not to be trusted."""
    if not ratio["n"]:
        return "n/a"
    text = f"{ratio['median']:.2f}x"
    text += f" ({ratio['low']:.2f}-{ratio['high']:.2f}x)" if ratio["n"] > 1 else ""
    return text + ("?" if unstable(ratio) else "")


# -- counts, host, documents ---------------------------------------------------------------------

def over_counts(counts, measure):
    """``measure(n)`` for each count in turn, until the host cannot run one: ``(points,
    limit)``, ``limit`` None or ``{"cpus", "reason"}`` with the one line that says why."""
    points = []
    for n in counts:
        try:
            points.append(measure(n))
        except (ConfigError, EmulatorError, FloorError) as exc:
            return points, {"cpus": n, "reason": str(exc).splitlines()[0]}
    return points, None


def load_average() -> list:
    return list(os.getloadavg())


def load_text(load) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def busy_warning(load, cores: int):
    """pyperf's advice: a host already busy when a measurement starts skews it."""
    if load[0] > cores:
        return (f"the host was busy (load average {load[0]:.2f} on {cores} cores) before a "
                f"measurement: its figures include other work's delays")
    return None


def point_warnings(point: dict, cores: int, ratios: dict) -> list:
    """A host busy before the count, and each of ``ratios`` (key: label) that varied more
    across trials than a figure to rely on does."""
    busy = busy_warning(point["load_before"], cores)
    out = [f"{point['cpus']} CPUs: {busy}"] if busy else []
    for key, label in ratios.items():
        if unstable(point[key]):
            out.append(f"{point['cpus']} CPUs: {label} unstable across trials "
                       f"({ratio_text(point[key]).rstrip('?')}): rerun on a quieter host")
    return out


# -- the command line ----------------------------------------------------------------------------

def options(description: str, cpus: list, trials: int) -> argparse.ArgumentParser:
    """The options every scaling benchmark has."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--cpus", type=int, nargs="+", default=cpus)
    p.add_argument("--rounds", type=int, default=200,
                   help=f"measured IPI rounds (THPs) per trial, after {WARMUP} of warm-up")
    p.add_argument("--trials", type=int, default=trials)
    p.add_argument("--floor", default=DEFAULT_FLOOR, help="path of ipi_floor.sh")
    p.add_argument("--json", metavar="PATH", help="write the figures and host metadata here")
    return p


def parse(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.rounds < 1 or args.trials < 1:
        p.error("--rounds and --trials must be at least 1")
    return args


def measure_counts(doc: dict, args, point) -> None:
    """Print the header, then ``point(n, args)`` for each count into ``doc`` until the host
    cannot run one."""
    print(header(doc), flush=True)
    doc["points"], doc["limit"] = over_counts(args.cpus, lambda n: point(n, args))
    doc["load_average_end"] = load_average()


def finish(doc: dict, lines: list, json_path) -> None:
    """Print where the counts stopped, ``lines`` (targets, warnings) and the load at the end;
    write the JSON document if asked."""
    if doc["limit"]:
        ran = doc["points"][-1]["cpus"] if doc["points"] else "none"
        print(f"stopped at {doc['limit']['cpus']} CPUs (the largest count run: {ran}): "
              f"{doc['limit']['reason']}")
    for line in lines:
        print(line)
    print(f"load average {load_text(doc['load_average_end'])} at the end")
    if json_path:
        write_json(json_path, doc)


def document(name: str, argv, cpus, **figures) -> dict:
    """A benchmark's JSON document: what ran, when, on which host, and its figures."""
    return {"benchmark": name, "command": command_line(name, argv),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": host_metadata(max(cpus), "fork"), **figures}


def command_line(name: str, argv) -> str:
    return shlex.join(["python", f"benchmarks/{name}.py", *argv])


def header(doc: dict) -> str:
    """Date, command, host and load average, the lines every table is printed under."""
    host = doc["host"]
    commit = host.get("lpw_mp_commit") or {}
    rev = commit.get("commit", "")[:12] + ("+dirty" if commit.get("dirty") else "")
    return (f"{doc['date']}, {doc['command']}\n"
            f"host: {host['usable_cores']} usable cores, "
            f"{host['memory_bytes'] / 2**30:.1f} GiB, Python {host['python']}, "
            f"{host['platform']}{', lpw_mp ' + rev if rev else ''}; "
            f"load average {load_text(host['load_average'])} at the start")


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"figures written to {path}", file=sys.stderr)
