"""The picture of a time window of a trace (``timeline``): which window to draw (an IPI round,
the slowest one, a violation, or times given), which CPUs get a row, and the drawing itself,
one row per CPU under the coordinator's. matplotlib is the optional ``plot`` extra, imported
only to draw.

Times are the trace's: microseconds from its origin. Every artist the figure draws has a
``gid`` saying what it is, for whoever reads the figure back: ``walk``, ``ipi``, ``idle``,
``op``, ``step``, ``round``, ``rcu``, ``grace`` (collections of bars), ``band`` (the selected
round across every row), ``violation`` and ``instant`` (markers) and ``why`` (the annotation
of the round's last responder)."""

import re
from dataclasses import dataclass, field

from lpw_mp.results import traces
from lpw_mp.units import format_duration

#: Around a round: this fraction of its length on each side, and at least MIN_MARGIN_US.
ROUND_MARGIN, MIN_MARGIN_US = 0.25, 50.0
#: Around a violation outside any walk: this long before it; after any violation, AFTER_US.
VIOLATION_BEFORE_US, VIOLATION_AFTER_US = 200.0, 100.0
#: CPU rows drawn unless --max-rows says otherwise.
MAX_ROWS = 64
#: The highest CPU number --cpus takes: a typo like 0-9999999999 must not build a huge list.
MAX_CPU = (1 << 16) - 1


class TimelineError(ValueError):
    """A window or a set of rows the trace cannot give (no such round, nothing in the
    window); one line."""


@dataclass
class Trace:
    """A loaded trace sorted into the tracks a timeline draws, each in time order."""
    strategy: str
    coordinator: list = field(default_factory=list)
    rcu: list = field(default_factory=list)
    cpus: dict = field(default_factory=dict)  # CPU number -> events of its track

    def tracks(self):
        yield self.coordinator
        yield self.rcu
        yield from self.cpus.values()


@dataclass
class Window:
    """What to draw: ``start`` to ``end`` (microseconds from the origin), ``what`` it shows
    for a file name (``round1234``), ``label`` for the title, and the round or violation it
    is about (a violation as ``(cpu, event)``)."""
    start: float
    end: float
    what: str
    label: str
    round: dict = None
    violation: tuple = None

    @property
    def length(self) -> float:
        return self.end - self.start

    def holds(self, event) -> bool:
        """Whether ``event`` (a slice or an instant) shows in the window."""
        ts = event["ts"]
        if event["ph"] == "i":
            return self.start <= ts <= self.end
        return ts < self.end and ts + event["dur"] > self.start


def index(document: dict) -> Trace:
    """The tracks of a loaded trace (``traces.load``): the coordinator's (``…:coord``), its
    ``rcu`` track, and one per simulated CPU (``…:cpuN``); other processes are left out."""
    names = traces.processes(document)
    coord = next((pid for pid, name in names.items() if name.endswith(":coord")), None)
    cpu_of = {pid: traces.cpu_of(name) for pid, name in names.items()
              if traces.cpu_of(name) is not None}
    prefix = next((name.rpartition(":")[0] for pid, name in names.items()
                   if pid == coord or pid in cpu_of), "")
    trace = Trace(document.get("otherData", {}).get("strategy") or prefix,
                  cpus={cpu: [] for cpu in sorted(cpu_of.values())})
    for e in document["traceEvents"]:
        if e["ph"] not in ("X", "i"):
            continue
        pid, tid = e["pid"], e["tid"]
        if pid == coord and tid == pid:
            trace.coordinator.append(e)
        elif pid == coord and tid == traces.RCU_TID_BASE + pid:
            trace.rcu.append(e)
        elif pid in cpu_of and tid == pid:
            trace.cpus[cpu_of[pid]].append(e)
    return trace


def rounds(trace: Trace) -> list:
    """The IPI rounds (``smp_call_function_many`` slices on the coordinator's track)."""
    return [e for e in trace.coordinator if e["ph"] == "X" and e["cat"] == "ipi"]


