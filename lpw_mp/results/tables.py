"""The terminal tables and the Markdown report of a judged result (see ``verdicts.annotate``).

Two layouts of the same figures. The full one, two tables (updater side, walker side), is the
Markdown report's and the terminal's when it fits. On a terminal too narrow for it, the compact
one: three tables (times, counts during the operation, walker side) with shorter headers, each
split again, strategy column repeated, if it still does not fit. Numbers are right-aligned with
thousands separators; a figure not to be trusted carries a ``?`` and a numbered note says why.
A leg cut short (interrupted or failed) shows what was known of it, marked partial."""

import re
import shutil
import textwrap
from dataclasses import dataclass

from tabulate import tabulate

from lpw_mp.results.repeats import figure, format_figure, interval_meaning, interval_text
from lpw_mp.results.verdicts import annotated, blame, compare_to_ipi
from lpw_mp.units import format_duration

MARK = "?"
#: A number and its unit, which prose is not folded between; and what holds them together.
_FIGURE = re.compile(r"([0-9]) (ns|us|ms|s|GiB|x)\b")
_KEEP = "\x00"
#: In the compact layout, an added median too close to ipi's to be told apart is ``~120 ns``.
UNRESOLVED = "~"


@dataclass(frozen=True)
class Column:
    key: str
    header: str   # full layout; {op} is the operation
    short: str    # compact layout
    numeric: bool = True


UPDATER = (
    Column("strategy", "strategy", "strategy", False),
    Column("time", "{op} time", "{op} time"),
    Column("per_op", "per op", "per op"),
    Column("vs_ipi", "vs ipi", "vs ipi"),
    Column("serialised", "serialised", "serialised"),
    Column("skipped", "skipped", "skipped"),
    Column("ipis_sent", "IPIs sent", "IPIs sent"),
    Column("ipi_p50", "IPI round p50", "IPI p50"),
    Column("ipi_p99", "p99", "IPI p99"),
    Column("grace_periods", "grace periods", "grace periods"),
    Column("violations", "violations", "violations"),
    Column("safety", "safety", "safety", False),
)
WALKER = (
    Column("strategy", "strategy", "strategy", False),
    Column("walks_per_s", "walks/s", "walks/s"),
    Column("walker_p50", "begin+end p50", "p50"),
    Column("walker_vs_ipi", "vs ipi", "vs ipi"),
    Column("added", "added per walk", "added"),
    Column("share", "share of a walk", "share"),
    Column("walker_p99", "p99", "p99"),
    Column("p99_vs_ipi", "p99 vs ipi", "p99 vs ipi"),
    Column("walks", "walks during {op}", "walks"),
    Column("retries", "retries", "retries"),
)
#: How often an updater that skips the IPI when idle found a walker (results.overlap).
OVERLAP = (
    Column("strategy", "strategy", "strategy", False),
    Column("checks", "checks", "checks"),
    Column("found", "found a walker", "found"),
    Column("model", "model", "model"),
    Column("found_vs_model", "found / model", "/ model"),
    Column("rate", "walk starts/s", "starts/s"),
    Column("own_time", "own time per check", "own time"),
    Column("kernel", "kernel's (154 ns)", "kernel's"),
)
OVERLAP_TITLE = "How often the updater found a walker (and IPIed) against the overlap model"
#: The compact layout's tables, by column key.
COMPACT_TIMES = ("strategy", "time", "per_op", "vs_ipi", "ipi_p50", "ipi_p99", "safety")
COMPACT_COUNTS = ("strategy", "serialised", "skipped", "ipis_sent", "grace_periods",
                  "violations", "walks", "retries")
COMPACT_WALKER = ("strategy", "walks_per_s", "walker_p50", "walker_vs_ipi", "added", "share",
                  "walker_p99", "p99_vs_ipi")


def _count(n) -> str:
    return "-" if n is None else f"{n:,}"


def _ratio(x, suffix="") -> str:
    """``0.74x``, ``5.19x``, ``20.8x``, ``446x``, ``2,534x``."""
    if x is None:
        return "-"
    return format_figure("ratio", x) + (f" {suffix}" if suffix else "")


def _ns(value) -> str:
    return format_figure("ns", value)


