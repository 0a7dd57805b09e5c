"""Traces in the Chrome trace-event JSON format, which Perfetto (ui.perfetto.dev) and
chrome://tracing open: how lpw_mp lays out a trace, ``TraceDocument`` to build and write one,
``validate`` to check one, and ``load`` to read one back (``timeline`` draws from it).

The layout, shared by a run's traces (``run --trace``) and ``check``'s counterexamples:

- every process of the machine is a trace process with its real ``pid``, named as ``ps`` shows
  it (its ``comm``: ``ipi:cpu3``, ``ipi:coord``), with one thread of the same ``tid`` and name;
  a simulated CPU sorts by its number, the coordinator first;
- the coordinator's grace periods run beside its operations, so they have a track of their
  own: a thread of the coordinator's process with ``tid`` ``RCU_TID_BASE + pid`` (above any
  real tid), named ``rcu``;
- slices are complete events (``ph`` ``X``, with ``dur``); points in time are instant events
  (``ph`` ``i``, thread scope); times are microseconds from the trace's origin, whose host
  monotonic clock reading is ``otherData.origin_ns``;
- ``cat`` says what a slice is (``CATEGORIES``), ``args`` its details.

``otherData`` carries ``format`` ``lpw_mp-trace`` and its ``format_version``, what the trace is
of (``source``: ``run`` or ``check``; ``strategy``), and what was lost: ``dropped`` events
(over the buffers' size), per track in ``dropped_by_track``."""

import json
import math
import os

from lpw_mp.results.folders import write_through_temp
from lpw_mp.results.formats import read_json

FORMAT, FORMAT_VERSION = "lpw_mp-trace", 1

#: The tid of a process's RCU track: above PID_MAX_LIMIT (2**22), never a real thread's.
RCU_TID_BASE = 1 << 22

#: What each ``cat`` means. On a CPU's track: ``walk`` an IRQ-off window, ``ipi`` an IPI
#: handled, ``idle`` an idle period; on the coordinator's: ``op`` an operation on a slot,
#: ``step`` a step of one (unlink, serialise, destroy; check's steps), ``ipi`` an IPI round
#: (``smp_call_function_many``), ``rcu`` a wait for a grace period, a ``call_rcu`` or a
#: callback (on the ``rcu`` track: the grace periods themselves); ``violation`` a walker's use
#: of freed memory (an instant on the walker's track); ``phase`` a part of a leg (the parent).
CATEGORIES = ("walk", "ipi", "idle", "op", "step", "rcu", "violation", "phase")

#: Why the CPU that answered an IPI round last came last (``why`` in the round's args;
#: ``kernel.trace.round_why``): it was inside an IRQ-off window when the round was sent, and
#: answered at the window's end; it answered long after every other target, IRQs on, so the
#: host was not running it; or the answers came one after another and it was merely last.
WHY = {"irq-off": "inside an IRQ-off window", "not-running": "not running (descheduled by "
       "the host)", "queue": "just last in the queue"}


class TraceError(ValueError):
    """A file that is not an lpw_mp trace, or one whose structure is broken; one line."""


def us(ns: int) -> float:
    """Nanoseconds as the format's microseconds, to the nanosecond."""
    return round(ns / 1000, 3)