def violations(trace: Trace) -> list:
    """``(cpu, instant)`` of every violation, in time order."""
    found = [(cpu, e) for cpu, events in trace.cpus.items() for e in events
             if e["ph"] == "i" and e["cat"] == "violation"]
    return sorted(found, key=lambda v: (v[1]["ts"], v[0]))


def extent(trace: Trace) -> tuple:
    """``(first, last)``: from the earliest event to the latest end; None when empty."""
    events = [e for track in trace.tracks() for e in track]
    if not events:
        return None
    return min(e["ts"] for e in events), max(e["ts"] + e.get("dur", 0) for e in events)


def _around(start: float, end: float, before: float, after: float) -> tuple:
    return start - before, end + after


def _round_label(trace: Trace, r: dict, slowest: bool) -> str:
    args = r.get("args", {})
    number = args.get("round", "?")
    text = f"IPI round {number}" + (f" (the slowest of {len(rounds(trace)):,})"
                                    if slowest else "")
    text += f", {format_duration(r['dur'] / 1e6)}"
    if args.get("slowest_cpu") is not None:
        why = args.get("why")
        text += f"; CPU {args['slowest_cpu']} answered last" + \
            (f": {traces.WHY.get(why, why)}" if why else "")
    return text


def _round_window(trace: Trace, r: dict, margin, slowest: bool = False) -> Window:
    side = max(ROUND_MARGIN * r["dur"], MIN_MARGIN_US) if margin is None else margin
    start, end = _around(r["ts"], r["ts"] + r["dur"], side, side)
    number = r.get("args", {}).get("round")
    what = f"round{number}" if number is not None else "slowest"
    return Window(start, end, what, _round_label(trace, r, slowest), round=r)


def round_window(trace: Trace, number: int, margin: float = None) -> Window:
    """The window around IPI round ``number`` (its ``args.round``): ``margin`` microseconds
    on each side, by default a quarter of the round's length and at least 50 us."""
    found = rounds(trace)
    r = next((e for e in found if e.get("args", {}).get("round") == number), None)
    if r is None:
        numbers = [e["args"]["round"] for e in found if "round" in e.get("args", {})]
        raise TimelineError(f"no IPI round {number} in the trace" + (
            f" (its rounds are numbered {min(numbers)} to {max(numbers)})" if numbers
            else " (it has no IPI round)"))
    return _round_window(trace, r, margin)


def slowest_window(trace: Trace, margin: float = None) -> Window:
    """The window around the longest IPI round (the first of equals), as ``round_window``."""
    found = rounds(trace)
    if not found:
        raise TimelineError("the trace has no IPI round")
    return _round_window(trace, max(found, key=lambda e: e["dur"]), margin,
                         slowest=len(found) > 1)


def _walk_around(trace: Trace, cpu: int, instant: dict):
    """The IRQ-off window on ``cpu``'s track that holds ``instant``, or None."""
    return next((e for e in trace.cpus[cpu] if e["ph"] == "X" and e["cat"] == "walk"
                 and e["ts"] <= instant["ts"] <= e["ts"] + e["dur"]), None)


def violation_window(trace: Trace, k: int = 1, margin: float = None) -> Window:
    """The window of the ``k``-th violation (1-based, in time order): from the start of the
    walk it happened in (or 200 us before it, outside a walk) to 100 us after it; with
    ``margin``, that much before the walk's start (or the violation) and after it."""
    found = violations(trace)
    if not found:
        raise TimelineError("the trace has no violation")
    if not 1 <= k <= len(found):
        raise TimelineError(f"no violation {k}: the trace has {len(found)}")
    cpu, v = found[k - 1]
    walk = _walk_around(trace, cpu, v)
    first = walk["ts"] if walk else v["ts"]
    if margin is not None:
        before, after = margin, margin
    else:
        before, after = (0.0 if walk else VIOLATION_BEFORE_US), VIOLATION_AFTER_US
    start, end = _around(first, v["ts"], before, after)
    args = v.get("args", {})
    label = (f"violation {k} of {len(found)}: CPU {cpu}, slot {args.get('slot', '?')}, "
             f"{args.get('kind', 'violation')} (generation {args.get('generation_taken', '?')}"
             f" taken, {args.get('generation_seen', '?')} seen)")
    return Window(start, end, f"violation{k}", label, violation=(cpu, v))


