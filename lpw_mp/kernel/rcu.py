"""RCU as the kernel's page-table freeing uses it: numbered grace periods, quiescent states
reported by the CPUs themselves, idle as an extended quiescent state.

A CPU inside an IRQ-off window is a sched-RCU reader: "We use the sched RCU variant, as that
guarantees that IRQ/preempt disabling holds off grace periods" (the comment above
``CONFIG_MMU_GATHER_RCU_TABLE_FREE`` in mm/mmu_gather.c; docs/kernel-sources.md, claim 10).
"""

import time
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.kernel import trace as tr
from lpw_mp.kernel.hooks import FREEZE_QS_LOCKED, FREEZE_QS_REPORTED, FreezeHook, freeze_point
from lpw_mp.kernel.machine import DOING_RCU, SLOT_STRIDE, WaitTimeout, acquire_or_exit
from lpw_mp.kernel.memory_model import fence, full_barrier, step


class GracePeriodTimeout(WaitTimeout):
    """CPUs did not pass a quiescent state within the bound."""

    def __init__(self, cpus, seconds, gp: int):
        super().__init__(cpus, seconds, f"pass a quiescent state for grace period {gp:,}")


class RCU:
    """The grace-period machinery, in shared memory, allocated before the processes fork.

    Quiescent states are reported by the CPUs themselves (at the end of an IRQ-off window
    while a grace period is waiting, and on entering idle, like dynticks-idle), each report a
    full barrier; only the last CPU owed wakes the updater, as ``rcu_report_qs_rnp()`` does."""

    lock_name = "rcu's quiescent-state lock"

    def __init__(self, ctx, machine):
        self.m = machine
        n = machine.ncpus
        # rcu_node's qsmask, flattened and numbered by grace period: CPU c owes a quiescent
        # state for grace period qs_owed[c] until qs_taken[c] reaches it (taken under the
        # lock, so a report counts once), and is named as late until qs_posted[c] does. The
        # posted mark is written last, after the wake-up of the waiter: a CPU stopped at any
        # instant of its report is still named, and a late write can never clear a debt for a
        # grace period that began after it.
        self.qs_owed = RawArray("q", n * SLOT_STRIDE)
        self.qs_taken = RawArray("q", n * SLOT_STRIDE)
        self.qs_posted = RawArray("q", n * SLOT_STRIDE)
        self.idle = RawArray("q", n * SLOT_STRIDE)
        self.qs_lock = ctx.Lock()
        self.qs_pending = RawValue("q", 0)
        self.gp_done = ctx.Semaphore(0)
        #: The number of the last grace period started (shared: tests wait for one to start).
        self.gp_seq = RawValue("q", 0)
        self.freeze = None
        # Coordinator-only: callbacks waiting for the grace period in progress, and for the next.
        self._cur, self._next = [], []
        #: True while a grace period is in progress: callbacks wait for it. The coordinator
        #: reads it between operations and calls rcu_process_callbacks only then.
        self.gp_active = self._gp_ended = False
        self._gp_start = 0.0

    def install_hooks(self, hooks) -> None:
        """Tests only: this CPU process's ``FreezeHook``, if any."""
        self.freeze = next((h for h in hooks if isinstance(h, FreezeHook)), None)

    #: The ``Updater`` when this copy runs in the coordinator, else None.
    coordinator = None
    #: Traced runs, in the coordinator: its trace writer, and the RCU track's (the grace
    #: periods, which run beside its operations).
    trace = gp_trace = None

    # -- quiescent states ---------------------------------------------------------------------

    def rcu_report_qs(self, cpu: int) -> None:
        """CPU ``cpu`` passed a quiescent state; the last one owed ends the grace period.
        The lock is also the full barrier that orders the report before the CPU's next walk.
        Runs on the CPU itself, or on the coordinator for a CPU it saw idle."""
        slot, m = cpu * SLOT_STRIDE, self.m
        on_cpu = self.coordinator is None
        if on_cpu:
            full_barrier()  # the CPU's accesses so far are ordered before its report
        if on_cpu:  # the coordinator reporting for an idle CPU must not touch its state
            was = m.doing[cpu]
            m.doing[cpu] = DOING_RCU
            acquire_or_exit(self.qs_lock, m.stop)
        else:
            m.acquire_bounded(self.qs_lock, self.coordinator.timeout, self.lock_name,
                               DOING_RCU)
        gp = self.qs_owed[slot]
        taken = self.qs_taken[slot] == gp
        if not taken:
            self.qs_taken[slot] = gp
            left = self.qs_pending.value - 1
            self.qs_pending.value = left
            if self.freeze:
                freeze_point(self.freeze, FREEZE_QS_LOCKED)
        self.qs_lock.release()
        if on_cpu:
            m.doing[cpu] = was
        if taken:
            return
        if left == 0:
            self.gp_done.release()
        if self.freeze:
            freeze_point(self.freeze, FREEZE_QS_REPORTED)
        self.qs_posted[slot] = gp

    def owes_qs(self, cpu: int) -> bool:
        slot = cpu * SLOT_STRIDE
        return self.qs_taken[slot] != self.qs_owed[slot]

    # -- CPU side (the end of an IRQ-off window reports inline: SimulatedCPU.walk) -------------

    def cpu_idle_enter(self, cpu: int) -> None:
        # dynticks-idle: an idle CPU is in an extended quiescent state.
        self.idle[cpu * SLOT_STRIDE] = 1
        fence()
        if self.owes_qs(cpu):
            self.rcu_report_qs(cpu)

    def cpu_idle_exit(self, cpu: int) -> None:
        self.idle[cpu * SLOT_STRIDE] = 0
        fence()

    # -- updater side: call_rcu and its callbacks ---------------------------------------------
    #
    # One grace period at a time, as the kernel's: callbacks queued while one runs wait for
    # the next, so every callback waits for a grace period that began after it was queued.

    def call_rcu(self, up, func, arg) -> None:
        """Queue ``func(arg)`` to run once a grace period that begins after now has ended,
        and return at once (``call_rcu()``: asynchronous, nothing waits)."""
        step("call_rcu")
        self._next.append((func, arg))
        if self.trace is not None:
            self.trace.emit(tr.CALL_RCU, time.perf_counter_ns(), 0, _objects(arg))
        if not self.gp_active:
            self._start_next(up)

    def rcu_process_callbacks(self, up, wait: bool = False) -> None:
        """If the grace period in progress has ended (``wait``: once it has, bounded by the
        updater's timeout), run its callbacks and start the next one. The coordinator calls
        this between operations, as the RCU softirq would run."""
        if not self.gp_active or not self._gp_over(up, wait):
            return
        full_barrier()  # every CPU's report is ordered before the callbacks
        step("grace period %d ended", self.gp_seq.value)
        self.gp_active = False
        up.stats.grace_periods += 1
        up.stats.gp_latencies.append(time.perf_counter() - self._gp_start)
        done, self._cur = self._cur, []
        if self.trace is not None:
            now = time.perf_counter_ns()
            self.gp_trace.emit(tr.GP, self._gp_start_ns, now - self._gp_start_ns,
                               self.gp_seq.value)
        for func, arg in done:
            func(arg)
        if self.trace is not None:
            self.trace.emit(tr.CALLBACK, now, time.perf_counter_ns() - now,
                            sum(_objects(arg) for _, arg in done))
        self._start_next(up)

    def rcu_barrier(self, up) -> None:
        """Wait (bounded) until every callback queued so far has run (``rcu_barrier()``)."""
        while self.gp_active:
            self.rcu_process_callbacks(up, wait=True)

    def pending(self) -> list:
        """The arguments of the callbacks not run yet."""
        return [arg for _, arg in self._cur + self._next]

    def _start_next(self, up) -> None:
        if self._next:
            self._cur, self._next = self._next, []
            self._start_gp(up)

    def _start_gp(self, up) -> None:
        """Open a grace period: every CPU owes a quiescent state, except those seen idle."""
        self._gp_start = time.perf_counter()
        self._gp_start_ns = time.perf_counter_ns()
        # rcu_gp_init()'s full barrier: every store before call_rcu (the PMD clear, still in
        # the store buffer under --memory-model tso or weak) is visible before any CPU can
        # owe, and report, a quiescent state for this grace period.
        fence()
        self.coordinator = up
        m = self.m
        n, owed, idle = m.ncpus, self.qs_owed, self.idle
        gp = self.gp_seq.value + 1
        m.acquire_bounded(self.qs_lock, up.timeout, self.lock_name, DOING_RCU)
        self.gp_seq.value = gp
        self.qs_pending.value = n + 1  # +1: our own reference, dropped below
        for cpu in range(n):
            owed[cpu * SLOT_STRIDE] = gp
        self.qs_lock.release()
        fence()
        # Every CPU seen idle now is quiescent; report for it. A CPU entering idle at the same
        # moment either sees its debt and reports itself, or is seen idle here: the two
        # barriers make one of them certain, and the lock makes the report count once.
        for cpu in range(n):
            if idle[cpu * SLOT_STRIDE]:
                self.rcu_report_qs(cpu)
        m.acquire_bounded(self.qs_lock, up.timeout, self.lock_name, DOING_RCU)
        left = self.qs_pending.value - 1
        self.qs_pending.value = left
        self.qs_lock.release()
        self.gp_active = True
        # Nobody posts gp_done for a grace period whose last reference was our own.
        self._gp_ended = left == 0

    def _gp_over(self, up, wait: bool) -> bool:
        if self._gp_ended:
            return True
        if not wait:
            return self.gp_done.acquire(False)
        gp, n, posted = self.gp_seq.value, self.m.ncpus, self.qs_posted
        began = time.perf_counter_ns()
        self.m.wait_bounded(self.gp_done.acquire, up.timeout, "a grace period",
                            lambda: GracePeriodTimeout(
                                [c for c in range(n) if posted[c * SLOT_STRIDE] != gp],
                                up.timeout, gp))
        if self.trace is not None:
            self.trace.emit(tr.GP_WAIT, began, time.perf_counter_ns() - began, gp)
        return True


def _objects(arg) -> int:
    """Objects a callback frees: a batch's pages, or one."""
    return len(arg) if isinstance(arg, (list, tuple)) else 1