def _walker_cells(name, side, rel, walks, retries, compact: bool) -> dict:
    """The walker table's cells of one leg: its walker phase ``side`` and ``rel`` to ipi's."""
    if name == "ipi" or not rel or rel["begin_end_ratio"] is None:
        relative = {"walker_vs_ipi": "baseline" if name == "ipi" and side else "-",
                    "added": "-", "share": "-"}
    else:
        added = _ns(rel["added_ns"])
        if not rel["resolved"]:
            added = UNRESOLVED + added if compact else added + " (within resolution)"
        relative = {"walker_vs_ipi": _ratio(rel["begin_end_ratio"]), "added": added,
                    "share": f"{rel['added_share']:+.1%}"}
    side = side or {}
    return {"walks_per_s": f"{side['walks_per_s']:,.0f}" if side else "-",
            "walker_p50": _ns(side.get("begin_end_median_ns")), **relative,
            "walker_p99": _ns(side.get("begin_end_p99_ns")),
            "p99_vs_ipi": "-" if name == "ipi" or not rel else _ratio(rel["p99_ratio"]),
            "walks": _count(walks), "retries": _count(retries)}


def _add_intervals(cells: dict, leg: dict) -> None:
    """Each figure's interval after it (the cells are keyed as ``repeats`` keys figures)."""
    for key, interval in (leg.get("intervals") or {}).items():
        if cells.get(key, "-") not in ("-", "baseline"):
            unit = figure(key).unit
            cells[key] += interval_text(interval, lambda v: format_figure(unit, v))


def _ok_cells(leg, compact: bool) -> dict:
    cells = _figure_cells(leg, compact)
    _add_intervals(cells, leg)
    cells.update(_overlap_cells(leg.get("overlap")))
    return cells


def _overlap_cells(found) -> dict:
    if not found:
        return {column.key: "-" for column in OVERLAP[1:]}
    return {"checks": _count(found["checks"]), "found": f"{found['observed']:.2%}",
            "model": f"{found['predicted']:.2%}",
            "found_vs_model": _ratio(found["ratio"]),
            "rate": f"{found['rate_per_s']:,.0f}", "own_time": format_duration(found["own_time_s"]),
            "kernel": f"{found['kernel_predicted']:.2%}"}


def _overlap_rows(rows: list) -> list:
    """The rows of the overlap table: the legs it has figures for."""
    return [row for row in rows if row.get("checks", "-") != "-"]


def _figure_cells(leg, compact: bool) -> dict:
    name, r = leg["strategy"], leg["ipi_round_s"]
    return {
        "strategy": name, "time": format_duration(leg["wall_s"]),
        "per_op": format_duration(leg["per_op_s"]),
        "vs_ipi": "baseline" if name == "ipi"
        else _ratio(leg.get("speedup_vs_ipi"), "faster"),
        "serialised": _count(leg["serialisations"]), "skipped": _count(leg["skipped"]),
        "ipis_sent": _count(leg["ipis_sent"]), "ipi_p50": format_duration(r["median"]),
        "ipi_p99": format_duration(r["p99"]), "grace_periods": _count(leg["grace_periods"]),
        "violations": _count(leg["violations"]["total"]), "safety": leg["safety"],
        **_walker_cells(name, leg.get("walker_side"), leg["walker_vs_ipi"], leg["walks"],
                        leg["retries"], compact)}


def _partial_cells(leg, base_side, compact: bool) -> dict:
    """A leg cut short: the time and counts up to then, the walker phase if it ended."""
    part, name = leg.get("partial"), leg["strategy"]
    cells = {column.key: "-" for column in UPDATER + WALKER + OVERLAP}
    cells.update(strategy=name, safety=leg["status"].upper())
    if not part:
        return cells
    done, total, elapsed = part["operations_done"], part["operations_total"], part["op_elapsed_s"]
    if elapsed is not None:
        share = f" ({done / total:.0%})" if total else ""
        cells["time"] = format_duration(elapsed) + share
        cells["per_op"] = format_duration(elapsed / done) if done else "-"
    rounds = part["ipi_rounds_at_least"]
    cells.update(serialised=f">={rounds:,}" if rounds else "0",
                 ipis_sent=_count(part["ipis_sent"]),
                 violations=_count((part["violations"] or {}).get("total")))
    side = part["walker_side"]
    rel = compare_to_ipi(side, base_side) if side else None
    started = elapsed is not None
    cells.update(_walker_cells(name, side, rel, part["walks"] if started else None,
                               part["retries"] if started else None, compact))
    return cells