def _short(us: float) -> str:
    """A time for a file name: ``1.5ms``."""
    return format_duration(us / 1e6).replace(" ", "").replace(",", "")


def span_window(trace: Trace, start: float = None, end: float = None) -> Window:
    """The window from ``start`` to ``end`` (microseconds from the origin; by default the
    trace's first event and last end)."""
    whole = extent(trace)
    if whole is None:
        raise TimelineError("the trace has no event to draw")
    given = (start, end)
    start = whole[0] if start is None else start
    end = whole[1] if end is None else end
    if end <= start:
        raise TimelineError(f"empty window: it ends ({_short(end)}) before it starts "
                            f"({_short(start)})")
    if given == (None, None):
        return Window(start, end, "all", "the whole trace")
    return Window(start, end, f"{_short(start)}-{_short(end)}", "the window asked for")


def default_window(trace: Trace) -> Window:
    """The slowest round if the trace has rounds, else its first violation, else all of it."""
    if rounds(trace):
        return slowest_window(trace)
    if violations(trace):
        return violation_window(trace)
    return span_window(trace)


def check_not_empty(trace: Trace, window: Window) -> None:
    """TimelineError when nothing of the trace shows in ``window``."""
    if not any(window.holds(e) for track in trace.tracks() for e in track):
        whole = extent(trace)
        span = f" (its events run from {_short(whole[0])} to {_short(whole[1])})" \
            if whole else ""
        raise TimelineError(f"empty window: nothing of the trace happens from "
                            f"{_short(window.start)} to {_short(window.end)}{span}")


# -- rows ----------------------------------------------------------------------------------

def parse_cpus(text: str) -> list:
    """CPU numbers from ``0-15,40``: numbers and ranges, comma-separated, sorted."""
    text = str(text)
    if not re.fullmatch(r"[0-9]{1,6}(-[0-9]{1,6})?(,[0-9]{1,6}(-[0-9]{1,6})?)*", text,
                        re.ASCII):
        raise ValueError(f"{text!r} is not a list of CPUs (numbers and ranges: 0-15,40)")
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        low, high = int(low), int(high or low)
        if high < low:
            raise ValueError(f"CPU range {part!r} runs backwards")
        if high > MAX_CPU:
            raise ValueError(f"CPU {high} is out of range (0 to {MAX_CPU})")
        cpus.update(range(low, high + 1))
    return sorted(cpus)


def interesting(trace: Trace, window: Window) -> list:
    """The CPUs worth a row most, best first: the round's last responder, the CPUs with a
    violation in the window, then those with an IRQ-off window in it."""
    first = []
    last = (window.round or {}).get("args", {}).get("slowest_cpu")
    if last in trace.cpus:
        first.append(last)
    first += [cpu for cpu, v in violations(trace) if window.holds(v)]
    first += [cpu for cpu, events in trace.cpus.items()
              if any(e["ph"] == "X" and e["cat"] == "walk" and window.holds(e)
                     for e in events)]
    return list(dict.fromkeys(first))


