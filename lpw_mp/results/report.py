"""Judging and formatting a result: the safety verdict, trust warnings, the terminal table,
Markdown and JSON, and writing a run folder atomically."""

import ctypes
import errno
import json
import os
import secrets
import shutil
import time

from tabulate import tabulate

from lpw_mp.results.stats import MIN_SAMPLES, P99_SAMPLES
from lpw_mp.units import format_duration
from lpw_mp.harness.walkers import compare_to_ipi

#: Above this many simulated CPUs per host core, latencies are mostly host scheduling.
OVERSUBSCRIBED = 4.0
#: Coefficient of variation of IPI rounds above which the median is called unstable.
UNSTABLE_CV = 0.5
#: Walks during the operation below this share of those asked for are flagged.
SHORTFALL = 0.5


# -- judging ---------------------------------------------------------------------------------

def safety_verdict(leg: dict) -> str:
    """``ok``, ``VIOLATED`` (a safe strategy let a walker use freed memory: an emulator bug),
    ``caught`` (the unsafe control was caught, as it should be) or ``not caught``."""
    total = leg["violations"]["total"]
    if leg["safe"]:
        return "VIOLATED" if total else "ok"
    return "caught" if total else "not caught"


def leg_warnings(leg: dict, host: dict, config: dict) -> list:
    """Reasons, pyperf-style, not to trust a leg's figures."""
    out = []
    rounds = leg["ipi_round_s"]
    if 0 < rounds["n"] < MIN_SAMPLES:
        out.append(f"only {rounds['n']} IPI rounds: the median is not reliable")
    elif MIN_SAMPLES <= rounds["n"] < P99_SAMPLES:
        out.append(f"p99 of only {rounds['n']} IPI rounds: it rests on one or two samples")
    if rounds["n"] >= MIN_SAMPLES and rounds["cv"] > UNSTABLE_CV:
        out.append(f"IPI round latency is unstable (coefficient of variation {rounds['cv']:.2f})")
    walker = leg.get("walker_side")
    if walker is not None and walker["walks"] < MIN_SAMPLES:
        out.append(f"only {walker['walks']} walks in {walker['seconds']:.1f} s of walker phase: "
                   f"walker-side figures are not reliable (raise --walker-time or --walk-rate)")
    rate = config["walk_rate"]
    late = leg["walk_lateness_s"]
    if rate and late is not None and late > max(1.0 / rate, 0.005):
        out.append(f"walks started {format_duration(late)} late on average: the host could not "
                   f"keep up with --walk-rate {rate:g}")
    # Walks are drawn at --walk-rate but only start when the host runs the CPU: on a busy host
    # the updater then met far fewer walks than the figures are said to be for.
    wall, active = leg["wall_s"], config["active_cpus"]
    expected = rate * wall * active if wall and active else 0
    if expected >= MIN_SAMPLES and leg["walks"] < expected * SHORTFALL:
        out.append(f"walks ran at {leg['walks'] / wall / active:.3g}/s per CPU during the "
                   f"{config['op']}, under {SHORTFALL:.0%} of the {rate:g}/s asked "
                   f"(--walk-rate): the host could not keep up, so the updater met fewer "
                   f"walks than asked")
    if leg["pool_exhausted"]:
        out.append(f"{leg['pool_exhausted']} splits skipped: the PTE page pool ran out")
    if safety_verdict(leg) == "not caught":
        out.append("the unsafe control was not caught: the workload did not hit the race "
                   "(see README, 'Catching the race')")
    return out


def run_warnings(result: dict) -> list:
    host, out = result["host"], []
    if host["oversubscription"] > OVERSUBSCRIBED:
        out.append(f"{host['oversubscription']:g} simulated CPUs per host core: latencies include "
                   f"host scheduling delay, not only the emulated protocol")
    load = host.get("load_average")
    if load and load[0] > host["usable_cores"]:
        out.append(f"the host was already busy (load average {load[0]:.1f} on "
                   f"{host['usable_cores']} cores) when the run started")
    return out


def annotate(result: dict) -> dict:
    """Add the safety verdicts, warnings and walker-side ratios to ``result`` in place."""
    legs_ok = [leg for leg in result["legs"] if leg.get("status") == "ok"]
    base = next((leg for leg in legs_ok if leg["strategy"] == "ipi"), None)
    for leg in legs_ok:
        leg["safety"] = safety_verdict(leg)
        leg["warnings"] = leg_warnings(leg, result["host"], result["config"])
        leg["walker_vs_ipi"] = compare_to_ipi(leg.get("walker_side"),
                                              base.get("walker_side") if base else None)
        if base and base["wall_s"] and leg["wall_s"]:
            leg["speedup_vs_ipi"] = base["wall_s"] / leg["wall_s"]
    result["warnings"] = run_warnings(result)
    result["unsafe_violations"] = sum(leg["violations"]["total"] for leg in legs_ok
                                      if leg["safe"])
    return result