class TraceDocument:
    """A trace being built: add processes, threads, slices and instants with nanosecond times
    from ``origin_ns`` (the host's monotonic clock), then ``write`` it. Events are written in
    time order per track, whatever the order they were added in."""

    def __init__(self, origin_ns: int, **other):
        self.origin_ns = origin_ns
        self.other = {"format": FORMAT, "format_version": FORMAT_VERSION,
                      "origin_ns": origin_ns, **other}
        self._meta = []
        self._events = []
        self._names = {}

    def process(self, pid: int, name: str, sort: int) -> None:
        """Process ``pid`` named ``name`` (as ``ps`` shows it), with its main thread."""
        self._names[pid, pid] = name
        self._meta += [
            {"ph": "M", "pid": pid, "tid": pid, "name": "process_name", "args": {"name": name}},
            {"ph": "M", "pid": pid, "tid": pid, "name": "process_sort_index",
             "args": {"sort_index": sort}},
            {"ph": "M", "pid": pid, "tid": pid, "name": "thread_name", "args": {"name": name}}]

    def thread(self, pid: int, tid: int, name: str, sort: int = 0) -> None:
        """Another track ``tid`` of process ``pid`` (the coordinator's ``rcu``)."""
        self._names[pid, tid] = name
        self._meta += [
            {"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name}},
            {"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
             "args": {"sort_index": sort}}]

    def slice_event(self, pid: int, tid: int, name: str, cat: str, start_ns: int,
                    dur_ns: int, args=None) -> dict:
        """A slice as an event (``slice`` adds it; ``write`` takes more of them)."""
        start = us(start_ns - self.origin_ns)
        # The end rounded as the start is, so that a slice ends inside the one around it.
        dur = round(us(start_ns + max(dur_ns, 0) - self.origin_ns) - start, 3)
        return {"ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": start,
                "dur": dur, "args": args or {}}

    def instant_event(self, pid: int, tid: int, name: str, cat: str, at_ns: int,
                      args=None) -> dict:
        return {"ph": "i", "s": "t", "pid": pid, "tid": tid, "name": name, "cat": cat,
                "ts": us(at_ns - self.origin_ns), "args": args or {}}

    def slice(self, *args, **kwargs) -> None:
        self._events.append(self.slice_event(*args, **kwargs))

    def instant(self, *args, **kwargs) -> None:
        self._events.append(self.instant_event(*args, **kwargs))

    #: Events written by the last ``write`` (metadata aside).
    events = 0

    def ordered(self) -> list:
        """The events, per track in time order; at one time an enclosing slice first."""
        return sorted(self._events, key=lambda e: (e["pid"], e["tid"], e["ts"],
                                                   -e.get("dur", 0)))

    def document(self) -> dict:
        return {"traceEvents": self._meta + self.ordered(), "displayTimeUnit": "ns",
                "otherData": self.other}

    def write(self, path: str, more=()) -> None:
        """Write the trace to ``path``, one event a line (a large trace is never held as one
        string), through a temporary file renamed into place. ``more``: further events, made
        as they are written, on tracks of their own, in time order on each; each a dict or
        its JSON text."""
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write('{"displayTimeUnit": "ns",\n"otherData": ')
                f.write(json.dumps(self.other))
                f.write(',\n"traceEvents": [\n')
                # One encoder for every event: json.dumps with separators makes one per call.
                encode = json.JSONEncoder(separators=(",", ":")).encode
                first, count = True, 0
                for events in (self._meta, self.ordered(), more):
                    for event in events:
                        # An event may come as its JSON text already (a CPU's, by the many).
                        f.write(("" if first else ",\n")
                                + (event if isinstance(event, str) else encode(event)))
                        first = False
                        count += 1
                self.events = count - len(self._meta)
                f.write("\n]}\n")
                f.flush()
                os.fsync(f.fileno())
        write_through_temp(path, write)


def load(path: str) -> dict:
    """The trace in ``path``, checked (``validate``); TraceError with one line if it is not
    a valid lpw_mp trace."""
    document = read_json(path, TraceError, "a trace")
    problems = validate(document)
    if problems:
        raise TraceError(f"{path} is not a valid lpw_mp trace: {problems[0]}"
                         + (f" (and {len(problems) - 1} more problems)"
                            if len(problems) > 1 else ""))
    return document


def validate(document) -> list:
    """Every way ``document`` breaks the layout above, as lines (empty: it is valid): the
    header, every event's fields, timestamps in order on each track, slices on a track nested
    (none ends inside another it began after), and the names of processes and threads (each
    track used is named, once, and no two tracks share a name)."""
    if not isinstance(document, dict) or not isinstance(document.get("traceEvents"), list):
        return ["not a JSON object with a traceEvents list"]
    other = document.get("otherData")
    if not isinstance(other, dict) or other.get("format") != FORMAT:
        return [f"otherData.format is not {FORMAT!r}"]
    if other.get("format_version") != FORMAT_VERSION:
        return [f"trace format version {other.get('format_version')!r}; this lpw_mp reads "
                f"version {FORMAT_VERSION}"]
    problems, names, tracks = [], {}, {}
    for n, e in enumerate(document["traceEvents"]):
        where = f"event {n}"
        if not isinstance(e, dict) or not all(isinstance(e.get(k), int) and not
                                              isinstance(e.get(k), bool) for k in ("pid", "tid")):
            problems.append(f"{where}: no whole pid and tid")
            continue
        ph, track = e.get("ph"), (e["pid"], e["tid"])
        if ph == "M":
            if e.get("name") in ("process_name", "thread_name"):
                key = (e["pid"], e["name"]) if e["name"] == "process_name" else (track, "thread")
                name = (e.get("args") or {}).get("name")
                if not isinstance(name, str) or not name:
                    problems.append(f"{where}: {e['name']} without a name")
                elif key in names and names[key] != name:
                    problems.append(f"{where}: {e['name']} of {key[0]} given twice "
                                    f"({names[key]!r}, {name!r})")
                names[key] = name
            continue
        if ph not in ("X", "i"):
            problems.append(f"{where}: phase {ph!r} (lpw_mp writes X, i and M)")
            continue
        if not isinstance(e.get("name"), str) or e.get("cat") not in CATEGORIES:
            problems.append(f"{where}: no name, or category {e.get('cat')!r} not one of "
                            f"{', '.join(CATEGORIES)}")
            continue
        ts, dur = e.get("ts"), e.get("dur", 0)
        if not _finite(ts) or not _finite(dur) or dur < 0 or (ph == "X" and "dur" not in e):
            problems.append(f"{where} ({e['name']}): ts {ts!r}, dur {dur!r}")
            continue
        tracks.setdefault(track, []).append((ts, dur if ph == "X" else None, n, e["name"]))
    for track, events in tracks.items():
        if (track, "thread") not in names or (track[0], "process_name") not in names:
            problems.append(f"track pid {track[0]} tid {track[1]} has events but no "
                            f"{'thread' if (track[0], 'process_name') in names else 'process'}"
                            f" name")
        open_ends = []  # ends of the slices enclosing the current time, innermost last
        last = -math.inf
        for ts, dur, n, name in events:
            if ts < last:
                problems.append(f"event {n} ({name}) on pid {track[0]} tid {track[1]}: ts "
                                f"{ts} before the previous event's {last}")
            last = max(last, ts)
            # Within 2 ns: times are microseconds to the nanosecond, summed in floating point.
            while open_ends and open_ends[-1] <= ts + 2e-3:
                open_ends.pop()
            if dur is None:
                continue
            end = ts + dur
            if open_ends and end > open_ends[-1] + 2e-3:
                problems.append(f"event {n} ({name}) on pid {track[0]} tid {track[1]} ends at "
                                f"{end}, after the slice it began in ends ({open_ends[-1]})")
            open_ends.append(end)
    seen = {}
    for key, name in names.items():
        if key[1] == "thread":
            continue
        if name in seen:
            problems.append(f"processes {seen[name]} and {key[0]} are both named {name!r}")
        seen[name] = key[0]
    return problems


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def processes(document: dict) -> dict:
    """``{pid: name}`` of a loaded trace."""
    return {e["pid"]: e["args"]["name"] for e in document["traceEvents"]
            if e.get("ph") == "M" and e.get("name") == "process_name"}


def cpu_of(name: str):
    """The simulated CPU a process name (``ipi:cpu3``) stands for, or None."""
    head, _, tail = name.rpartition(":cpu")
    return int(tail) if head and tail.isdigit() else None


def spans(numbers) -> str:
    """``0-15,40`` of CPU numbers, the spelling --cpus takes."""
    out, numbers = [], sorted(numbers)
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)