def choose_rows(trace: Trace, window: Window, max_rows: int = MAX_ROWS,
                cpus: list = None) -> tuple:
    """``(rows, left_out)``: the CPUs to draw, by number, and how many of those asked for
    (``cpus``, by default all) did not fit in ``max_rows``; the interesting ones are kept
    first, the rest by number."""
    if cpus is None:
        wanted = sorted(trace.cpus)
    else:
        missing = [c for c in cpus if c not in trace.cpus]
        if missing:
            have = f"CPUs {traces.spans(trace.cpus)}" if trace.cpus else "no CPU"
            raise TimelineError(f"--cpus {traces.spans(missing)}: not in the trace (it has {have})")
        wanted = sorted(cpus)
    if len(wanted) <= max_rows:
        return wanted, 0
    keep = [c for c in interesting(trace, window) if c in wanted] + wanted
    return sorted(list(dict.fromkeys(keep))[:max_rows]), len(wanted) - max_rows


# -- drawing -------------------------------------------------------------------------------

#: How each kind of slice is drawn: its colour, the height of its bar in a row of 1, the
#: layer (higher on top) and the legend's words; None keeps it out of the legend.
STYLES = {
    "idle": ("#d9d9d9", 0.8, 1, "idle"),
    "op": ("#c6c6c6", 0.85, 1, "operation"),
    "step": ("#8c8c8c", 0.55, 2, "step"),
    "destroy": ("#a50f15", 0.55, 2, "destructive step (a free)"),
    "walk": ("C0", 0.6, 2, "IRQ-off window (walk)"),
    "rcu": ("C2", 0.4, 3, "RCU (grace-period wait)"),
    "grace": ("#93cf93", 0.6, 2, "grace period"),
    "round": ("C4", 0.9, 3, "IPI round"),
    "ipi": ("C1", 0.9, 3, "IPI handled"),
}
#: A slice is never drawn narrower than this fraction of the window (about 2 pixels):
#: IPI handlers last microseconds, rounds and windows milliseconds.
MIN_WIDTH = 0.002
#: The figure grows with its rows up to this height (inches), then the rows get thinner.
MAX_HEIGHT = 26.0


def _unit(length_us: float) -> tuple:
    """The axis's unit for a window this long, and microseconds per unit."""
    if length_us >= 2e6:
        return "s", 1e6
    if length_us >= 2e3:
        return "ms", 1e3
    return "\u00b5s", 1.0


def _kind(event: dict, row: str) -> str:
    """The style of a slice on ``row`` (``coord``, ``rcu`` or a CPU)."""
    cat = event["cat"]
    if row == "rcu":
        return "grace"
    if row == "coord" and cat == "ipi":
        return "round"
    if cat == "step" and (event["name"] == "destroy"
                          or "(destructive)" in event["args"].get("step", "")):
        return "destroy"
    return cat if cat in STYLES else "step"


def title(trace: Trace, window: Window, rows: list, left_out: int) -> str:
    """The strategy and what the window shows, then where it is and the CPUs left out."""
    where = (f"{format_duration(window.start / 1e6)} to {format_duration(window.end / 1e6)} "
             f"into the trace ({format_duration(window.length / 1e6)})")
    if left_out:
        where += (f"; {len(rows)} of {len(rows) + left_out} CPUs drawn, {left_out} left out "
                  f"(--cpus, --max-rows)")
    return f"{trace.strategy or 'trace'}: {window.label}\n{where}"


def _row_list(trace: Trace, window: Window, rows: list) -> list:
    """``(label, row key, events in the window)`` from the top row down."""
    out = [("coordinator", "coord", [e for e in trace.coordinator if window.holds(e)])]
    grace = [e for e in trace.rcu if window.holds(e)]
    if grace:
        out.append(("grace periods", "rcu", grace))
    out += [(f"CPU {c}", c, [e for e in trace.cpus[c] if window.holds(e)]) for c in rows]
    return out


