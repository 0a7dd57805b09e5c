"""Tracing (``run --trace``): a ring buffer of fixed-size records per track in shared memory,
as ftrace keeps one per CPU (kernel/trace/ring_buffer.c), written by the process the track
belongs to without a lock and read by the parent once the processes are stopped.

A track is a simulated CPU, the coordinator, or the coordinator's RCU (its grace periods run
beside its operations). A record is ``RECORD`` words: start (``perf_counter_ns``, the host's
monotonic clock), duration, kind, and three arguments whose meaning depends on the kind.

A full buffer overwrites its oldest records, as ftrace does by default (its ``overwrite``
option), unless the trace keeps the first seconds of the run: then it keeps its first records
and drops the newest. Either way every record written counts, so the parent knows how many
were lost. With tracing off nothing here runs: the traced paths test one attribute for None.
"""

import struct
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.kernel.machine import SLOT_STRIDE

#: Words of a record: start ns, duration ns, kind, a, b, c.
RECORD = 6
RECORD_BYTES = RECORD * 8
#: The coordinator's track gets this many times a CPU's: it records every step of every
#: operation, where a CPU records a walk or an IPI.
COORDINATOR_SHARE = 4

# Record kinds, and what a, b, c hold.
#: On a CPU's track. WALK: an IRQ-off window: slot, flags (F_HELD, F_RETRIED), walker code
#: (``WALKER_CODES``). IPI: the handler: round, 1 if the IPI was sent during the CPU's last
#: IRQ-off window (it is taken at the window's end), ns from the send to the handler.
#: IDLE: an idle period. VIOLATION (an instant): slot, kind (checker's), taken << 32 | seen.
WALK, IPI, IDLE, VIOLATION = 1, 2, 3, 4
#: On the coordinator's. OP: an operation: slot, op (``OP_CODES``). STEP: a step of it:
#: slot, step (``STEP_*``), the serialising hook (``HOOKS``). ROUND: an IPI round: round,
#: targets, slowest responder << 8 | why. GP_WAIT: a wait for grace period a. CALL_RCU (an
#: instant): objects queued. CALLBACK: RCU callbacks run: objects. WAIT_EVENT: a strategy's
#: own wait. On the RCU track. GP: grace period a, from its start to its end.
OP, STEP, ROUND, GP_WAIT, CALL_RCU, CALLBACK, WAIT_EVENT, GP = range(10, 18)

F_HELD, F_RETRIED = 1, 2
STEP_UNLINK, STEP_SERIALISE, STEP_DESTROY = 1, 2, 3
STEP_NAMES = {STEP_UNLINK: "unlink", STEP_SERIALISE: "serialise", STEP_DESTROY: "destroy"}
OP_CODES = {"munmap": 1, "split": 2, "collapse": 3, "fault": 4}
#: The updater's serialising steps (``Strategy``'s hooks) by code; 0: one of a plugin's own.
HOOKS = ("", "zap_huge_pmd", "tlb_remove_table", "pmdp_invalidate", "pmdp_collapse_flush")
WALKER_CODES = ("hold", "read-once", "recheck")

#: Why the CPU that answered a round last came last (``round_why``; ``results.traces.WHY``).
#: WHY_UNKNOWN: not traced.
WHY_UNKNOWN, WHY_IRQ_OFF, WHY_NOT_RUNNING, WHY_QUEUE = 0, 1, 2, 3
WHY_NAMES = {WHY_IRQ_OFF: "irq-off", WHY_NOT_RUNNING: "not-running", WHY_QUEUE: "queue"}
#: A last answer that comes this long after the one before it, IRQs on, is the host's doing:
#: every other target was done, so the cores were free of the round, yet this CPU's process
#: did not run (a pass of the loop takes some tens of microseconds).
PREEMPTED_NS = 200_000


def round_why(in_window: bool, last_ns: int, before_ns: int) -> int:
    """Why the last answer of a round came when it did (``WHY_*``): its CPU was inside an
    IRQ-off window when the round was sent (``in_window``), and answered at the window's end;
    else it answered (at ``last_ns``) more than ``PREEMPTED_NS`` after the answer before it
    (``before_ns``; the send, for a round of one target): the host was not running it; else
    the answers came one after another and it was merely the last."""
    if in_window:
        return WHY_IRQ_OFF
    return WHY_NOT_RUNNING if last_ns - before_ns > PREEMPTED_NS else WHY_QUEUE

