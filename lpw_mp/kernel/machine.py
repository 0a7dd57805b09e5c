"""The emulated machine: per-CPU state in shared memory, IPIs and memory barriers.

Every simulated CPU owns a slot in each per-CPU array. IPIs use generation counters (trio-style,
rather than reusable events): the sender bumps ``ipi_gen[cpu]`` and rings the CPU's doorbell (a
futex word shared with 31 other CPUs, ``futex.Doorbells``: O(N) memory in all); the CPU, once its
IRQs are enabled, runs the handler and copies ``ipi_gen`` into ``ack_gen``. A CPU whose
``ack_gen`` lags behind its ``ipi_gen`` owes an acknowledgement, which is how a hung or dead
target is named.

Acknowledgements are counted without a lock, so that a target descheduled while counting holds
up nobody else (on 2 host cores with hundreds of CPU processes, a lock holder is often
descheduled and the others then queue behind it): the sender posts ``acks_left`` once per target
but one, every target takes one post back (``sem_trywait``, atomic), and the one that finds
none left is the last and wakes the sender.

Every wait is bounded and names its culprit. A CPU writes ``ack_gen`` last, after it has taken
its part of the count owed and woken the sender: so whatever instant it is stopped at, a round
that cannot end has at least one target whose ``ack_gen`` lags, and that target is named.
Each CPU also says what it is doing in ``doing`` (a store per state change, none per walk: the
IRQ flag says a walk is under way), which the parent reads to say why a CPU did not answer.
"""

import signal
import threading
import time
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.kernel import memory_model
from lpw_mp.kernel.futex import Doorbells

# Indices into the per-CPU statistics array (each CPU writes only its own row).
ST_WALKS = 0          # walks completed
ST_HELD = 1           # walks that found a mapped entry and held a pointer
ST_BEGIN_END_NS = 2   # time spent in irq-disable + begin and end + irq-enable
ST_WALK_NS = 3        # whole IRQ-off window
ST_IPIS = 4           # IPI handlers run
ST_RETRIES = 5        # walks dropped because the PMD or PTE changed under them (recheck)
ST_LATE_NS = 6        # how far behind schedule walks started (host scheduling delay)
NSTATS = 8
WALKER_COUNTERS = {"walks": ST_WALKS, "held": ST_HELD, "begin_end_ns": ST_BEGIN_END_NS,
                   "walk_ns": ST_WALK_NS, "ipis_handled": ST_IPIS, "retries": ST_RETRIES,
                   "late_ns": ST_LATE_NS}

#: Histograms of the begin/end cost and of the IRQ-off window per walk, in nanoseconds:
#: HIST_STEPS buckets per doubling (9% wide), so medians are not hostage to one preemption.
HIST_STEPS = 8
HIST_BUCKETS = 40 * HIST_STEPS

#: How often a waiting coordinator wakes to see whether the run was aborted (and to beat).
ABORT_POLL = 0.2

#: Per-CPU words a CPU writes often are this many 8-byte words apart: one 64-byte cache line
#: each, so that no two CPUs write the same line.
SLOT_STRIDE = 8

#: What a CPU is doing, in ``Machine.doing`` (an IRQ-off window shows in ``irq_off`` instead).
#: DOING_LOCK: in the strategy's lock; DOING_RCU: in RCU's quiescent-state lock.
DOING_START, DOING_RUN, DOING_IDLE, DOING_ACK, DOING_LOCK, DOING_RCU = range(6)

CPUMASK_MODES = ("sticky", "trim", "accurate")


def DEFINE_PER_CPU(machine, name: str):
    """``DEFINE_PER_CPU(long, name)``: one 64-bit word per CPU, each on a cache line of its
    own, zero at first, named for step logs. CPU c's word is ``per_cpu(c)`` in the array."""
    return memory_model.name_words(RawArray("q", machine.ncpus * SLOT_STRIDE), name,
                                   per_cpu_stride=SLOT_STRIDE)


def per_cpu(cpu: int) -> int:
    """The index of CPU ``cpu``'s word in a ``DEFINE_PER_CPU`` array."""
    return cpu * SLOT_STRIDE