def _bars(row_list, window: Window, scale: float) -> dict:
    """The rectangles of every slice, per style: ``{kind: [vertices]}`` in axis units."""
    least = MIN_WIDTH * window.length
    out = {}
    for y, (_, key, events) in enumerate(row_list):
        for e in events:
            if e["ph"] != "X":
                continue
            kind = _kind(e, key)
            half = STYLES[kind][1] / 2
            a = max(e["ts"], window.start) - window.start
            b = min(e["ts"] + max(e["dur"], least), window.end) - window.start
            a, b = a / scale, max(b, a + least) / scale
            out.setdefault(kind, []).append([(a, y - half), (a, y + half), (b, y + half),
                                             (b, y - half)])
    return out


def _step_labels(ax, row_list, window: Window, scale: float) -> None:
    """The name of each step wide enough to hold it (check's counterexamples)."""
    for y, (_, key, events) in enumerate(row_list):
        for e in events:
            if e["ph"] == "X" and e["cat"] == "step" and e["dur"] > 0.06 * window.length:
                mid = (max(e["ts"], window.start) + min(e["ts"] + e["dur"], window.end)) / 2
                ax.text((mid - window.start) / scale, y, e["name"], ha="center",
                        va="center", fontsize=7, color="white", clip_on=True, zorder=6)


def _slot_operations(ax, row_list, window: Window, scale: float) -> None:
    """Around a violation, the coordinator's operations on its slot outlined in red and
    named: what freed what the walker held."""
    if window.violation is None:
        return
    from matplotlib.patches import Rectangle
    slot = window.violation[1].get("args", {}).get("slot")
    _, _, events = row_list[0]
    for e in events:
        if e["ph"] == "X" and e["cat"] == "op" and e["args"].get("slot") == slot:
            a = (max(e["ts"], window.start) - window.start) / scale
            b = (min(e["ts"] + e["dur"], window.end) - window.start) / scale
            ax.add_patch(Rectangle((a, -0.45), b - a, 0.9, fill=False, edgecolor="C3",
                                   linewidth=1.2, zorder=7, gid="slot_op"))
            ax.text((a + b) / 2, -0.5, f"{e['name']} of slot {slot}", ha="center",
                    va="bottom", fontsize=7, color="C3", clip_on=False, zorder=8)


def _instants(ax, row_list, window: Window, scale: float) -> None:
    """Violations as red crosses, other instants (call_rcu, check's steps) as ticks; a row
    with few instants gets their names."""
    for y, (_, _, events) in enumerate(row_list):
        points = [e for e in events if e["ph"] == "i"]
        for e in points:
            x = (e["ts"] - window.start) / scale
            if e["cat"] == "violation":
                ax.plot([x], [y], linestyle="none", marker="X", markersize=10, color="red",
                        markeredgecolor="black", zorder=7, gid="violation")
            else:
                ax.plot([x], [y], linestyle="none", marker="|", markersize=9, color="black",
                        zorder=6, gid="instant")
                if len(points) <= 8:
                    ax.annotate(e["name"], (x, y), xytext=(2, 5), textcoords="offset points",
                                fontsize=6, clip_on=True, zorder=6)


def _highlight(ax, row_list, cpu):
    """Write ``cpu``'s row label in bold red; its row, or None when it has none."""
    ys = [y for y, (_, key, _) in enumerate(row_list) if key == cpu and cpu is not None]
    if not ys:
        return None
    label = ax.get_yticklabels()[ys[0]]
    label.set_color("C3")
    label.set_fontweight("bold")
    return ys[0]


