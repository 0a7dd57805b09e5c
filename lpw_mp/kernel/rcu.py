"""RCU as the kernel's page-table freeing uses it: numbered grace periods, quiescent states
reported by the CPUs themselves, idle as an extended quiescent state.

A CPU inside an IRQ-off window is a sched-RCU reader: "We use the sched RCU variant, as that
guarantees that IRQ/preempt disabling holds off grace periods" (the comment above
``CONFIG_MMU_GATHER_RCU_TABLE_FREE`` in mm/mmu_gather.c; docs/kernel-sources.md, claim 10).
"""

import time
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.kernel.hooks import FREEZE_QS_LOCKED, FREEZE_QS_REPORTED, FreezeHook, freeze_point
from lpw_mp.kernel.machine import DOING_LOCK, WaitTimeout, acquire_or_exit, smp_mb

SLOT_STRIDE = 8


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
        self._gp = 0  # grace periods started; only the coordinator starts them
        self.freeze = None

    def install_hooks(self, hooks) -> None:
        """Tests only: this CPU process's ``FreezeHook``, if any."""
        self.freeze = next((h for h in hooks if isinstance(h, FreezeHook)), None)

    #: The ``Updater`` when this copy runs in the coordinator, else None.
    coordinator = None

    # -- quiescent states ---------------------------------------------------------------------

    def rcu_report_qs(self, cpu: int) -> None:
        """CPU ``cpu`` passed a quiescent state; the last one owed ends the grace period.
        The lock is also the full barrier that orders the report before the CPU's next walk.
        Runs on the CPU itself, or on the coordinator for a CPU it saw idle."""
        slot, m = cpu * SLOT_STRIDE, self.m
        on_cpu = self.coordinator is None
        if on_cpu:  # the coordinator reporting for an idle CPU must not touch its state
            was = m.doing[cpu]
            m.doing[cpu] = DOING_LOCK
            acquire_or_exit(self.qs_lock, m.stop)
        else:
            m.acquire_bounded(self.qs_lock, self.coordinator.timeout, self.lock_name)
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

    # -- CPU side -----------------------------------------------------------------------------

    def end_of_window(self, cpu: int) -> None:
        """The end of an IRQ-off window is a quiescent state: report it if one is owed."""
        if self.owes_qs(cpu):
            self.rcu_report_qs(cpu)

    def cpu_idle_enter(self, cpu: int) -> None:
        # dynticks-idle: an idle CPU is in an extended quiescent state.
        self.idle[cpu * SLOT_STRIDE] = 1
        smp_mb()
        if self.owes_qs(cpu):
            self.rcu_report_qs(cpu)

    def cpu_idle_exit(self, cpu: int) -> None:
        self.idle[cpu * SLOT_STRIDE] = 0
        smp_mb()

    # -- updater side -------------------------------------------------------------------------

    def synchronize_rcu(self, up) -> None:
        """Wait one grace period: every CPU idle or past a quiescent state since it began."""
        start = time.perf_counter()
        self.coordinator = up
        m = self.m
        n, owed, posted, idle = m.ncpus, self.qs_owed, self.qs_posted, self.idle
        self._gp += 1
        gp = self._gp
        m.acquire_bounded(self.qs_lock, up.timeout, self.lock_name)
        self.qs_pending.value = n + 1  # +1: our own reference, dropped below
        for cpu in range(n):
            owed[cpu * SLOT_STRIDE] = gp
        self.qs_lock.release()
        smp_mb()
        # Every CPU seen idle now is quiescent; report for it. A CPU entering idle at the same
        # moment either sees its debt and reports itself, or is seen idle here: the two
        # barriers make one of them certain, and the lock makes the report count once.
        for cpu in range(n):
            if idle[cpu * SLOT_STRIDE]:
                self.rcu_report_qs(cpu)
        m.acquire_bounded(self.qs_lock, up.timeout, self.lock_name)
        left = self.qs_pending.value - 1
        self.qs_pending.value = left
        self.qs_lock.release()
        if left:
            m.wait_bounded(self.gp_done.acquire, up.timeout, "a grace period",
                           lambda: GracePeriodTimeout(
                               [c for c in range(n) if posted[c * SLOT_STRIDE] != gp],
                               up.timeout, gp))
        up.stats.grace_periods += 1
        up.stats.gp_latencies.append(time.perf_counter() - start)