def exit_status(result: dict) -> int:
    """0: all legs ran and every safe strategy was safe; 1: a leg failed or a safe strategy
    let a walker use freed memory; 128+N: interrupted by signal N."""
    if result["status"] == "interrupted":
        return 130 if result.get("signal") == "SIGINT" else 143
    if result["status"] == "failed" or result.get("unsafe_violations"):
        return 1
    return 0


# -- tables ----------------------------------------------------------------------------------

def _fmt_ratio(x, suffix=""):
    return "-" if x is None else f"{x:.2f}x" + (f" {suffix}" if suffix else "")


def _ns(value):
    return format_duration(value / 1e9 if value is not None else None)


def table_rows(result: dict):
    """Two tables, updater side and walker side, and the numbered notes behind each ``?``."""
    op = result["config"]["op"]
    updater_headers = ["strategy", f"{op} time", "per op", "vs ipi", "serialised", "skipped",
                       "IPIs sent", "IPI round p50", "p99", "grace periods", "violations",
                       "safety"]
    walker_headers = ["strategy", "walks/s", "begin+end p50", "vs ipi", "added per walk",
                      "share of a walk", "p99", "p99 vs ipi", f"walks during {op}", "retries"]
    updater, walker, notes = [], [], []
    for leg in result["legs"]:
        name = leg["strategy"]
        if leg.get("status") != "ok":
            failed = [name, leg.get("status", "?").upper(), leg.get("error", "")]
            updater.append(failed + [""] * (len(updater_headers) - 3))
            walker.append(failed[:2] + [""] * (len(walker_headers) - 2))
            continue
        for w in leg["warnings"]:
            notes.append(f"[{len(notes) + 1}] {name}: {w}")
        name += "?" if leg["warnings"] else ""
        r = leg["ipi_round_s"]
        updater.append([
            name, format_duration(leg["wall_s"]), format_duration(leg["per_op_s"]),
            "baseline" if leg["strategy"] == "ipi"
            else _fmt_ratio(leg.get("speedup_vs_ipi"), "faster"),
            leg["serialisations"], leg["skipped"], leg["ipis_sent"],
            format_duration(r["median"]), format_duration(r["p99"]), leg["grace_periods"],
            leg["violations"]["total"], leg["safety"]])
        side, rel = leg.get("walker_side") or {}, leg["walker_vs_ipi"]
        if leg["strategy"] == "ipi" or rel["begin_end_ratio"] is None:
            relative = ["baseline" if leg["strategy"] == "ipi" else "-", "-", "-"]
        else:
            noise = " (within resolution)" if not rel["resolved"] else ""
            relative = [_fmt_ratio(rel["begin_end_ratio"]), _ns(rel["added_ns"]) + noise,
                        f"{rel['added_share']:+.1%}"]
        walker.append([
            name, f"{side['walks_per_s']:.0f}" if side else "-",
            _ns(side.get("begin_end_median_ns")), *relative,
            _ns(side.get("begin_end_p99_ns")),
            "-" if leg["strategy"] == "ipi" else _fmt_ratio(rel["p99_ratio"]),
            leg["walks"], leg["retries"]])
    if not any(leg.get("walker_side") for leg in result["legs"]):
        # --walker-time 0: only the walks made during the operation are left to show.
        keep = [0, len(walker_headers) - 2, len(walker_headers) - 1]
        walker_headers = [walker_headers[i] for i in keep]
        walker = [[row[i] for i in keep] for row in walker]
    return (updater_headers, updater), (walker_headers, walker), notes


def describe_setup(result: dict) -> list:
    c, h = result["config"], result["host"]
    return [
        f"{c['cpus']} simulated CPUs ({c['active_cpus']} running the process), "
        f"{c['op']} of {c['memory_h']} in {c['npmds']} THPs of {c['thp_size_h']}, "
        f"cpumask {c['cpumask']}, {c['walk_rate']:g} walks/s per CPU, "
        f"IRQ-off window {format_duration(c['walk_window'])}, seed {c['seed']}",
        f"host: {h['usable_cores']} usable cores of {h['host_cpus']} "
        f"(affinity {_ranges(h['affinity'])}), {h['oversubscription']:g} processes per core, "
        f"Python {h['python']}, start method {h['start_method']}, "
        f"{h['memory_bytes'] / 2**30:.1f} GiB RAM",
    ]