def for_each_cpu_READ_ONCE(words, cpus) -> list:
    """``READ_ONCE(per_cpu(var, cpu))`` for each of ``cpus``, one step each."""
    return memory_model.per_cpu_READ_ONCE(words, cpus, SLOT_STRIDE)

#: SIGCONTs this process has received: each one restarts every ``Deadline`` of the process.
_resumes = 0


def _on_resume(signum, frame) -> None:
    global _resumes
    _resumes += 1


def count_resumes() -> None:
    """Count this process's SIGCONTs (the main thread only can install the handler; the
    signal still resumes the process, whatever its handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCONT, _on_resume)


class Deadline:
    """A bound of ``seconds`` that starts again when this process is resumed from a stop: a
    whole job stopped (Ctrl-Z, SIGSTOP to its process group) and continued has not timed out,
    since nobody in it could answer meanwhile. A single process stopped alone is still late
    for everybody else, whose deadlines keep running."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.restart()

    def restart(self) -> None:
        self._resumes = _resumes
        self._at = time.monotonic() + self.seconds

    def remaining(self) -> float:
        if _resumes != self._resumes:
            self.restart()
        return self._at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


def acquire_or_exit(lock, stop) -> None:
    """A CPU takes ``lock``, shared with other processes, and exits when the run is stopped:
    the holder may be dead or frozen, and a CPU blocked for good would stall the teardown."""
    while not lock.acquire(True, ABORT_POLL):
        if stop.value:
            raise SystemExit(0)


class WaitTimeout(RuntimeError):
    """A bounded wait expired; ``cpus`` are the CPUs it was waiting for (the culprits)."""

    def __init__(self, cpus, seconds, what):
        self.cpus = list(cpus)
        self.seconds = seconds
        shown = ", ".join(str(c) for c in self.cpus[:8]) + (" ..." if len(self.cpus) > 8 else "")
        noun = "CPU" if len(self.cpus) == 1 else "CPUs"
        super().__init__(f"{noun} {shown} did not {what} within {seconds:g} s")


class IPITimeout(WaitTimeout):
    """Target CPUs did not acknowledge an IPI round within the bound."""

    def __init__(self, cpus, seconds, round_no):
        super().__init__(cpus, seconds, f"acknowledge IPI round {round_no:,}")


class LockTimeout(WaitTimeout):
    """A lock shared with the CPUs was not released within the bound; ``cpus`` are the CPUs
    that were inside it or waiting for it."""

    def __init__(self, cpus, seconds, lock_name):
        super().__init__(cpus, seconds, f"release {lock_name}")


class Aborted(RuntimeError):
    """The run was stopped from outside (a CPU died, or the user interrupted it)."""


