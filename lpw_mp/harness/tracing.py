"""A leg's trace (``run --trace``): its records copied out of the ring buffers once the leg's
processes have stopped, and written into the run folder as a Chrome trace-event JSON file in
``results.traces``'s layout, keeping the part of the leg ``--trace-window`` asks for."""

import bisect
import os
import re
import time

from lpw_mp.kernel import checker as chk
from lpw_mp.kernel import trace as tr
from lpw_mp.kernel.trace import RECORD, RECORD_BYTES, iter_records
from lpw_mp.results.traces import RCU_TID_BASE, TraceDocument, spans, us

#: ``--trace-window slowest:N``: what is kept around each round, each side: a quarter of the
#: round, at least this (so that the windows of its slowest responders show whole).
SLOWEST_MARGIN_NS = 50_000

OP_NAMES = {code: name for name, code in tr.OP_CODES.items()}


def trace_file(strategy: str, repeat: int, repeats: int) -> str:
    """The file of a leg's trace in the run folder: ``trace-ipi.json``, or with ``--repeat``
    ``trace-ipi-2.json``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", strategy)
    return f"trace-{name}.json" if repeats == 1 else f"trace-{name}-{repeat}.json"


def _parent_comm() -> str:
    try:
        with open(f"/proc/{os.getpid()}/comm") as f:
            return f.read().strip() or "lpw_mp"
    except OSError:
        return "lpw_mp"


class LegTrace:
    """The records of one leg, copied out of its machine's buffers (raw: 48 bytes a record),
    what the result says of them (``info``), and ``write``, which makes the trace file."""

    def __init__(self, emu, cfg, strategy: str, repeat: int, phases: list):
        buffers = emu.machine.trace
        self.strategy, self.repeat, self.cfg = strategy, repeat, cfg
        self.origin = emu.started_ns or time.perf_counter_ns()
        self.phases = phases  # (name, start ns, end ns) in the parent
        self.parent = (os.getpid(), _parent_comm())
        self.comms = dict(emu.comms)
        #: Per track: its records' raw bytes, how many it was given, how many it holds.
        self.tracks = [(*buffers.records(track), cap) for track, cap in enumerate(buffers.caps)]
        self.window = cfg.trace_window_parts()
        dropped = {self._track_name(t): written - cap
                   for t, (_, written, cap) in enumerate(self.tracks) if written > cap}
        self.info = {"file": trace_file(strategy, repeat, cfg.repeat),
                     "window": cfg.trace_window, "buffer_bytes": cfg.trace_buffer,
                     "records": sum(len(r) for r, _, _ in self.tracks) // RECORD_BYTES,
                     "dropped": sum(dropped.values()), "dropped_by_track": dropped,
                     "events": None}

    def _track_name(self, track: int) -> str:
        ncpus = len(self.tracks) - 2
        role = f"cpu{track}" if track < ncpus else "coord"
        name = self.comms.get(role, (None, f"{self.strategy}:{role}"))[1]
        return name if track <= ncpus else f"{name} rcu"

    # -- the window -----------------------------------------------------------------------------

    def _keep(self):
        """A test ``keep(start, end)`` of the records the window keeps (host ns)."""
        kind, value = self.window
        if kind in ("all", "first"):
            return lambda start, end: True
        if kind == "last":
            last = max((r[0] + r[1] for raw, _, _ in self.tracks for r in iter_records(raw)),
                       default=0)
            since = last - int(value * 1e9)
            return lambda start, end: end >= since
        rounds = sorted((r for r in iter_records(self.tracks[-2][0]) if r[2] == tr.ROUND),
                        key=lambda r: -r[1])[:value]
        spans = []
        for start, dur, *_ in sorted(rounds):
            margin = max(dur // 4, SLOWEST_MARGIN_NS)
            if spans and start - margin <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], start + dur + margin)
            else:
                spans.append([start - margin, start + dur + margin])
        starts = [s for s, _ in spans]

        def keep(start, end):
            i = bisect.bisect_right(starts, end) - 1
            return i >= 0 and spans[i][1] >= start
        return keep

    # -- the file -------------------------------------------------------------------------------

    def write(self, path: str) -> None:
        """Write the trace to ``path``; ``info["events"]`` says how many events it holds."""
        doc = TraceDocument(self.origin, source="run", strategy=self.strategy,
                            repeat=self.repeat, cpus=len(self.tracks) - 2,
                            window=self.cfg.trace_window, buffer_bytes=self.cfg.trace_buffer,
                            dropped=self.info["dropped"],
                            dropped_by_track=self.info["dropped_by_track"])
        keep = self._keep()
        self._answered = self._answers()
        pid, name = self.parent
        doc.process(pid, name, -1)
        for phase, start, end in self.phases:
            if keep(start, end):
                doc.slice(pid, pid, phase, "phase", start, end - start)
        ncpus = len(self.tracks) - 2
        coord = self.comms.get("coord")
        tracks = []  # (raw records, pid, tid, track, convert)
        for track, (raw, _, _) in enumerate(self.tracks):
            if track < ncpus:
                cpu_pid, comm = self.comms.get(f"cpu{track}", (None, None))
                if cpu_pid is not None:
                    doc.process(cpu_pid, comm, track + 1)
                    tracks.append((raw, cpu_pid, cpu_pid, track, self._cpu_event))
            elif coord is not None and track == ncpus:
                doc.process(coord[0], coord[1], 0)
                tracks.append((raw, coord[0], coord[0], track, self._coordinator_event))
            elif coord is not None:
                doc.thread(coord[0], RCU_TID_BASE + coord[0], "rcu", 1)
                tracks.append((raw, coord[0], RCU_TID_BASE + coord[0], track,
                               self._coordinator_event))

        def events():
            for raw, owner, tid, track, convert in tracks:
                # A slice is recorded when it ends: by start, the enclosing one first.
                for record in sorted(iter_records(raw), key=lambda r: (r[0], -r[1])):
                    if keep(record[0], record[0] + record[1]):
                        event = convert(doc, owner, tid, track, record)
                        if event is not None:
                            yield event
        doc.write(path, events())
        self.info["events"] = doc.events

    @staticmethod
    def _cpu_event(doc, pid, tid, cpu, record):
        start, dur, kind, a, b, c = record
        # A CPU's walks, handlers and idle periods are nearly every event of a trace: they
        # are written as JSON text directly (their strings need no escaping), which takes a
        # fifth of the time a dict through the encoder does.
        if kind == tr.WALK:
            return _slice_line(doc, pid, tid, "walk", "walk", start, dur,
                               f'"slot":{a},"walker":"{tr.WALKER_CODES[c]}","held":'
                               f'{_JSON_BOOL[b & tr.F_HELD]},"retried":'
                               f'{_JSON_BOOL[b & tr.F_RETRIED]}')
        if kind == tr.IPI:
            return _slice_line(doc, pid, tid, "ipi_handler", "ipi", start, dur,
                               f'"round":{a},"sent_in_window":{_JSON_BOOL[b]},"delay_us":'
                               f'{_us_text(c)}')
        if kind == tr.IDLE:
            return _slice_line(doc, pid, tid, "idle", "idle", start, dur, "")
        if kind == tr.VIOLATION:
            what = chk.VIOLATION_KINDS.get(b, f"kind {b}")
            return doc.instant_event(pid, tid, f"violation: {what}", "violation", start, {
                "cpu": cpu, "slot": a, "kind": what, "generation_taken": c >> 32,
                "generation_seen": c & 0xFFFFFFFF})

    def _answers(self) -> dict:
        """``{round: [CPU]}``: the CPUs whose handler of each round the buffers still hold."""
        out = {}
        for cpu, (raw, _, _) in enumerate(self.tracks[:-2]):
            for record in iter_records(raw):
                if record[2] == tr.IPI:
                    out.setdefault(record[3], []).append(cpu)
        return out

    def _coordinator_event(self, doc, pid, tid, track, record):
        start, dur, kind, a, b, c = record
        if kind == tr.OP:
            return doc.slice_event(pid, tid, OP_NAMES.get(b, "op"), "op", start, dur,
                                   {"slot": a})
        if kind == tr.STEP:
            name = tr.STEP_NAMES.get(b, "step")
            args = {"slot": a} if a >= 0 else {}
            if b == tr.STEP_SERIALISE:
                name = tr.HOOKS[c] if 0 < c < len(tr.HOOKS) else "serialise"
                args["step"] = "serialise"
            elif b == tr.STEP_DESTROY and c:
                args["page"] = c - 1
            return doc.slice_event(pid, tid, name, "step", start, dur, args)
        if kind == tr.ROUND:
            cpu = (c >> 8) - 1
            return doc.slice_event(pid, tid, "smp_call_function_many", "ipi", start, dur, {
                "round": a, "targets": b, "answered_by": spans(self._answered.get(a, ())),
                "slowest_cpu": cpu if cpu >= 0 else None, "why": tr.WHY_NAMES.get(c & 0xFF),
                "took_us": us(dur)})
        if kind == tr.GP_WAIT:
            return doc.slice_event(pid, tid, "wait for grace period", "rcu", start, dur,
                                   {"gp": a})
        if kind == tr.CALL_RCU:
            return doc.instant_event(pid, tid, "call_rcu", "rcu", start, {"objects": a})
        if kind == tr.CALLBACK:
            return doc.slice_event(pid, tid, "rcu callbacks", "rcu", start, dur,
                                   {"objects": a})
        if kind == tr.WAIT_EVENT:
            return doc.slice_event(pid, tid, "wait_event", "step", start, dur)
        if kind == tr.GP:
            return doc.slice_event(pid, tid, "grace period", "rcu", start, dur, {"gp": a})
        return None


#: A flag's bit (``trace.F_HELD``, ``trace.F_RETRIED``, or 1), as JSON.
_JSON_BOOL = {0: "false", 1: "true", 2: "true"}


def _us_text(ns: int) -> str:
    """Nanoseconds as the format's microseconds, exactly (``traces.us`` as text)."""
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    return f"{sign}{ns // 1000}.{ns % 1000:03d}"


def _slice_line(doc, pid, tid, name, cat, start, dur, args) -> str:
    """``doc.slice_event(...)`` as its JSON text, ``args`` the inside of its args object:
    the same event, with the end rounded as the start is."""
    begin = start - doc.origin_ns
    return (f'{{"ph":"X","pid":{pid},"tid":{tid},"name":"{name}","cat":"{cat}","ts":'
            f'{_us_text(begin)},"dur":{_us_text(max(dur, 0))},"args":{{{args}}}}}')


assert RECORD == 6  # the records unpack as (start, dur, kind, a, b, c)
