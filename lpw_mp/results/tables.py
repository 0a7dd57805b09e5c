"""The terminal tables and the Markdown report of a judged result (see ``verdicts.annotate``)."""

from tabulate import tabulate

from lpw_mp.units import format_duration

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