class Machine:
    """Shared per-CPU state of ``ncpus`` simulated CPUs.

    ``active`` marks the CPUs currently running the process (guest vCPUs that are busy); the
    ``cpumask`` is ``mm_cpumask(mm)``, maintained according to ``cpumask_mode``."""

    def __init__(self, ctx, ncpus: int, cpumask_mode: str = "sticky", active=None):
        if cpumask_mode not in CPUMASK_MODES:
            raise ValueError(f"unknown cpumask mode {cpumask_mode!r}")
        self.ncpus = ncpus
        self.cpumask_mode = cpumask_mode
        self.irq_off = RawArray("b", ncpus)
        self.ipi_gen = RawArray("q", ncpus)
        self.ack_gen = RawArray("q", ncpus)
        self.active = RawArray("b", ncpus)
        self.cpumask = RawArray("b", ncpus)
        for cpu in range(ncpus):
            self.active[cpu] = 1 if active is None else int(bool(active[cpu]))
            # sticky and trim start with every CPU that ever ran the process: all of them.
            self.cpumask[cpu] = self.active[cpu] if cpumask_mode == "accurate" else 1
        self.stats = RawArray("q", ncpus * NSTATS)
        self.cost_hist = RawArray("q", ncpus * HIST_BUCKETS)
        self.window_hist = RawArray("q", ncpus * HIST_BUCKETS)
        self.doing = RawArray("b", ncpus)
        #: The slot each CPU's current (or last) walk is on.
        self.walk_slot = RawArray("q", ncpus)
        self.doorbells = Doorbells(ncpus)
        # Acknowledgements, as in the C floor: each target takes its part of the count owed
        # and the last one wakes the sender, so the sender sleeps through the round instead of
        # waking once per target.
        self.acks_left = ctx.Semaphore(0)
        self.acks_done = ctx.Semaphore(0)
        self.ready = ctx.Semaphore(0)
        #: The start barrier: set once every CPU is up, so that none walks while the parent
        #: is still forking the others (they would compete with it for the host's cores).
        self.started = RawValue("b", 0)
        self.stop = RawValue("b", 0)
        # Set during the walker phase: every CPU walks back to back instead of at --walk-rate.
        self.saturate = RawValue("b", 0)
        # Each CPU sets its byte once it is back at --walk-rate, so the phase's end is known.
        self.settled = RawArray("b", ncpus)
        self.abort = RawValue("b", 0)
        #: Bumped by the coordinator for every operation and every poll of a wait: the parent
        #: takes a coordinator whose beat stops for the bound as frozen.
        self.coord_beat = RawValue("q", 0)
        #: Set while the coordinator blocks in a bounded wait (an IPI round, a grace period, a
        #: lock): ``check`` releases a paused walker once the coordinator waits for it.
        self.coord_waiting = RawValue("b", 0)
        #: Polls of a strategy's own wait (``Updater.wait_event``) that found it not over.
        self.coord_polls = RawValue("q", 0)
        #: The round being sent and when (``perf_counter_ns``): a traced CPU works out from them
        #: why it answered when it did.
        self.round_no = RawValue("q", 0)
        self.round_sent = RawValue("q", 0)
        #: The CPU whose acknowledgement ended the last round (the one that woke the sender),
        #: and, traced, 1 if the round was sent during its IRQ-off window.
        self.last_acker = RawValue("q", -1)
        self.last_in_window = RawValue("q", 0)
        #: Traced: when each CPU last acknowledged an IPI (``perf_counter_ns``), which tells
        #: how long after the others the last one answered.
        self.ack_ns = RawArray("q", ncpus * SLOT_STRIDE)
        #: ``trace.TraceBuffers`` when the run is traced (``--trace``), else None.
        self.trace = None
        self._all_cpus = list(range(ncpus))
        self._rounds = 0  # IPI rounds sent; only the coordinator sends

    # -- the cpumask --------------------------------------------------------------------------

    @property
    def trims_lazy_cpus(self) -> bool:
        """Under ``trim``, Nick Piggin's 032b7f08932c (v5.12, radix): the IPI handler of
        ``serialize_against_pte_lookup()`` switches a CPU that is not running this mm, a lazy
        one (idle, the mm only borrowed) included, to ``init_mm`` and clears its bit in
        ``mm_cpumask``; a CPU inside a walk of this mm keeps it. A CPU sets its bit again when
        it next runs the mm (``switch_mm_irqs_off``), here: when it walks. (From v5.8 only
        collapse sends those IPIs, and radix stopped in v6.0: docs/kernel-sources.md, 7.)"""
        return self.cpumask_mode == "trim"

    def mm_cpumask(self) -> list:
        """The CPUs a broadcast targets (``mm_cpumask(mm)``)."""
        if self.cpumask_mode == "sticky":
            return self._all_cpus
        mask = self.cpumask
        return [cpu for cpu in self._all_cpus if mask[cpu]]

    def online_cpus(self) -> list:
        """Every simulated CPU (``cpu_online_mask``; none is ever taken offline)."""
        return self._all_cpus

    # -- IPIs ---------------------------------------------------------------------------------

    def smp_call_function_many(self, cpus, timeout: float) -> None:
        """Send ``do_nothing`` to ``cpus`` and wait until every one has run it (``wait=1``).

        Stands for the kernel's ``smp_call_function_many(mask, func, info, wait=1)``
        (kernel/smp.c). A CPU runs the handler only with its IRQs enabled, so the call returns
        only after every target has left any IRQ-off window it was in. Raises ``IPITimeout``
        naming the CPUs that did not answer within ``timeout`` seconds, or ``Aborted`` if the
        run is being torn down."""
        if not cpus:
            return
        self._rounds += 1
        memory_model.full_barrier()  # the csd queueing is fully ordered
        ipi_gen, acks_left = self.ipi_gen, self.acks_left
        while acks_left.acquire(False):  # what a round that timed out left behind
            pass
        post = acks_left.release
        for _ in range(len(cpus) - 1):
            post()
        self.last_acker.value = -1
        self.round_no.value = self._rounds
        self.round_sent.value = time.perf_counter_ns()
        for cpu in cpus:
            ipi_gen[cpu] += 1
        self.doorbells.ring(cpus)
        acquire = self.acks_done.acquire
        self.coord_waiting.value = 1
        try:
            if acquire(True, min(ABORT_POLL, timeout)):
                return
            round_no = self._rounds
            # Every target writes its ack_gen after its wake-up of the sender: if none lags at
            # the deadline, the wake-up has been posted and the next poll takes it.
            self.wait_bounded(acquire, timeout - min(ABORT_POLL, timeout),
                              "IPI acknowledgements",
                              lambda: (IPITimeout(late, timeout, round_no)
                                       if (late := self.unacknowledged(cpus)) else None))
        finally:
            self.coord_waiting.value = 0
            memory_model.full_barrier()  # csd_lock_wait: an acquire of every target's ack

    def wait_bounded(self, acquire, timeout: float, what: str, expired) -> None:
        """Block in ``acquire(True, seconds)`` for at most ``timeout`` seconds (exactly, not to
        the next poll), beating the coordinator's heartbeat and watching the abort flag.

        At the deadline ``expired()`` returns the exception to raise, or None if what was
        awaited is certain to arrive (the wait then goes on, one poll at a time)."""
        deadline = Deadline(timeout)
        beat, abort = self.coord_beat, self.abort
        waiting = self.coord_waiting.value
        self.coord_waiting.value = waiting or 1
        try:
            while not acquire(True, min(ABORT_POLL, max(deadline.remaining(), 0.0))):
                beat.value += 1
                if abort.value:
                    raise Aborted(f"run aborted while waiting for {what}")
                if deadline.expired():
                    exc = expired()
                    if exc is not None:
                        raise exc
                    deadline = Deadline(ABORT_POLL)
        finally:
            self.coord_waiting.value = waiting

    def acquire_bounded(self, lock, timeout: float, lock_name: str,
                        doing: int = DOING_LOCK) -> None:
        """The coordinator takes ``lock``, shared with the CPUs, within ``timeout`` or raises
        ``LockTimeout`` naming the CPUs inside it or waiting for it (their ``doing`` is
        ``doing``)."""
        if lock.acquire(False):
            return
        self.wait_bounded(lock.acquire, timeout, lock_name, lambda: LockTimeout(
            [cpu for cpu in self._all_cpus if self.doing[cpu] == doing], timeout, lock_name))

    def unacknowledged(self, cpus) -> list:
        return [cpu for cpu in cpus if self.ack_gen[cpu] != self.ipi_gen[cpu]]

    def kick(self, cpu: int) -> None:
        """Wake CPU ``cpu`` if it is idle, to look at what was just stored for it."""
        self.doorbells.ring((cpu,))

    def wake_all(self) -> None:
        self.doorbells.ring_all()

    def start(self) -> None:
        """Let every CPU go past the start barrier."""
        self.started.value = 1
        self.wake_all()

    # -- statistics ---------------------------------------------------------------------------

    def walker_counters(self, since=None) -> dict:
        """Every CPU's walker counters summed (minus ``since``, an earlier reading)."""
        stats, out = self.stats[:], {}
        for name, index in WALKER_COUNTERS.items():
            out[name] = sum(stats[index::NSTATS]) - (since[name] if since else 0)
        return out