def _last_responder(ax, trace: Trace, window: Window, row_list, scale: float) -> None:
    """The round's last responder: its label highlighted, and why it answered last beside
    the IPI it handled (or the round's end)."""
    args = (window.round or {}).get("args", {})
    cpu = args.get("slowest_cpu")
    y = _highlight(ax, row_list, cpu)
    if y is None:
        return
    handled = next((e for e in trace.cpus[cpu] if e["ph"] == "X" and e["cat"] == "ipi"
                    and e.get("args", {}).get("round") == args.get("round")), None)
    at = handled["ts"] + handled["dur"] if handled else window.round["ts"] + \
        window.round["dur"]
    x = (min(max(at, window.start), window.end) - window.start) / scale
    right = x > 0.6 * window.length / scale
    why = traces.WHY.get(args.get("why"), args.get("why"))
    ax.annotate("answered last" + (f": {why}" if why else ""), (x, y),
                xytext=(-6 if right else 6, 0), textcoords="offset points",
                ha="right" if right else "left", va="center", fontsize=8, color="C3",
                fontweight="bold", gid="why", zorder=8,
                bbox=dict(boxstyle="round,pad=0.2", facecolor="white", alpha=0.8,
                          edgecolor="none"))


def _legend(fig, kinds: set, violation: bool, band: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Patch(color=STYLES[k][0], label=STYLES[k][3]) for k in STYLES
               if k in kinds and STYLES[k][3]]
    if band:
        handles.append(Patch(color="C4", alpha=0.12, label="the round, on every CPU"))
    if violation:
        handles.append(Line2D([], [], linestyle="none", marker="X", color="red",
                              markeredgecolor="black", label="violation"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5),
                   fontsize="small", frameon=False)


def draw_figure(trace: Trace, window: Window, rows: list, left_out: int = 0):
    """The matplotlib Figure of ``window``: the coordinator's row on top (operations, their
    steps, IPI rounds, grace-period waits; its grace periods on a row of their own), then a
    row per CPU of ``rows``. None when matplotlib is not installed."""
    try:
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
    except ImportError:
        return None
    row_list = _row_list(trace, window, rows)
    n = len(row_list)
    unit, scale = _unit(window.length)
    fig = Figure(figsize=(13, min(2.6 + 0.19 * n, MAX_HEIGHT)), layout="constrained")
    ax = fig.subplots()
    bars = _bars(row_list, window, scale)
    for kind, verts in bars.items():
        colour, _, layer, _ = STYLES[kind]
        # Steps follow one another: a white edge tells them apart.
        edge = "white" if kind in ("step", "destroy") else "none"
        ax.add_collection(PolyCollection(verts, facecolors=colour, edgecolors=edge,
                                         linewidths=0.5, zorder=layer, gid=kind))
    if window.round is not None:
        a = (window.round["ts"] - window.start) / scale
        ax.axvspan(a, a + window.round["dur"] / scale, color="C4", alpha=0.12, zorder=0,
                   gid="band")
    _step_labels(ax, row_list, window, scale)
    _slot_operations(ax, row_list, window, scale)
    _instants(ax, row_list, window, scale)
    ax.set_xlim(0, window.length / scale)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks(range(n), [label for label, _, _ in row_list],
                  fontsize=8 if n <= 40 else 6)
    ax.tick_params(axis="y", length=0)
    ax.grid(True, axis="x", alpha=0.3)
    for y in range(n - 1):  # a faint line between rows, so a row's bars are read as one
        ax.axhline(y + 0.5, color="#eeeeee", linewidth=0.5, zorder=0)
    ax.set_xlabel(f"{unit} from {format_duration(window.start / 1e6)} into the trace")
    _last_responder(ax, trace, window, row_list, scale)
    if window.violation:
        _highlight(ax, row_list, window.violation[0])
    violated = any(e["ph"] == "i" and e["cat"] == "violation"
                   for _, _, events in row_list for e in events)
    _legend(fig, set(bars), violated, window.round is not None)
    ax.set_title(title(trace, window, rows, left_out), fontsize=10, loc="left")
    return fig


def write_png(trace: Trace, window: Window, rows: list, left_out: int, path: str) -> bool:
    """Write the PNG of ``draw_figure`` to ``path`` (whatever its name ends in). False
    (nothing written) when matplotlib is not installed."""
    fig = draw_figure(trace, window, rows, left_out)
    if fig is None:
        return False
    fig.savefig(path, dpi=100, format="png")
    return True