def _ranges(cores) -> str:
    if not cores:
        return "-"
    spans, start, prev = [], cores[0], cores[0]
    for c in cores[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(spans)


def _trailer(result: dict) -> list:
    lines = []
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    for leg in result["legs"]:
        if leg.get("safety") == "VIOLATED":
            lines.append(f"SAFETY VIOLATION: {leg['strategy']} let walkers use freed page-table "
                         f"memory {leg['violations']['total']} times. This is a bug in lpw_mp.")
    for e in result.get("errors", []):
        lines.append(f"error: {e}")
    if result["status"] == "interrupted":
        lines.append("this run was interrupted: only the strategies above that show figures "
                     "finished")
    return lines


def format_terminal(result: dict) -> str:
    (uh, ur), (wh, wr), notes = table_rows(result)
    parts = describe_setup(result) + [
        "", "Updater side", tabulate(ur, uh, tablefmt="simple", disable_numparse=True),
        "", "Walker side (every CPU walking back to back, no updater running)"
        if result["config"].get("walker_time") else "Walker side (during the operation)",
        tabulate(wr, wh, tablefmt="simple", disable_numparse=True)]
    if notes:
        parts += ["", "? figures not to be trusted:"] + notes
    trailer = _trailer(result)
    if trailer:
        parts += [""] + trailer
    return "\n".join(parts)


def format_markdown(result: dict) -> str:
    (uh, ur), (wh, wr), notes = table_rows(result)
    parts = [f"# lpw_mp run {result.get('run_id', '')}".rstrip(), "",
             f"Status: **{result['status']}**, started {result['started']}, "
             f"finished {result['finished']}.", "",
             f"Command: `{' '.join(result['command'])}`", ""]
    parts += [f"- {line}" for line in describe_setup(result)]
    parts += ["", "## Updater side", "", tabulate(ur, uh, tablefmt="github", disable_numparse=True),
              "", "## Walker side", "",
              "Measured in a walker phase of its own: every CPU walks back to back, with no "
              "updater running. Times are medians (p50) and p99 of IRQ-disable + begin and "
              "end + IRQ-enable per walk; `vs ipi` divides by the ipi walker, which only sets "
              "and clears its IRQ flag; `share of a walk` is the added median time over ipi's "
              "median IRQ-off window.", "",
              tabulate(wr, wh, tablefmt="github", disable_numparse=True)]
    if notes:
        parts += ["", "Figures marked `?` are not to be trusted:", ""]
        parts += [f"- {n}" for n in notes]
    trailer = _trailer(result)
    if trailer:
        parts += [""] + [f"- {line}" for line in trailer]
    return "\n".join(parts) + "\n"


# -- writing ---------------------------------------------------------------------------------

#: Fresh ids drawn before giving up when every one is taken (one clash is 1 in 16 million).
ID_TRIES = 20
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def new_run_id() -> str:
    """Time-ordered and unique even for two runs started in the same second."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``, or raise FileExistsError if ``dst`` exists, even as an empty
    folder (which a plain ``os.rename`` would silently replace)."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                      _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: the file system cannot do it
            raise OSError(err, os.strerror(err), dst)
    # Without renameat2: claim the name (mkdir is exclusive), then replace our own empty folder.
    os.mkdir(dst)
    os.rename(src, dst)


def write_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` and onto the disk, so that a folder renamed into place
    afterwards never holds a truncated file, even after a crash."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_folder(runs_dir: str, prefix: str, write, folder_id=None) -> str:
    """Make a new folder ``runs_dir/<prefix><id>/`` filled by ``write(stage, folder_id)``.

    ``write`` fills a hidden staging folder, renamed into place only if nothing has that name
    yet: the folder is complete or absent, and an existing one is never touched, even by
    another run that drew the same id at the same moment. On a clash a new id is drawn and
    ``write`` runs again. ``folder_id``, if given, is tried first. Returns the folder."""
    os.makedirs(runs_dir, exist_ok=True)
    stage = os.path.join(runs_dir, f".staging-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(stage)
    try:
        for _ in range(ID_TRIES):
            folder_id = folder_id or prefix + new_run_id()
            write(stage, folder_id)
            final = os.path.join(runs_dir, folder_id)
            try:
                rename_noreplace(stage, final)
                return final
            except FileExistsError:
                folder_id = None
        raise FileExistsError(errno.EEXIST, f"no free folder name after {ID_TRIES} tries",
                              runs_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_run(result: dict, runs_dir: str, extra=None) -> str:
    """Write ``report.md`` and ``result.json`` into a new ``runs_dir/<run-id>/`` (see
    ``write_folder``); ``result["run_id"]``, if set, is tried first, and is set to the id used.
    ``extra`` maps more file names to functions rendering them from the result."""
    def write(stage, run_id):
        result["run_id"] = run_id
        write_file(os.path.join(stage, "result.json"), json.dumps(result, indent=2) + "\n")
        write_file(os.path.join(stage, "report.md"), format_markdown(result))
        for name, render in (extra or {}).items():
            write_file(os.path.join(stage, name), render(result))
    return write_folder(runs_dir, "", write, result.get("run_id"))