#: ``TraceBuffers.until``'s value when the trace keeps every record it can.
FOREVER = (1 << 63) - 1


class TraceBuffers:
    """Every track's ring buffer, allocated before the processes fork: ``cpu_records`` per
    CPU, ``COORDINATOR_SHARE`` times that for the coordinator and the same as a CPU for RCU.
    ``overwrite`` False keeps the first records (``first:`` windows)."""

    def __init__(self, ncpus: int, cpu_records: int, overwrite: bool = True):
        self.ncpus = ncpus
        self.caps = [cpu_records] * ncpus + [cpu_records * COORDINATOR_SHARE, cpu_records]
        self.bases, total = [], 0
        for cap in self.caps:
            self.bases.append(total)
            total += cap * RECORD
        self.words = RawArray("q", total)
        #: Records written per track (lost ones included), one cache line each.
        self.written = RawArray("q", len(self.caps) * SLOT_STRIDE)
        self.overwrite = overwrite
        #: Records that begin after this (host ns) are not kept: set once the run starts, for
        #: a trace of its first seconds.
        self.until = RawValue("q", FOREVER)

    @property
    def coordinator_track(self) -> int:
        return self.ncpus

    @property
    def rcu_track(self) -> int:
        return self.ncpus + 1

    @staticmethod
    def bytes_for(ncpus: int, cpu_records: int) -> int:
        return (ncpus + COORDINATOR_SHARE + 1) * cpu_records * RECORD_BYTES

    def writer(self, track: int) -> "TraceWriter":
        """The writer of ``track``, made in the process that owns it (after the fork)."""
        return TraceWriter(self, track)

    def records(self, track: int) -> tuple:
        """``(raw, written)``: the records ``track`` still holds, oldest first, as the bytes
        of their words (``RECORD`` native 64-bit words each: ``iter_records`` reads them), and
        how many records it was given in all. Read once the writer has stopped."""
        cap, base = self.caps[track], self.bases[track]
        written = self.written[track * SLOT_STRIDE]
        kept = min(written, cap)
        words = memoryview(self.words).cast("B").cast("q")
        ring = words[base:base + cap * RECORD]
        first = (written - kept) % cap if self.overwrite else 0
        if first + kept <= cap:
            return ring[first * RECORD:(first + kept) * RECORD].tobytes(), written
        return (ring[first * RECORD:].tobytes()
                + ring[:(first + kept - cap) * RECORD].tobytes()), written


def iter_records(raw: bytes):
    """The records in ``raw`` (``TraceBuffers.records``), each a tuple of ``RECORD`` ints."""
    words = memoryview(raw).cast("q")
    for i in range(0, len(words), RECORD):
        yield tuple(words[i:i + RECORD])


class TraceWriter:
    """One process's writer of one track: one ``struct.pack_into`` per record and a store of
    the count, no lock (a track has one writer)."""

    __slots__ = ("_bytes", "_written", "_index", "_base", "_cap", "_n", "_overwrite", "_until")

    def __init__(self, buffers: TraceBuffers, track: int):
        self._bytes = memoryview(buffers.words).cast("B")
        self._written = memoryview(buffers.written).cast("B").cast("q")
        self._index = track * SLOT_STRIDE
        self._base, self._cap = buffers.bases[track] * 8, buffers.caps[track]
        self._n = buffers.written[self._index]
        self._overwrite = buffers.overwrite
        # Only a trace of the first seconds has an end; the others pay no test of the time.
        self._until = None if buffers.overwrite else buffers.until

    def emit(self, kind: int, start: int, dur: int = 0, a: int = 0, b: int = 0,
             c: int = 0) -> None:
        n = self._n
        if self._until is not None and start > self._until.value:
            return
        if n < self._cap or self._overwrite:
            _pack(self._bytes, self._base + n % self._cap * RECORD_BYTES, start, dur, kind,
                  a, b, c)
        self._n = n + 1
        self._written[self._index] = n + 1


_pack = struct.Struct(f"{RECORD}q").pack_into