def table_rows(result: dict, compact: bool = False):
    """``(rows, notes)``: every leg's cells by column key, in the order of the legs, a ``?``
    on each figure a reason not to trust it qualifies, and the numbered notes giving them."""
    result = annotated(result)
    base = next((leg for leg in result["legs"] if leg["strategy"] == "ipi"), None)
    base_side = (base.get("walker_side") or (base.get("partial") or {}).get("walker_side")
                 if base else None)
    rows, notes = [], []
    for leg in result["legs"]:
        name = leg["strategy"]
        if leg.get("status") == "ok":
            cells = _ok_cells(leg, compact)
            # A document annotated before warnings named their figures marks the strategy.
            figures = leg.get("warning_figures") or [["strategy"]] * len(leg["warnings"])
            for warning, keys in zip(leg["warnings"], figures):
                notes.append(f"[{len(notes) + 1}] {name}: {warning}")
                for key in keys:
                    if not cells[key].endswith(MARK):
                        cells[key] += MARK
        else:
            cells = _partial_cells(leg, base_side, compact)
        rows.append(cells)
    return rows, notes


def _render(columns, rows, op: str, compact: bool, fmt: str = "simple") -> str:
    """One table; ``simple`` is tabulate's, without the two spaces it pads every header
    with (which would cost a column per header of width)."""
    headers = [(c.short if compact else c.header).format(op=op) for c in columns]
    body = [[row[c.key] for c in columns] for row in rows]
    align = ["right" if c.numeric else "left" for c in columns]
    if fmt != "simple":
        return tabulate(body, headers, tablefmt=fmt, disable_numparse=True, colalign=align)
    rule = ["-" * max(map(len, cells)) for cells in zip(headers, *body)]
    return tabulate([headers, rule, *body], tablefmt="plain", disable_numparse=True,
                    colalign=align)


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def _fitted(title: str, columns, rows, op: str, compact: bool, width) -> list:
    """``title`` and the table; if it is wider than ``width``, the fewest tables of about as
    many columns each (every one with the strategy column) that fit."""
    first, rest = columns[0], list(columns[1:])
    for parts in range(1, len(rest) + 1):
        size = -(-len(rest) // parts)
        tables = [_render([first, *rest[i:i + size]], rows, op, compact)
                  for i in range(0, len(rest), size)]
        if width is None or all(_widest(t) <= width for t in tables):
            break
    out = [*_wrapped([title], width), tables[0]]
    for table in tables[1:]:
        out += ["", *_wrapped([f"{title.split(' (')[0]} (continued)"], width), table]
    return out


def _pick(columns, keys) -> list:
    by_key = {c.key: c for c in columns}
    return [by_key[key] for key in keys]


def _walker_title(result: dict) -> str:
    return ("Walker side (every CPU walking back to back, no updater running)"
            if _has_walker_phase(result) else "Walker side (during the operation)")


def _has_walker_phase(result: dict) -> bool:
    return any(leg.get("walker_side") or (leg.get("partial") or {}).get("walker_side")
               for leg in result["legs"])


def _full_tables(result: dict) -> list:
    """``(title, columns)`` of the full layout: updater side, walker side."""
    walker = WALKER if _has_walker_phase(result) else _pick(WALKER, ("strategy", "walks",
                                                                       "retries"))
    return [("Updater side", UPDATER), (_walker_title(result), walker)]


def _compact_tables(result: dict) -> list:
    op = result["config"]["op"]
    tables = [("Updater side", _pick(UPDATER, COMPACT_TIMES)),
              (f"Counts during the {op}", _pick(UPDATER + WALKER, COMPACT_COUNTS))]
    if _has_walker_phase(result):
        tables.append((_walker_title(result), _pick(WALKER, COMPACT_WALKER)))
    return tables


def terminal_width():
    """The terminal's width (or ``COLUMNS``); None when printing to no terminal, which has no
    width to fit."""
    return shutil.get_terminal_size(fallback=(0, 0)).columns or None


def _wrapped(lines, width) -> list:
    """Prose lines folded to ``width``, continuations indented under the text."""
    if width is None:
        return list(lines)
    out = []
    for line in lines:
        indent = " " * (line.index("] ") + 2 if line.startswith("[") else 4)
        # A figure stays whole: "20 us" is not cut between the number and its unit.
        line = _FIGURE.sub("\\1" + _KEEP + "\\2", line)
        out += [part.replace(_KEEP, " ") for part in textwrap.wrap(
            line, width, subsequent_indent=indent, break_on_hyphens=False) or [line]]
    return out


def describe_setup(result: dict) -> list:
    """The configuration; the host's cores, Python and memory; and, on a line of their own,
    its CPU, frequency governor and kernel and the lpw_mp commit (absent from a document
    written before lpw_mp recorded them)."""
    c, h = result["config"], result["host"]
    cpu = []
    if "kernel" in h:
        commit, governor = h.get("lpw_mp_commit"), h.get("cpu_freq_governor")
        version = (commit["commit"][:12] + ("+dirty" if commit.get("dirty") else "")
                   if commit else f"{result.get('lpw_mp_version', '?')} (not a checkout)")
        cpu = [f"CPU: {h.get('cpu_model') or 'model unknown'}, "
               f"{f'governor {governor}' if governor else 'no frequency governor'}, "
               f"{h['platform'].split('-')[0] or 'kernel'} {h['kernel'] or '?'}, "
               f"lpw_mp {version}"]
    return [
        f"{c['cpus']:,} simulated CPUs ({c['active_cpus']:,} running the process), "
        f"{c['op']} of {c['memory_h']} in {c['npmds']:,} THPs of {c['thp_size_h']}, "
        f"cpumask {c['cpumask']}, {c['walk_rate']:g} walks/s per CPU, "
        f"IRQ-off window {format_duration(c['walk_window'])}, seed {c['seed']}"
        + _memory_model(c),
        f"host: {h['usable_cores']} usable cores of {h['host_cpus']} "
        f"(affinity {_ranges(h['affinity'])}), {h['oversubscription']:g} processes per core, "
        f"Python {h['python']}, start method {h['start_method']}, "
        f"{h['memory_bytes'] / 2**30:.1f} GiB RAM",
        *cpu,
    ]


def _memory_model(config: dict) -> str:
    """Said only when it is not the measured default: under tso or weak the timings include
    the emulated store buffers."""
    model = config.get("memory_model", "sc")
    return "" if model == "sc" else (f", memory model {model} (stores buffered: timings are "
                                     f"the model's, not comparable with sc)")


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


def repeat_lines(result: dict) -> list:
    """What the figures are over: one sample, or the medians of the repeats and what their
    intervals mean."""
    asked = result["config"].get("repeat", 1)
    if asked == 1:
        return ["one sample per strategy: no intervals, and compare cannot tell a difference "
                "from noise (--repeat 6 gives 95% intervals)"]
    done = sorted({leg.get("repeats", 1) for leg in result["legs"] if leg.get("status") == "ok"})
    n = min(done, default=asked)
    level = _interval_level(result)
    what = (f"medians of {asked} repeats" if done == [asked]
            else f"medians of the repeats that finished ({n} to {max(done, default=n)} of "
                 f"{asked})")
    line = (f"{what}, run interleaved (every strategy once per round, each on a fresh "
            f"machine); {interval_meaning(n, level)}; ratios to ipi are medians of the "
            f"per-round ratios")
    return [line]


def _interval_level(result: dict):
    levels = [i["confidence"] for leg in result["legs"]
              for i in (leg.get("intervals") or {}).values()]
    return min(levels) if levels else None


def partial_lines(result: dict) -> list:
    """One line per leg cut short with figures: how far it got, what its row shows."""
    lines = []
    for leg in result["legs"]:
        if leg.get("cut"):
            cut = leg["cut"]
            done = leg["repeats"]
            where = _where(result, cut.get("partial")) if cut.get("partial") else ""
            lines.append(f"{leg['strategy']}: repeat {done + 1} of {leg['repeats_asked']} was "
                         f"{cut['status']}{where}: its row shows the {done} that finished")
        part = leg.get("partial")
        if not part:
            continue
        shown = ("its row shows the figures up to then (partial; serialised >=N: at least N "
                 "IPI rounds)" if part["op_elapsed_s"] is not None
                 else "its row shows what was known (partial)")
        if part["walker_side"]:
            shown += ", its walker phase had ended"
        lines.append(f"{leg['strategy']} was {leg['status']}{_where(result, part)}: {shown}")
    return lines


def _where(result: dict, part: dict) -> str:
    """`` during the munmap after 12 of 128 operations in 1.2 s``: where a leg was cut."""
    op = result["config"]["op"]
    where = {"starting": f"while starting its CPUs ({part['cpus_started']:,} of "
                         f"{result['config']['cpus']:,} started)",
             "walker phase": "during its walker phase",
             "stopping": "while stopping its CPUs"}.get(part["phase"], f"during the {op}")
    if part["op_elapsed_s"] is not None:
        total = part["operations_total"]
        where += (f" after {part['operations_done']:,} of {total:,} operations"
                  if total else f" after {part['operations_done']:,} operations")
        where += f" in {format_duration(part['op_elapsed_s'])}"
    return " " + where


def _trailer(result: dict) -> list:
    lines = []
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    for leg in result["legs"]:
        if leg.get("safety") == "VIOLATED":
            lines.append(f"SAFETY VIOLATION: {leg['strategy']} let walkers use freed page-table "
                         f"memory {leg['violations']['total']:,} times. {blame(leg)}")
    for e in result.get("errors", []):
        lines.append(f"error: {e}")
    if result["status"] == "interrupted":
        lines.append("this run was interrupted: only the strategies above with a safety "
                     "verdict finished")
    return lines


#: ``why`` of a round's last responder (``kernel.trace.WHY_NAMES``), as the reports say it.
WHY_TEXT = {"irq-off": "inside an IRQ-off window", "not-running": "not running (descheduled "
            "by the host)", "queue": "just last in the queue", None: "(--trace says why)"}


def slowest_round_rows(result: dict) -> list:
    """Per leg with IPI rounds, its slowest ones (``slowest_rounds``), slowest first."""
    rows, repeated = [], result["config"].get("repeat", 1) > 1
    for leg in result["legs"]:
        for r in leg.get("slowest_rounds") or ():
            row = {"strategy": leg["strategy"], "round": f"round {r['round']:,}",
                   "took": format_duration(r["took_s"]),
                   "into the operation": format_duration(r["at_s"]),
                   "targets": f"{r['targets']:,}",
                   "answered last": "-" if r["cpu"] is None else f"CPU {r['cpu']}",
                   "why": WHY_TEXT.get(r["why"], r["why"])}
            if repeated:
                row["repeat"] = r.get("repeat")
            rows.append(row)
    return rows


def slowest_round_lines(result: dict) -> list:
    """One line per leg: its slowest IPI round, and who answered it last."""
    lines = []
    for leg in result["legs"]:
        rounds = leg.get("slowest_rounds")
        if rounds:
            r = rounds[0]
            who = (f"; CPU {r['cpu']} answered last" if r["cpu"] is not None else "") + \
                (f", {WHY_TEXT[r['why']]}" if r["why"] in WHY_TEXT and r["why"] else "")
            lines.append(f"slowest IPI round of {leg['strategy']}: round {r['round']:,}, "
                         f"{format_duration(r['took_s'])}, "
                         f"{format_duration(r['at_s'])} into the operation{who}")
    return lines


def trace_lines(result: dict) -> list:
    """What each leg's trace holds, and what it lost to the size of its buffers."""
    lines = []
    for leg in result["legs"]:
        for t in leg.get("traces") or ([leg["trace"]] if leg.get("trace") else []):
            events = "" if t.get("events") is None else f"{t['events']:,} events, "
            line = f"trace {t['file']}: {events}window {t['window']}"
            if t["dropped"]:
                line += (f"; {t['dropped']:,} records lost to full buffers on "
                         f"{len(t['dropped_by_track'])} tracks (the oldest; raise "
                         f"--trace-buffer to keep them)")
            lines.append(line)
    return lines


def format_terminal(result: dict, width=None) -> str:
    """The report for a terminal of ``width`` columns (default: this terminal's; none when
    not printing to one): the full tables if they fit, else the compact ones, and the prose
    folded to fit."""
    result = annotated(result)
    width = width or terminal_width()
    op = result["config"]["op"]
    rows, notes = table_rows(result)
    full = _full_tables(result)
    compact = width is not None and any(
        _widest(_render(columns, rows, op, False)) > width for _, columns in full)
    if compact:
        rows, notes = table_rows(result, compact=True)
    parts = _wrapped(describe_setup(result) + repeat_lines(result), width)
    for title, columns in (_compact_tables(result) if compact else full):
        parts += [""] + _fitted(title, columns, rows, op, compact, width)
    found = _overlap_rows(rows)
    if found:
        parts += [""] + _fitted(OVERLAP_TITLE, OVERLAP, found, op, compact, width)
        parts += [""] + _wrapped([OVERLAP_NOTE], width)
    if compact and any(row["added"].startswith(UNRESOLVED) for row in rows):
        parts += _wrapped([f"{UNRESOLVED}: the added median is within the histogram's "
                           f"resolution, not told apart from ipi's"], width)
    for heading, lines in (("? marks a figure not to be trusted:", notes),
                           ("", slowest_round_lines(result) + trace_lines(result)),
                           ("", partial_lines(result) + _trailer(result))):
        if lines:
            parts += [""] + ([heading] if heading else []) + _wrapped(lines, width)
    return "\n".join(parts)


#: Under the overlap table: what its columns are.
OVERLAP_NOTE = ("found a walker: the share of its checks that found a walk in progress and IPIed; "
                "model: the share the overlap model predicts from the walk starts per second "
                "outside IPI rounds and the measured gaps between checks; kernel's: the model "
                "at the kernel's own time per check, 154 ns (v5.8: 39 ms for 253,952 THPs), "
                "the same walks (README, 'How often count and percpu must IPI')")


def format_markdown(result: dict) -> str:
    """The report in Markdown: the full tables, whatever the terminal."""
    result = annotated(result)
    op = result["config"]["op"]
    rows, notes = table_rows(result)
    (_, updater), (_, walker) = _full_tables(result)
    parts = [f"# lpw_mp run {result.get('run_id', '')}".rstrip(), "",
             f"Status: **{result['status']}**, started {result['started']}, "
             f"finished {result['finished']}.", "",
             f"Command: `{' '.join(result['command'])}`", ""]
    parts += [f"- {line}" for line in describe_setup(result) + repeat_lines(result)]
    parts += ["", "## Updater side", "", _render(updater, rows, op, False, "pipe"),
              "", "## Walker side", "",
              "Measured in a walker phase of its own: every CPU walks back to back, with no "
              "updater running. Times are medians (p50) and p99 of IRQ-disable + begin and "
              "end + IRQ-enable per walk; `vs ipi` divides by the ipi walker, which only sets "
              "and clears its IRQ flag; `share of a walk` is the added median time over ipi's "
              "median IRQ-off window.", "",
              _render(walker, rows, op, False, "pipe")]
    found = _overlap_rows(rows)
    if found:
        parts += ["", f"## {OVERLAP_TITLE}", "", _render(OVERLAP, found, op, False, "pipe"), "",
                  OVERLAP_NOTE + "."]
    slowest = slowest_round_rows(result)
    if slowest:
        parts += ["", "## Slowest IPI rounds", "",
                  "The CPU that answered last is the one whose acknowledgement ended the "
                  "round; why it came last is known when the run is traced (`--trace`): "
                  "it was inside an IRQ-off window when the IPI was sent, not running "
                  "(descheduled by the host), or just last in the queue (README, 'Traces').",
                  "", tabulate(slowest, headers="keys", tablefmt="pipe")]
    traced = trace_lines(result)
    if traced:
        parts += ["", "## Traces", ""] + [f"- {line}" for line in traced]
    if notes:
        parts += ["", "A figure marked `?` is not to be trusted:", ""]
        parts += [f"- {n}" for n in notes]
    trailer = partial_lines(result) + _trailer(result)
    if trailer:
        parts += [""] + [f"- {line}" for line in trailer]
    return "\n".join(parts) + "\n"
