"""``check --trace``: a counterexample of ``check`` (a ``checking.Schedule``) as a trace in the
layout of ``results.traces``, which Perfetto opens.

Two processes, named as ``ps`` showed them, with their real pids: the coordinator, whose steps
are slices one after the other (each lasts until its next step, the last until the schedule
ends), and the walking CPU, whose IRQ-off window is one ``walk`` slice with its pause nested
inside, its other steps points in time, and its use of freed memory a ``violation`` point.
Times are the host monotonic clock readings each process logged, from the schedule's start."""

import os
import re

from lpw_mp.kernel.hooks import WALK_POINTS
from lpw_mp.results.traces import TraceDocument, us

#: The longest name a slice or point is given; its full text is in ``args.step``.
NAME_MAX = 60
#: The longest strategy name a trace file's name takes (a file name has 255 bytes at most).
FILE_STRATEGY_MAX = 100
COORDINATOR = "coordinator"
#: The walker's steps that open and close its window and its pause (slices, not points).
WINDOW = ("local_irq_disable()", "local_irq_enable()")
PAUSE = ("paused ", "resumed")
VIOLATION = "uses freed memory: "


def counterexample_trace(schedule) -> TraceDocument:
    """The trace of ``schedule``, with ``otherData`` saying what it is a counterexample of."""
    doc = TraceDocument(schedule.began_ns, source="check", strategy=schedule.strategy,
                        path=schedule.path, model=schedule.model, schedule=schedule.number,
                        summary=schedule.describe(), cpu=schedule.cpu, slot=schedule.slot,
                        walker_point=WALK_POINTS[schedule.point],
                        coordinator_step=schedule.step + 1, before=schedule.label,
                        dropped=0, dropped_by_track={})
    names = process_names(schedule)
    walker = f"CPU {schedule.cpu}"
    # The coordinator sorts first, a CPU by its number.
    for who, sort in ((COORDINATOR, 0), (walker, schedule.cpu + 1)):
        doc.process(schedule.processes[who][0], names[who], sort)
    _coordinator(doc, schedule.processes[COORDINATOR][0], _steps_of(schedule, COORDINATOR),
                 schedule.ended_ns)
    _walker(doc, schedule.processes[walker][0], _steps_of(schedule, walker), schedule)
    return doc


def process_names(schedule) -> dict:
    """``{who: name}``: each process's name as ``ps`` showed it (``emulator.comm_of``: 15
    bytes at most, the role kept whole, so the two never share one)."""
    return {who: name for who, (_, name) in schedule.processes.items()}


def trace_file_name(schedule) -> str:
    """``<strategy>-<path>-<model>.json``, the strategy's name made safe for a file name (a
    plugin names itself freely): other characters become ``_``, no leading dot."""
    strategy = re.sub(r"[^A-Za-z0-9._-]+", "_", schedule.strategy).lstrip(".")
    return f"{strategy[:FILE_STRATEGY_MAX] or 'strategy'}-{schedule.path}-{schedule.model}.json"


def write_counterexample_trace(schedule, folder: str) -> str:
    """Write ``schedule``'s trace into ``folder`` (made if missing); the file's path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, trace_file_name(schedule))
    counterexample_trace(schedule).write(path)
    return path


def category(text: str) -> str:
    """The ``cat`` of a coordinator's step: an IPI round, RCU (``call_rcu``, a grace period
    ended), or another step."""
    if text.startswith("smp_call_function_many"):
        return "ipi"
    if text.startswith(("call_rcu", "grace period")):
        return "rcu"
    return "step"


def short(text: str) -> str:
    """``text`` as a name: without the indent of a note (``  buffered store ...``), cut to
    ``NAME_MAX`` characters and marked where it was cut."""
    text = text.strip()
    return text if len(text) <= NAME_MAX else text[:NAME_MAX - 1] + "…"


def _steps_of(schedule, who: str) -> list:
    """``[(n, t_ns, text)]`` of one process, ``n`` numbering the steps as the text report does
    (both processes together, from 1)."""
    return [(n, t, text) for n, (t, (by, text)) in
            enumerate(zip(schedule.stamps, schedule.steps), 1) if by == who]


def _coordinator(doc, pid: int, steps: list, ended_ns: int) -> None:
    """Each step a slice until the next one; the last until the schedule ends."""
    ends = [t for _, t, _ in steps[1:]] + [max([ended_ns] + [t for _, t, _ in steps[-1:]])]
    for (n, t, text), end in zip(steps, ends):
        doc.slice(pid, pid, short(text), category(text), t, _dur(doc, t, end),
                  {"step": text, "n": n})


def _walker(doc, pid: int, steps: list, schedule) -> None:
    """The IRQ-off window as a ``walk`` slice, its pause a slice inside it, the violation a
    point with the checker's record, every other step a point."""
    window, pause = _span(steps, *WINDOW), _span(steps, *PAUSE)
    window_end = None
    if window:
        n, t, text = steps[window[0]]
        # A window whose end was not logged ends at the walker's last step.
        window_end = steps[window[1] if window[1] is not None else -1][1]
        args = {"slot": schedule.slot, "point": WALK_POINTS[schedule.point],
                "cpu": schedule.cpu, "step": text, "n": n}
        doc.slice(pid, pid, short(text.partition("; ")[2] or "IRQs off"), "walk", t,
                  _dur(doc, t, window_end), args)
    if pause:
        n, t, text = steps[pause[0]]
        end = steps[pause[1]][1] if pause[1] is not None else window_end or t
        if window and window[0] < pause[0]:  # nested: never past the window's end
            end = min(end, window_end)
        doc.slice(pid, pid, short(text), "step", t, _dur(doc, t, end), {"step": text, "n": n})
    drawn = {i for span in (window, pause) if span for i in span}
    records = iter(schedule.violations)
    for i, (n, t, text) in enumerate(steps):
        if i in drawn:
            continue
        if text.startswith(VIOLATION):
            doc.instant(pid, pid, short(text.partition(" (")[0]), "violation", t,
                        _violation_args(next(records, None), text, n))
        else:
            doc.instant(pid, pid, short(text), "step", t, {"step": text, "n": n})


def _dur(doc, start_ns: int, end_ns: int) -> int:
    """``end_ns - start_ns``, less 1 ns if the slice's ``ts + dur``, added in microseconds in
    floating point, would come out past ``end_ns`` (``187.935 + 4.699``): a reader would see
    it overlap the slice that begins there."""
    dur = max(end_ns - start_ns, 0)
    if dur and us(start_ns - doc.origin_ns) + us(dur) > us(end_ns - doc.origin_ns):
        dur -= 1
    return dur


def _span(steps: list, opens: str, closes: str):
    """``(i, j)``: the index of the first step that begins with ``opens`` and of the first
    after it that begins with ``closes`` (None if none does); None if nothing opens."""
    start = next((i for i, (_, _, text) in enumerate(steps) if text.startswith(opens)), None)
    if start is None:
        return None
    stop = next((i for i in range(start + 1, len(steps)) if steps[i][2].startswith(closes)),
                None)
    return start, stop


def _violation_args(record, text: str, n: int) -> dict:
    """The checker's record of the violation (kind, slot, generations); from the logged
    line alone (its kind) if the record was lost (the checker's log was full)."""
    if record is None:
        record = {"kind": text[len(VIOLATION):].partition(" (")[0]}
    args = {key: record[key] for key in ("kind", "slot", "generation_taken", "generation_seen")
            if key in record}
    return {**args, "step": text, "n": n}
