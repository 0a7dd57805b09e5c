"""``rcu``: page tables freed after a grace period (mmu_gather with RCU table freeing), no IPI."""

import time
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.machine import ABORT_POLL, Aborted, IPITimeout, smp_mb
from lpw_mp.strategies.base import Strategy

SLOT_STRIDE = 8
#: Pointers one mmu_gather batch page holds before it must be flushed (MAX_TABLE_BATCH on 4K).
MAX_TABLE_BATCH = 509


class GracePeriodTimeout(IPITimeout):
    """CPUs did not pass a quiescent state within the bound."""

    what = "pass a quiescent state"


class RCUStrategy(Strategy):
    """Aneesh Kumar's rework merged for v5.8 (20200420124434.47330-1-aneesh.kumar@linux.ibm.com):
    ``MMU_GATHER_RCU_TABLE_FREE`` and walkers that tolerate a changing PMD.

    munmap clears PMDs without waiting; the pages to free go into a batch (``tlb_remove_table``)
    freed after one grace period: every CPU seen outside a walk since the batch closed. Quiescent
    states are reported by the CPUs themselves (at the end of a walk while a grace period is
    waiting, and on entering idle, like dynticks-idle), each report a full barrier; only the
    last CPU owed wakes the updater, as ``rcu_report_qs_rnp()`` does. Walkers re-check
    the PMD after use and drop the result if it changed (``gup_fast``'s ``pmd_val`` re-check).

    Split and collapse repurpose a PMD slot in place rather than free a page; a batch cannot
    defer that, so they wait a synchronous grace period (``synchronize_rcu()``) where the other
    strategies serialise. (Upstream kept the IPI for those two paths.)"""

    name = "rcu"
    kernel = "v5.8 mmu_gather RCU table free (MMU_GATHER_RCU_TABLE_FREE), no IPI"
    rechecks_pmd = True

    def __init__(self, ctx, machine, batch: int = MAX_TABLE_BATCH):
        super().__init__(ctx, machine)
        n = machine.ncpus
        # rcu_node's qsmask, flattened: a CPU owes a quiescent state while its slot is set;
        # the last CPU to report wakes the grace-period waiter.
        self.needs_qs = RawArray("q", n * SLOT_STRIDE)
        self.idle = RawArray("q", n * SLOT_STRIDE)
        self.qs_lock = ctx.Lock()
        self.qs_pending = RawValue("q", 0)
        self.gp_done = ctx.Semaphore(0)
        self.batch_size = batch
        self._batch = []
        self._batch_pages = []

    # -- quiescent states ---------------------------------------------------------------------

    def rcu_report_qs(self, cpu: int) -> None:
        """CPU ``cpu`` passed a quiescent state; the last one owed ends the grace period.
        The lock is also the full barrier that orders the report before the CPU's next walk."""
        with self.qs_lock:
            slot = cpu * SLOT_STRIDE
            if not self.needs_qs[slot]:
                return
            self.needs_qs[slot] = 0
            left = self.qs_pending.value - 1
            self.qs_pending.value = left
        if left == 0:
            self.gp_done.release()

    # -- walker side --------------------------------------------------------------------------

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        if self.needs_qs[cpu * SLOT_STRIDE]:
            self.rcu_report_qs(cpu)

    def cpu_idle_enter(self, cpu: int) -> None:
        # dynticks-idle: an idle CPU is in an extended quiescent state.
        self.idle[cpu * SLOT_STRIDE] = 1
        smp_mb()
        if self.needs_qs[cpu * SLOT_STRIDE]:
            self.rcu_report_qs(cpu)

    def cpu_idle_exit(self, cpu: int) -> None:
        self.idle[cpu * SLOT_STRIDE] = 0
        smp_mb()

    # -- updater side -------------------------------------------------------------------------

    def synchronize_rcu(self, up) -> None:
        """Wait one grace period: every CPU idle or past a quiescent state since it began."""
        start = time.perf_counter()
        n, needs, idle = self.m.ncpus, self.needs_qs, self.idle
        with self.qs_lock:
            self.qs_pending.value = n + 1  # +1: our own reference, dropped below
            for cpu in range(n):
                needs[cpu * SLOT_STRIDE] = 1
        smp_mb()
        # Every CPU seen idle now is quiescent; report for it. A CPU entering idle at the same
        # moment either sees its flag set and reports itself, or is seen idle here: the two
        # barriers make one of them certain, and the lock makes the report count once.
        for cpu in range(n):
            if idle[cpu * SLOT_STRIDE]:
                self.rcu_report_qs(cpu)
        with self.qs_lock:
            left = self.qs_pending.value - 1
            self.qs_pending.value = left
        if left:
            deadline = time.monotonic() + up.timeout
            while not self.gp_done.acquire(True, ABORT_POLL):
                if self.m.abort.value:
                    raise Aborted("run aborted while waiting for a grace period")
                if time.monotonic() >= deadline:
                    owed = [c for c in range(n) if needs[c * SLOT_STRIDE]]
                    raise GracePeriodTimeout(owed, up.timeout)
        up.stats.grace_periods += 1
        up.stats.gp_latencies.append(time.perf_counter() - start)

    def serialize_against_pte_lookup(self, up) -> None:
        self.synchronize_rcu(up)

    def tlb_remove_table(self, up, destroy, page=None) -> None:
        self._batch.append(destroy)
        if page is not None:
            self._batch_pages.append(page)
        up.stats.skipped += 1
        if len(self._batch) >= self.batch_size:
            self.tlb_finish_mmu(up)

    def tlb_finish_mmu(self, up) -> None:
        if not self._batch:
            return
        self.synchronize_rcu(up)
        batch, self._batch, self._batch_pages = self._batch, [], []
        for destroy in batch:
            destroy()

    def pending_pages(self) -> list:
        return list(self._batch_pages)
